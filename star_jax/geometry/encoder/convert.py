"""Depth-Anything-3 weights (torch state dict names) -> GeometryEncoder params.

    params = convert_da3_state(state, encoder_variant("small"))     # state: {name: numpy array}
    params = load_da3_checkpoint("DA3-SMALL/model.safetensors", encoder_variant("small"))

Every Flax parameter is named after one reference tensor (`da3_name`): `backbone/blocks_4/attn/qkv/
kernel` <- `backbone.pretrained.blocks.4.attn.qkv.weight` (transposed), convs (O, I, kh, kw) ->
(kh, kw, I, O), transposed convs (I, O, kh, kw) -> (kh, kw, I, O). The released files (Hugging Face
`depth-anything/DA3-SMALL`, `DA3-BASE`) prefix every key with `model.`; the prefix is stripped.
The tensors of the three coarser aux levels of the DPT head (`head.scratch.output_conv{1,2}_aux.
{0,1,2}.*`), which the reference's forward computes and discards or never reads, are dropped
(`UNUSED_BY_FORWARD`). The aux LayerNorm is one module shared by all four levels in the reference
(`output_conv2_aux.{0,1,2,3}.2` are one tensor), and safetensors keeps only one of the names
(`.0.2`), so any of them is accepted for `.3.2`. Anything else missing, unexpected or mis-shaped raises CheckpointError
listing every one, checked against `jax.eval_shape` of the model.
"""

from __future__ import annotations

import functools
import re

import numpy as np

from star_jax.checkpoint.convert import _listing  # the one missing / unexpected / mis-shaped listing
from star_jax.checkpoint.storage import CheckpointError, read_weights
from star_jax.geometry.encoder.variants import EncoderConfig

UNUSED_BY_FORWARD = re.compile(r"^head\.scratch\.output_conv[12]_aux\.[012]\.")
_TRANSPOSED_CONVS = ("head/resize_layers_0/", "head/resize_layers_1/")
_SHARED_AUX_NORM = re.compile(r"^head\.scratch\.output_conv2_aux\.3\.2\.")
_HEAD_SCRATCH = re.compile(r"^head\.(layer\d_rn|refinenet\d|output_conv)")


def da3_name(path: str) -> str:
    """Flax param path ('/'-separated) -> the reference state-dict name."""
    name = path.replace("/", ".")
    name = re.sub(r"_(\d+)(?=\.|_\d)", r".\1", name)  # blocks_4 -> blocks.4, output_conv1_aux_3_0 -> ...aux.3.0
    name = re.sub(r"\.(kernel|scale)$", ".weight", name)
    name = re.sub(r"\.(ls[12])$", r".\1.gamma", name)
    name = re.sub(r"((?:blocks|trunk)\.\d+)\.(fc[12])\.", r"\1.mlp.\2.", name)
    name = name.replace("pose_branch_fc", "pose_branch.fc").replace("patch_embed.", "patch_embed.proj.")
    if name.startswith("backbone."):
        name = "backbone.pretrained." + name[len("backbone."):]
    if _HEAD_SCRATCH.match(name):
        name = "head.scratch." + name[len("head."):]
    return name


def _to_flax(path: str, value: np.ndarray, shape: tuple) -> np.ndarray:
    value = np.asarray(value)
    if path.endswith("/kernel") and value.ndim == 2:
        return value.T
    if path.endswith("/kernel") and value.ndim == 4:
        return value.transpose(2, 3, 0, 1) if path.startswith(_TRANSPOSED_CONVS) else value.transpose(2, 3, 1, 0)
    if path.endswith(("cls_token", "camera_token", "pos_embed")) and value.ndim == 3 and value.shape[0] == 1:
        return value[0]
    return value


@functools.lru_cache(maxsize=4)
def encoder_shapes(cfg: EncoderConfig) -> dict:
    """{flax path: shape} of the model's parameters (from jax.eval_shape; nothing allocated)."""
    import flax.linen as nn
    from flax.traverse_util import flatten_dict

    from star_jax.geometry.encoder.model import abstract_params

    return {k: tuple(v.shape) for k, v in flatten_dict(nn.meta.unbox(abstract_params(cfg)), sep="/").items()}


def convert_da3_state(state: dict, cfg: EncoderConfig, dtype=np.float32, source: str = "checkpoint") -> dict:
    """{reference name: array} -> nested Flax params of GeometryEncoder(cfg) (host numpy, `dtype`).
    Raises CheckpointError (naming `source`) listing missing / unexpected / mis-shaped tensors."""
    from flax.traverse_util import unflatten_dict

    if state and all(k.startswith("model.") for k in state):
        state = {k[len("model."):]: v for k, v in state.items()}
    want = encoder_shapes(cfg)
    names = {da3_name(p): p for p in want}
    for name in [n for n in names if n not in state and _SHARED_AUX_NORM.match(n)]:
        for level in "012":
            alias = name.replace("_aux.3.2.", f"_aux.{level}.2.")
            if alias in state:
                state = {**state, name: state[alias]}
                break
    missing = sorted(n for n in names if n not in state)
    unexpected = sorted(k for k in state if k not in names and not UNUSED_BY_FORWARD.match(k))
    out, bad = {}, []
    for name, path in names.items():
        if name in state:
            value = _to_flax(path, state[name], want[path])
            if tuple(value.shape) != want[path]:
                bad.append(f"{name}: checkpoint {tuple(np.shape(state[name]))} does not give model {want[path]} "
                           f"[{path}]")
            else:
                out[path] = np.asarray(value, dtype)
    if missing or unexpected or bad:
        raise CheckpointError(_listing(f"{source}: does not match the {cfg.name!r} geometry encoder (is it "
                                       f"another size?)", missing=missing, unexpected=unexpected, mis_shaped=bad))
    return unflatten_dict(out, sep="/")


def load_da3_checkpoint(path: str, cfg: EncoderConfig, dtype=np.float32) -> dict:
    """Params from a DA3 .safetensors file / folder or torch state-dict file."""
    return convert_da3_state(read_weights(path), cfg, dtype, source=str(path))


def params_to_da3_state(params: dict) -> dict:
    """GeometryEncoder params -> {reference name: numpy} (the inverse of `convert_da3_state`, for
    tests and for checkpoints made here)."""
    from flax.traverse_util import flatten_dict

    out = {}
    for path, value in flatten_dict(params, sep="/").items():
        value = np.asarray(value)
        if path.endswith("/kernel") and value.ndim == 2:
            value = value.T
        elif path.endswith("/kernel") and value.ndim == 4:
            value = value.transpose(2, 3, 0, 1) if path.startswith(_TRANSPOSED_CONVS) else value.transpose(3, 2, 0, 1)
        elif path.endswith(("cls_token", "camera_token", "pos_embed")):
            value = value[None]
        out[da3_name(path)] = value
    return out


def checkpoint_variant(shapes: dict, path: str = "checkpoint") -> str:
    """The variant name whose width matches a DA3 state's {name: shape} (from `read_weight_shapes`)."""
    from star_jax.geometry.encoder.variants import VARIANTS

    key = next((k for k in shapes if k.removeprefix("model.") == "backbone.pretrained.cls_token"), None)
    if key is None:
        raise CheckpointError(f"{path}: expected a Depth-Anything-3 checkpoint (a backbone.pretrained.cls_token "
                              f"tensor), found none among {len(shapes)} tensors (first: {sorted(shapes)[:3]})")
    width = shapes[key][-1]
    names = [n for n, c in VARIANTS.items() if c.embed_dim == width]
    if not names:
        raise CheckpointError(f"{path}: a DA3 backbone of width {width}; this port has "
                              + ", ".join(f"{n} ({c.embed_dim})" for n, c in VARIANTS.items())
                              + " (the larger DA3 sizes are not ported)")
    return names[0]
