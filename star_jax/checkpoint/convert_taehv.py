"""TAEHV weights (madebyollin/taehv: `taew2_1.pth` / `taew2_1.safetensors`) -> Flax params of
`star_jax.models.taehv.TAEHV`.

    params = load_taehv_checkpoint("taew2_1.safetensors", taehv_variant("wan2.1"))   # host numpy tree
    check_taehv_file("taew2_1.pth", cfg)       # names and shapes from the headers, nothing loaded

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

import re

import numpy as np

from star_jax.checkpoint.convert import _listing, check_tree_shapes
from star_jax.checkpoint.storage import CheckpointError, read_weight_shapes, read_weights, shape_placeholders
from star_jax.models.taehv import TAEHVConfig

PARTS = ("encoder", "decoder")
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
