"""TAEHV weights (madebyollin/taehv: `taew2_1.pth` / `taew2_1.safetensors`) -> Flax params of
`star_jax.models.taehv.TAEHV`.

    params = load_taehv_checkpoint("taew2_1.safetensors", taehv_variant("wan2.1"))   # host numpy tree
    check_taehv_file("taew2_1.pth", cfg)       # names and shapes from the headers, nothing loaded
    python -m star_jax.checkpoint.convert_taehv --src taew2_1.pth --out model_folder/taehv [--parts decoder]
    tae, params = load_taehv_folder("model_folder/taehv")            # checked against its taehv.json

A converted folder holds the orbax params and `taehv.json`: {"format": 1, "variant", "config"
(the TAEHVConfig fields but the dtypes), "parts", "source"}; a model folder keeps it as `taehv/`
beside `vae/`, for sessions that decode with `decoder="tiny"`.

The published names are the PyTorch `nn.Sequential` indices (`decoder.3.conv.0.weight`,
`decoder.7.conv.weight`, `encoder.4.skip.weight`); they become Flax paths mechanically: the index
after `encoder` / `decoder` is `layers_<i>`, any later index joins the name before it
(`decoder.3.conv.0.weight` -> `decoder/layers_3/conv_0/kernel`), torch's conv weights (O, I, kH, kW)
become (kH, kW, I, O). As the reference's `patch_tgrow_layers` does, a TGrow conv stored with more
output channels than the model's (a checkpoint trained with a time upsampling the config turns off)
keeps its last ones. The result is checked against `jax.eval_shape` of the model; every missing,
unexpected or mis-shaped tensor is listed in the file's naming (CheckpointError). A decoder-only
file converts with `parts=("decoder",)`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys

import numpy as np

from star_jax.checkpoint.convert import _listing, check_tree_shapes
from star_jax.checkpoint.storage import (
    CheckpointError,
    orbax_shapes,
    read_weight_shapes,
    read_weights,
    restore_params,
    save_params,
    shape_placeholders,
)
from star_jax.models.taehv import TAEHV_VARIANTS, TAEHVConfig, taehv_variant

PARTS = ("encoder", "decoder")
TAEHV_JSON = "taehv.json"
TAEHV_JSON_FORMAT = 1
_RUN_FIELDS = ("dtype", "param_dtype")  # how it runs, not what it computes: never stored
_PREFIXES = ("taehv.", "model.", "module.")  # wrappers' prefixes (a whole-state prefix is stripped)


def flax_path(torch_name: str) -> tuple[str, ...] | None:
    """`decoder.3.conv.0.weight` -> (decoder, layers_3, conv_0, kernel); None if not TAEHV-shaped."""
    parts = torch_name.split(".")
    if len(parts) < 3 or parts[0] not in PARTS or not parts[1].isdigit() or parts[-1] not in ("weight", "bias"):
        return None
    out = [parts[0], f"layers_{parts[1]}"]
    for p in parts[2:-1]:
        if p.isdigit():
            out[-1] = f"{out[-1]}_{p}"
        else:
            out.append(p)
    return (*out, "kernel" if parts[-1] == "weight" else "bias")


def torch_name(path: str) -> str:
    """`decoder/layers_3/conv_0/kernel` -> `decoder.3.conv.0.weight` (inverse of `flax_path`)."""
    part, layer, *rest, leaf = path.split("/")
    rest = [re.sub(r"_(\d+)$", r".\1", p) for p in rest]
    return ".".join([part, layer.removeprefix("layers_"), *rest, {"kernel": "weight"}.get(leaf, leaf)])


def taehv_abstract(cfg: TAEHVConfig, parts=PARTS) -> dict:
    """The `TAEHV` params tree of `cfg` (only `parts`) as ShapeDtypeStructs; nothing allocated."""
    from star_jax.models.taehv import TAEHV, taehv_param_shapes

    tree = taehv_param_shapes(TAEHV(cfg))
    return {p: tree[p] for p in parts}


def _strip_prefix(state: dict) -> dict:
    for prefix in _PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            return {k[len(prefix):]: v for k, v in state.items()}
    return state


def _patch_tgrow(state: dict, want: dict) -> dict:
    """The reference's `patch_tgrow_layers`: a TGrow kernel with too many output channels keeps the last."""
    out = dict(state)
    for name, value in state.items():
        path = "/".join(flax_path(name) or ())
        if (path.endswith("/conv/kernel") and path.startswith("decoder/") and path in want
                and np.ndim(value) == 4 and value.shape[0] > want[path].shape[-1]):
            out[name] = value[-want[path].shape[-1]:]
    return out


def convert_taehv_state(state: dict, cfg: TAEHVConfig, parts=PARTS, dtype=None) -> dict:
    """A loaded TAEHV state dict {torch name: array} -> checked Flax params {part: tree} (numpy,
    optionally cast). `parts` the halves expected in the file (a decoder-only file: ("decoder",));
    CheckpointError lists every missing, unexpected and mis-shaped tensor by its torch name."""
    from flax.traverse_util import flatten_dict, unflatten_dict

    bad_parts = [p for p in parts if p not in PARTS]
    if bad_parts or not parts:
        raise CheckpointError(f"TAEHV parts must be a non-empty subset of {PARTS}, got {tuple(parts)}")
    abstract = taehv_abstract(cfg, tuple(parts))
    want = flatten_dict(abstract, sep="/")
    state = _patch_tgrow(_strip_prefix(dict(state)), want)
    expected = {torch_name(p) for p in want}
    missing = sorted(expected - set(state))
    unexpected = sorted(set(state) - expected)
    if missing or unexpected:
        raise CheckpointError(_listing(f"TAEHV checkpoint does not match the config (parts {', '.join(parts)})",
                                       missing=missing, unexpected=unexpected))
    flat = {}
    for name, value in state.items():
        value = np.asarray(value)
        if name.endswith(".weight") and value.ndim == 4:  # (O, I, kH, kW) -> (kH, kW, I, O)
            value = np.transpose(value, (2, 3, 1, 0))
        flat[flax_path(name)] = value if dtype is None else value.astype(dtype)
    params = unflatten_dict(flat)
    check_tree_shapes(params, abstract, "converted TAEHV params do not match the model", torch_name)
    return params


def check_taehv_file(path: str, cfg: TAEHVConfig, parts=PARTS) -> None:
    """Checks a TAEHV weights file's names and shapes against `cfg` from its headers (nothing loaded)."""
    shapes = read_weight_shapes(path)
    try:
        convert_taehv_state(shape_placeholders(shapes), cfg, parts)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def load_taehv_checkpoint(path: str, cfg: TAEHVConfig, parts=PARTS, dtype=np.float32) -> dict:
    """A .pth / .safetensors TAEHV file -> checked Flax params on the host (numpy)."""
    state = read_weights(path)
    try:
        return convert_taehv_state(state, cfg, parts, dtype)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def _config_dict(cfg: TAEHVConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k not in _RUN_FIELDS}


def read_taehv_json(folder: str, dtype: str = "float32") -> tuple[TAEHVConfig, tuple[str, ...]]:
    """(config with `dtype` as compute dtype, parts) of a converted TAEHV folder's taehv.json;
    CheckpointError naming the file and what is wrong."""
    path = os.path.join(folder, TAEHV_JSON)
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: expected the TAEHV folder's taehv.json (written by `python -m "
                              f"star_jax.checkpoint.convert_taehv`), found no such file") from None
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: expected JSON, could not read it ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != TAEHV_JSON_FORMAT or not isinstance(meta.get("config"), dict):
        raise CheckpointError(f"{path}: expected {{'format': {TAEHV_JSON_FORMAT}, 'config': {{...}}, 'parts': [...]}}, "
                              f"found {str(meta)[:80]}")
    fields = {f.name for f in dataclasses.fields(TAEHVConfig)} - set(_RUN_FIELDS)
    given = meta["config"]
    if set(given) != fields:
        raise CheckpointError(f"{path}: config fields: missing {sorted(fields - set(given))}, unknown "
                              f"{sorted(set(given) - fields)}")
    parts = tuple(meta.get("parts", ()))
    if not parts or any(p not in PARTS for p in parts):
        raise CheckpointError(f"{path}: 'parts' must be a non-empty subset of {list(PARTS)}, found {meta.get('parts')!r}")
    cfg = TAEHVConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()},
                      dtype=dtype, param_dtype="float32")
    return cfg, parts


def check_taehv_folder(folder: str, dtype: str = "float32") -> tuple[TAEHVConfig, tuple[str, ...]]:
    """Checks a converted TAEHV folder (taehv.json, stored shapes) with nothing loaded; returns its
    (config, parts)."""
    cfg, parts = read_taehv_json(folder, dtype)
    check_tree_shapes(orbax_shapes(folder, "taehv"), taehv_abstract(cfg, parts),
                      f"{folder}: the stored TAEHV params do not match its taehv.json", torch_name)
    return cfg, parts


def load_taehv_folder(folder: str, dtype: str = "float32"):
    """A converted TAEHV folder -> (TAEHV module, params {part: tree}), checked first."""
    from star_jax.models.taehv import TAEHV

    cfg, parts = check_taehv_folder(folder, dtype)
    return TAEHV(cfg), restore_params(folder, what="taehv")


def write_taehv_folder(params: dict, cfg: TAEHVConfig, out: str, variant: str, source: str) -> str:
    """Writes checked params + taehv.json to the new folder `out`, atomically; returns its path."""
    from star_jax.io import files

    meta = {"format": TAEHV_JSON_FORMAT, "variant": variant, "config": _config_dict(cfg),
            "parts": sorted(params, key=PARTS.index), "source": source}
    with files.staged_folder(out, create=False) as tmp:
        save_params(params, tmp)
        files.write_json(os.path.join(tmp, TAEHV_JSON), meta)
    return os.path.abspath(out)


def main(argv=None) -> None:
    """The conversion command (module docstring); raises CheckpointError for unusable inputs."""
    import jax

    from star_jax.cli import ArgumentParser
    from star_jax.io import files

    ap = ArgumentParser(prog="python -m star_jax.checkpoint.convert_taehv", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help="the published .pth or .safetensors (taew2_1)")
    ap.add_argument("--out", required=True, help="folder to write (must not exist), e.g. <model folder>/taehv")
    ap.add_argument("--variant", default="wan2.1", choices=sorted(TAEHV_VARIANTS))
    ap.add_argument("--parts", default="all", choices=("all", "decoder"), help="keep the decoder only, or both")
    ap.add_argument("--dry_run", action="store_true", help="check --src names and shapes and --out, write nothing")
    ap.add_argument("--debug", action="store_true", help="print the traceback of user errors too")
    a = ap.parse_args(argv)
    if os.path.lexists(a.out):
        raise CheckpointError(f"{a.out}: --out already exists; refusing to overwrite it (give a new folder)")
    files.check_output_folder(a.out)
    cfg = taehv_variant(a.variant)
    check_taehv_file(a.src, cfg)  # the file holds both halves; names and shapes before loading anything
    if a.dry_run:
        print(f"dry run: {a.src} matches the TAEHV {a.variant} model; {a.out} can be written")
        return
    params = load_taehv_checkpoint(a.src, cfg)
    if a.parts == "decoder":
        params = {"decoder": params["decoder"]}
    path = write_taehv_folder(params, cfg, a.out, a.variant, os.path.basename(a.src))
    count = sum(int(np.size(x)) for x in jax.tree_util.tree_leaves(params))
    print(f"converted {a.src} -> {path}: {count:,} parameters (TAEHV {a.variant}, {', '.join(params)})")


if __name__ == "__main__":
    from star_jax import cli

    cli.main(main, sys.argv[1:])
