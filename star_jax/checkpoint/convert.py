"""Weight conversion: Wan / InSpatio-World or diffusers safetensors -> Flax params -> orbax.

    python -m star_jax.checkpoint.convert --src model.safetensors --variant 1.3B --out ckpt/dit
    python -m star_jax.checkpoint.convert --model vae --src Wan2.1_VAE.pth --out ckpt/vae
    params = load_dit_checkpoint("model.safetensors", dit_variant("1.3B"))   # host numpy tree

Original Wan naming (`blocks.0.self_attn.q.weight`, `head.head`, ...; an optional
`model.diffusion_model.` prefix is stripped) and diffusers naming (`blocks.0.attn1.to_q.weight`,
`proj_out`, ...) are detected from the keys. The result is checked against `jax.eval_shape` of the
model: missing, unexpected or mis-shaped tensors raise CheckpointError listing every one.
"""

from __future__ import annotations

import argparse
import glob
import os

import numpy as np

from star_jax.errors import InputError
from star_jax.models.variants import DiTConfig


class CheckpointError(InputError):
    """A checkpoint that does not fit the model; the message lists every offending key."""


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


def detect_naming(state: dict) -> str:
    keys = list(state)
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys):
        return "diffusers"
    if any(k.startswith("time_embedding.") or ".self_attn." in k for k in keys):
        return "wan"
    raise CheckpointError(f"cannot tell the checkpoint's naming from its keys (first: {keys[:5]})")



def wan_to_flax(state: dict, cfg: DiTConfig) -> dict:
    """Original-Wan-named tensors (torch layouts) -> the `WanDiT` params tree (numpy)."""
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
    for ours, theirs in (("time_embedding_0", "time_embedding.0"), ("time_embedding_2", "time_embedding.2"),
                         ("time_projection", "time_projection.1"), ("text_embedding_0", "text_embedding.0"),
                         ("text_embedding_2", "text_embedding.2"), ("head", "head.head")):
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
    if missing or extra:
        raise CheckpointError(_listing("checkpoint does not match the model", missing=missing, unexpected=extra))
    import jax

    params["blocks"] = jax.tree_util.tree_map(lambda *xs: np.stack(xs), *per_layer)
    return params


def _listing(title, **groups):
    lines = [title + ":"]
    for name, items in groups.items():
        if items:
            shown = ", ".join(map(str, items[:20])) + (f", ... (+{len(items) - 20})" if len(items) > 20 else "")
            lines.append(f"  {name} ({len(items)}): {shown}")
    return "\n".join(lines)


def check_against_model(params: dict, cfg: DiTConfig) -> None:
    """Raises CheckpointError unless `params` has exactly the model's keys and shapes."""
    import flax.linen as nn

    from star_jax.models.dit import abstract_params

    check_tree_shapes(params, nn.meta.unbox(abstract_params(cfg)), "converted params do not match the model")


def check_tree_shapes(params: dict, abstract: dict, title: str) -> None:
    """Raises CheckpointError (headed `title`) listing every key of `params` missing from,
    extra to, or shaped differently from the `abstract` tree (arrays or ShapeDtypeStructs)."""
    from flax.traverse_util import flatten_dict

    want = flatten_dict(abstract, sep="/")
    have = flatten_dict(params, sep="/")
    missing = sorted(set(want) - set(have))
    extra = sorted(set(have) - set(want))
    bad = [f"{k}: checkpoint {tuple(np.shape(have[k]))} != model {tuple(want[k].shape)}"
           for k in sorted(set(want) & set(have)) if tuple(np.shape(have[k])) != tuple(want[k].shape)]
    if missing or extra or bad:
        raise CheckpointError(_listing(title, missing=missing, unexpected=extra, mis_shaped=bad))


def read_safetensors(path: str) -> dict:
    """All tensors of a .safetensors file, or of every shard in a folder, as numpy (bf16 kept)."""
    from safetensors import safe_open

    files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else [path]
    if not files or not all(os.path.isfile(f) for f in files):
        raise CheckpointError(f"{path}: no safetensors weights found")
    out = {}
    for f in files:
        try:
            with safe_open(f, framework="flax") as fh:
                for k in fh.keys():
                    out[k] = np.asarray(fh.get_tensor(k))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{f}: cannot read safetensors ({type(e).__name__}: {e})") from e
    return out


def convert_dit_state(state: dict, cfg: DiTConfig, dtype=None) -> dict:
    """A loaded state dict (either naming) -> checked Flax params (numpy, optionally cast)."""
    if detect_naming(state) == "diffusers":
        state = diffusers_to_wan_names(state)
    params = wan_to_flax(state, cfg)
    check_against_model(params, cfg)
    if dtype is not None:
        import jax

        params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(dtype), params)
    return params


def load_dit_checkpoint(path: str, cfg: DiTConfig, dtype=np.float32) -> dict:
    """safetensors file / folder -> checked Flax params on the host (numpy)."""
    return convert_dit_state(read_safetensors(path), cfg, dtype)


def save_params(params, path: str) -> None:
    """Saves a params pytree as an orbax checkpoint at `path` (written atomically by orbax)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def restore_params(path: str, abstract=None):
    """Restores params saved by `save_params`; `abstract` (ShapeDtypeStructs with shardings)
    places them directly on a mesh."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no orbax checkpoint here")
    with ocp.StandardCheckpointer() as ckptr:
        return ckptr.restore(path, abstract) if abstract is not None else ckptr.restore(path)


def main(argv=None):
    from star_jax.models.variants import DIT_VARIANTS, dit_variant, vae_variant

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", required=True, help=".safetensors file or folder of shards (VAE: also .pth)")
    ap.add_argument("--model", default="dit", choices=("dit", "vae"), help="which network the weights are")
    ap.add_argument("--variant", default="1.3B", choices=sorted(DIT_VARIANTS))
    ap.add_argument("--in-dim", type=int, default=36, help="DiT input channels (36 for STAR)")
    ap.add_argument("--out", required=True, help="orbax checkpoint folder to write")
    a = ap.parse_args(argv)
    if os.path.exists(a.out):
        raise SystemExit(f"{a.out} exists; refusing to overwrite")
    if a.model == "vae":
        from star_jax.checkpoint.vae import load_vae_checkpoint

        params = load_vae_checkpoint(a.src, vae_variant(a.variant))
        what = f"VAE, {a.variant}"
    else:
        params = load_dit_checkpoint(a.src, dit_variant(a.variant, in_dim=a.in_dim))
        what = f"DiT, {a.variant}, in_dim {a.in_dim}"
    save_params(params, a.out)
    from star_jax.models.dit import count_params

    n = count_params(params)
    print(f"converted {a.src} -> {a.out}: {n:,} parameters ({what})")

if __name__ == "__main__":
    main()
