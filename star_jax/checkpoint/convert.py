"""Weight conversion: Wan / InSpatio-World or diffusers safetensors -> Flax params -> orbax.

    python -m star_jax.checkpoint.convert --src model.safetensors --variant 1.3B --out ckpt/dit
    python -m star_jax.checkpoint.convert --model vae --src Wan2.1_VAE.pth --out ckpt/vae
    python -m star_jax.checkpoint.convert ... --dry_run     # names and shapes only, nothing loaded or written
    params = load_dit_checkpoint("model.safetensors", dit_variant("1.3B"))   # host numpy tree

Original Wan naming (`blocks.0.self_attn.q.weight`, `head.head`, ...; an optional
`model.diffusion_model.` prefix is stripped) and diffusers naming (`blocks.0.attn1.to_q.weight`,
`proj_out`, ...) are detected from the keys. The result is checked against `jax.eval_shape` of the
model: missing, unexpected or mis-shaped tensors raise CheckpointError listing every one in the
naming of the user's file (mis-shaped ones with our Flax path in brackets).

The command checks `--out` (new, and creatable) before reading any weight, writes the checkpoint
into a hidden folder beside it and renames it into place at the end; an orbax folder that is
empty or not a checkpoint gives a CheckpointError naming the folder.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys

import numpy as np

from star_jax.checkpoint.storage import (  # noqa: F401 - re-exported: the public names of checkpoint I/O
    CheckpointError,
    orbax_shapes,
    read_safetensors,
    read_weight_shapes,
    restore_params,
    save_params,
    shape_placeholders,
)
from star_jax.models.variants import DiTConfig


# diffusers -> original Wan names (substring rewrites, applied in order)
_DIFFUSERS_TO_WAN = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    (".attn1.", ".self_attn."),
    (".attn2.", ".cross_attn."),
    (".to_q.", ".q."),
    (".to_k.", ".k."),
    (".to_v.", ".v."),
    (".to_out.0.", ".o."),
    (".ffn.net.0.proj.", ".ffn.0."),
    (".ffn.net.2.", ".ffn.2."),
    (".norm2.", ".norm3."),  # diffusers' affine cross-attention norm is Wan's norm3
    ("proj_out.", "head.head."),
)


def diffusers_to_wan_names(state: dict) -> dict:
    out = {}
    for k, v in state.items():
        name = k
        if name == "scale_shift_table":
            name = "head.modulation"
        elif name.endswith(".scale_shift_table"):
            name = name[: -len("scale_shift_table")] + "modulation"
        for a, b in _DIFFUSERS_TO_WAN:
            name = name.replace(a, b)
        out[name] = v
    return out


def wan_to_diffusers_name(name: str) -> str:
    """An original-Wan DiT tensor name in diffusers naming (the inverse of `diffusers_to_wan_names`)."""
    if name == "head.modulation":
        return "scale_shift_table"
    if name.endswith(".modulation"):
        name = name[: -len("modulation")] + "scale_shift_table"
    for a, b in reversed(_DIFFUSERS_TO_WAN):
        name = name.replace(b, a)
    return name


_TOP_LINEARS = (("time_embedding_0", "time_embedding.0"), ("time_embedding_2", "time_embedding.2"),
                ("time_projection", "time_projection.1"), ("text_embedding_0", "text_embedding.0"),
                ("text_embedding_2", "text_embedding.2"), ("head", "head.head"))


def flax_to_wan_name(path: str) -> str:
    """A `WanDiT` param path (`blocks/self_attn/q/kernel`) -> its Wan tensor name
    (`blocks.*.self_attn.q.weight`; `*` = every layer)."""
    parts = path.split("/")
    leaf = {"kernel": "weight", "scale": "weight"}.get(parts[-1], parts[-1])
    top = dict(_TOP_LINEARS)
    if parts[0] == "head_modulation":
        return "head.modulation"
    if parts[0] == "patch_embedding" or parts[0] in top:
        return f"{top.get(parts[0], parts[0])}.{leaf}"
    if parts[0] == "blocks":
        return ".".join(["blocks.*", *(p.replace("ffn_", "ffn.") for p in parts[1:-1]), leaf])
    return path


def _namer(naming: str, prefix: str = ""):
    """Wan name -> the name the user's file uses (its naming, and its key prefix)."""
    if naming == "diffusers":
        return lambda name: prefix + wan_to_diffusers_name(name)
    return lambda name: prefix + name


def detect_naming(state: dict) -> str:
    keys = list(state)
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys):
        return "diffusers"
    if any(k.startswith("time_embedding.") or ".self_attn." in k for k in keys):
        return "wan"
    raise CheckpointError(f"cannot tell the checkpoint's naming from its keys (first: {keys[:5]})")



def wan_to_flax(state: dict, cfg: DiTConfig, display=None, stack=np.stack) -> dict:
    """Original-Wan-named tensors (torch layouts) -> the `WanDiT` params tree (numpy).

    `display` maps a Wan name to the user's name in the error listing; `stack` joins the layers
    (a shape-only check passes one that broadcasts instead of copying)."""
    state = {k.removeprefix("model.diffusion_model."): v for k, v in state.items()}
    used: set[str] = set()
    missing: list[str] = []

    def get(name):
        if name not in state:
            missing.append(name)
            return None
        used.add(name)
        return np.asarray(state[name])

    def lin(name):
        w, b = get(f"{name}.weight"), get(f"{name}.bias")
        return None if w is None or b is None else {"kernel": w.T, "bias": b}

    params: dict = {}
    w = get("patch_embedding.weight")  # (dim, C, pt, ph, pw) -> (pt*ph*pw*C, dim)
    if w is not None:
        params["patch_embedding"] = {"kernel": w.transpose(2, 3, 4, 1, 0).reshape(-1, w.shape[0]),
                                     "bias": get("patch_embedding.bias")}
    for ours, theirs in _TOP_LINEARS:
        params[ours] = lin(theirs)
    params["head_modulation"] = get("head.modulation")

    per_layer = []
    for i in range(cfg.num_layers):
        p = f"blocks.{i}."
        blk = {"modulation": get(p + "modulation")}
        for attn in ("self_attn", "cross_attn"):
            a = {n: lin(f"{p}{attn}.{n}") for n in ("q", "k", "v", "o")}
            if cfg.qk_norm:
                a["norm_q"] = {"weight": get(f"{p}{attn}.norm_q.weight")}
                a["norm_k"] = {"weight": get(f"{p}{attn}.norm_k.weight")}
            blk[attn] = a
        if cfg.cross_attn_norm:
            blk["norm3"] = {"scale": get(p + "norm3.weight"), "bias": get(p + "norm3.bias")}
        blk["ffn_0"] = lin(p + "ffn.0")
        blk["ffn_2"] = lin(p + "ffn.2")
        per_layer.append(blk)
    extra = sorted(set(state) - used)
    show = display or (lambda name: name)
    if missing or extra:
        raise CheckpointError(_listing("checkpoint does not match the model", missing=[show(k) for k in missing],
                                       unexpected=[show(k) for k in extra]))
    from flax.traverse_util import flatten_dict, unflatten_dict

    # shapes before stacking the layers, so each odd tensor is named (np.stack would only fail)
    want = flatten_dict(dit_abstract(cfg), sep="/")
    entries = [(k, flax_to_wan_name(k), v, want[k].shape) for k, v in flatten_dict(params, sep="/").items()]
    layers = [flatten_dict(b, sep="/") for b in per_layer]
    for i, layer in enumerate(layers):
        for k, v in layer.items():
            path = f"blocks/{k}"
            entries.append((path, flax_to_wan_name(path).replace("blocks.*.", f"blocks.{i}."), v, want[path].shape[1:]))
    odd = [f"{show(name)} [{path}]: checkpoint {np.shape(v)} != model {tuple(need)}"
           for path, name, v, need in entries if np.shape(v) != tuple(need)]
    if odd:
        raise CheckpointError(_listing("checkpoint does not match the model", mis_shaped=odd))
    params["blocks"] = unflatten_dict({k: stack([layer[k] for layer in layers]) for k in layers[0]}, sep="/")
    return params


def _listing(title, **groups):
    """One line: `title: missing (2): a, b; unexpected (1): c` (at most 20 names a group)."""
    parts = []
    for name, items in groups.items():
        if items:
            shown = ", ".join(map(str, items[:20])) + (f", ... (+{len(items) - 20})" if len(items) > 20 else "")
            parts.append(f"{name} ({len(items)}): {shown}")
    return f"{title}: " + "; ".join(parts)


@functools.lru_cache(maxsize=4)
def dit_abstract(cfg: DiTConfig) -> dict:
    """The `WanDiT` params tree of `cfg` as ShapeDtypeStructs (nothing allocated; do not modify)."""
    import flax.linen as nn

    from star_jax.models.dit import abstract_params

    return nn.meta.unbox(abstract_params(cfg))


def check_against_model(params: dict, cfg: DiTConfig, display=None) -> None:
    """Raises CheckpointError unless `params` has exactly the model's keys and shapes
    (`display` maps a Wan tensor name to the user's, for the listing)."""
    show = display or (lambda name: name)
    check_tree_shapes(params, dit_abstract(cfg), "converted params do not match the model",
                      lambda path: show(flax_to_wan_name(path)))


def check_tree_shapes(params: dict, abstract: dict, title: str, display=None) -> None:
    """Raises CheckpointError (headed `title`) listing every key of `params` missing from,
    extra to, or shaped differently from the `abstract` tree (arrays or ShapeDtypeStructs).
    `display` maps a param path (`blocks/self_attn/q/kernel`) to the name the user knows; the
    mis-shaped entries then show both."""
    from flax.traverse_util import flatten_dict

    want = flatten_dict(abstract, sep="/")
    have = flatten_dict(params, sep="/")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    name = (lambda k: f"{display(k)} [{k}]") if display else (lambda k: k)
    bad = [f"{name(k)}: checkpoint {tuple(np.shape(have[k]))} != model {tuple(want[k].shape)}"
           for k in sorted(set(want) & set(have)) if tuple(np.shape(have[k])) != tuple(want[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(_listing(title, missing=missing, unexpected=extra, mis_shaped=bad))


def _user_naming(state: dict) -> tuple[dict, callable]:
    """(Wan-named state, Wan name -> the user's name) for a state dict in either naming."""
    naming = detect_naming(state)
    prefix = "model.diffusion_model." if all(k.startswith("model.diffusion_model.") for k in state) else ""
    wan = {k.removeprefix(prefix): v for k, v in state.items()}
    if naming == "diffusers":
        wan = diffusers_to_wan_names(wan)
    origin = dict(zip(wan, state))  # renamed -> the file's own key (dicts keep order)
    to_user = _namer(naming, prefix)
    return wan, lambda name: origin.get(name) or to_user(name)


def convert_dit_state(state: dict, cfg: DiTConfig, dtype=None, stack=np.stack) -> dict:
    """A loaded state dict (either naming) -> checked Flax params (numpy, optionally cast).
    Errors list keys in the naming of `state`."""
    wan, display = _user_naming(state)
    params = wan_to_flax(wan, cfg, display, stack)
    check_against_model(params, cfg, display)
    if dtype is not None:
        import jax

        params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(dtype), params)
    return params


def _broadcast_stack(xs):
    """np.stack's shape without its copy (for zero-stride placeholders)."""
    return np.broadcast_to(xs[0], (len(xs),) + np.shape(xs[0]))


def check_dit_file(path: str, cfg: DiTConfig) -> None:
    """Checks a DiT weights file's names and shapes against `cfg` from its headers (nothing loaded)."""
    convert_dit_state(shape_placeholders(read_weight_shapes(path)), cfg, stack=_broadcast_stack)


def check_dit_folder(path: str, cfg: DiTConfig) -> None:
    """Checks a converted DiT orbax folder against `cfg` from its metadata (nothing loaded)."""
    check_tree_shapes(orbax_shapes(path, "dit"), dit_abstract(cfg),
                      f"{path}: the stored DiT params do not match the model")


def load_dit_checkpoint(path: str, cfg: DiTConfig, dtype=np.float32) -> dict:
    """safetensors file / folder -> checked Flax params on the host (numpy)."""
    return convert_dit_state(read_safetensors(path), cfg, dtype)


def main(argv=None) -> None:
    """The conversion command (module docstring); raises CheckpointError for unusable inputs."""
    from star_jax.cli import ArgumentParser
    from star_jax.io import files
    from star_jax.models.variants import DIT_VARIANTS, dit_variant, vae_variant

    ap = ArgumentParser(prog="python -m star_jax.checkpoint.convert", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help=".safetensors file or folder of shards (VAE: also .pth)")
    ap.add_argument("--model", default="dit", choices=("dit", "vae"), help="which network the weights are")
    ap.add_argument("--variant", default="1.3B", choices=sorted(DIT_VARIANTS))
    ap.add_argument("--in-dim", type=int, default=36, help="DiT input channels (36 for STAR)")
    ap.add_argument("--out", required=True, help="orbax checkpoint folder to write (must not exist)")
    ap.add_argument("--conditioning", default="inspatio-release", choices=("inspatio-release", "star-jax-v0"),
                    help="DiT only: the conditioning convention its weights were trained with, recorded in "
                         "star_model.json beside --out (InSpatio-World weights: inspatio-release)")
    ap.add_argument("--dry_run", action="store_true", help="check --src names and shapes and --out, write nothing")
    ap.add_argument("--debug", action="store_true", help="print the traceback of user errors too")
    a = ap.parse_args(argv)
    if os.path.lexists(a.out):
        raise CheckpointError(f"{a.out}: --out already exists; refusing to overwrite it (give a new folder)")
    files.check_output_folder(a.out)
    if a.model == "dit":
        from star_jax.inference.model import checkpoint_conditioning

        checkpoint_conditioning(a.out, a.conditioning)  # refuses a star_model.json beside --out recording another
    if a.model == "vae":
        from star_jax.checkpoint.vae import check_vae_file, load_vae_checkpoint

        cfg, check, load = vae_variant(a.variant), check_vae_file, load_vae_checkpoint
        what = f"VAE, {a.variant}"
    else:
        cfg, check, load = dit_variant(a.variant, in_dim=a.in_dim), check_dit_file, load_dit_checkpoint
        what = f"DiT, {a.variant}, in_dim {a.in_dim}"
    check(a.src, cfg)  # names and shapes from the headers, before loading anything
    if a.dry_run:
        print(f"dry run: {a.src} matches the {what} model; {a.out} can be written")
        return
    params = load(a.src, cfg)
    with files.staged_folder(a.out, create=False) as tmp:  # orbax's own temporary folder stays inside too
        save_params(params, tmp)
    if a.model == "dit":
        from star_jax.inference.model import write_star_model_json

        path = write_star_model_json(os.path.dirname(os.path.abspath(a.out)), a.conditioning)
        print(f"recorded conditioning {a.conditioning!r} in {path}")
    from star_jax.models.dit import count_params

    print(f"converted {a.src} -> {a.out}: {count_params(params):,} parameters ({what})")


if __name__ == "__main__":
    from star_jax import cli

    cli.main(main, sys.argv[1:])
