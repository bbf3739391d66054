"""The STAR networks and their weights, bundled for inference.

    model = random_star_model("tiny", jax.random.PRNGKey(0))           # tests, CPU demos
    model = load_star_model("1.3B", dit="ckpt/dit", vae="ckpt/vae", text="caption_umt5.npy")

Checkpoints are orbax folders written by `python -m star_jax.checkpoint.convert` (DiT and VAE).
Text conditioning is a precomputed umT5 embedding (.npy / .npz, (Lc, text_dim) or (1, Lc, text_dim));
without one the DiT sees zeros, and `text_source` says so.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.checkpoint.convert import CheckpointError, restore_params
from star_jax.models.dit import WanDiT
from star_jax.models.variants import dit_variant, vae_variant
from star_jax.models.vae import WanVAE, init_vae_params


@dataclasses.dataclass
class StarModel:
    """dit (block-causal WanDiT) and vae with their params; text (1, Lc, text_dim);
    `text_source` ("zeros" or a path) and `weights` (what the params are) go into output metadata."""

    dit: WanDiT
    dit_params: Any
    vae: WanVAE
    vae_params: Any
    text: jnp.ndarray
    text_source: str = "zeros"
    weights: str = "random-init"


def load_text_embedding(path: str | None, text_dim: int, text_len: int) -> tuple[jnp.ndarray, str]:
    """(1, Lc, text_dim) float32 from a .npy / .npz (first array), or zeros (1, text_len, text_dim)."""
    if not path:
        return jnp.zeros((1, text_len, text_dim), jnp.float32), "zeros"
    try:
        arr = np.load(path)
        if isinstance(arr, np.lib.npyio.NpzFile):
            arr = arr[arr.files[0]]
    except (OSError, ValueError, IndexError) as e:
        raise ValueError(f"{path}: cannot read a text embedding ({e})") from e
    arr = np.asarray(arr, np.float32)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[-1] != text_dim:
        raise ValueError(f"{path}: text embedding must be (Lc, {text_dim}) or (1, Lc, {text_dim}), got {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{path}: text embedding has NaN or inf values")
    return jnp.asarray(arr), os.path.abspath(path)


def _models(variant: str, dtype: str):
    dit = WanDiT(dit_variant(variant, dtype=dtype), block_causal=True)
    vae = WanVAE(vae_variant(variant, dtype=dtype))
    return dit, vae


@functools.partial(jax.jit, static_argnums=0)
def _init_dit(dit: WanDiT, rng):
    import flax.linen as nn

    cfg = dit.cfg
    x = jnp.zeros((1, cfg.frames_per_block, 4, 4, cfg.in_dim))
    return nn.meta.unbox(dit.init(rng, x, jnp.zeros((1,)), jnp.zeros((1, 4, cfg.text_dim)))["params"])


@functools.partial(jax.jit, static_argnums=0)
def _init_vae(vae: WanVAE, rng):
    return init_vae_params(vae, rng, 16, 16)


def random_star_model(variant: str, rng, dtype: str = "float32", text: str | None = None) -> StarModel:
    """Randomly initialised networks of a variant (the DiT's zero-initialised output head and
    modulation are perturbed, so the output depends on the input)."""
    dit, vae = _models(variant, dtype)
    cfg = dit.cfg
    k_dit, k_vae, k_noise = jax.random.split(rng, 3)
    params = _init_dit(dit, k_dit)
    leaves, tree = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(k_noise, len(leaves))
    params = jax.tree_util.tree_unflatten(tree, [p + 0.02 * jax.random.normal(k, p.shape, p.dtype)
                                                 for p, k in zip(leaves, keys)])
    vae_params = _init_vae(vae, k_vae)
    emb, src = load_text_embedding(text, cfg.text_dim, cfg.text_len)
    return StarModel(dit, params, vae, vae_params, emb, src, f"random-init ({variant})")


def load_star_model(variant: str, dit: str, vae: str, text: str | None = None, dtype: str = "bfloat16") -> StarModel:
    """Converted orbax checkpoints (see `star_jax.checkpoint.convert`) -> StarModel. Shapes are
    checked against the variant before any compute."""
    import flax.linen as nn

    from star_jax.checkpoint.convert import check_against_model
    from star_jax.checkpoint.vae import check_vae_against_model

    for name, path in (("dit", dit), ("vae", vae)):
        if not path or not os.path.isdir(path):
            raise CheckpointError(f"{name} checkpoint {path!r}: no such folder (convert weights with "
                                  f"`python -m star_jax.checkpoint.convert --model {name} ...`)")
    dit_m, vae_m = _models(variant, dtype)
    dit_params = restore_params(dit)
    check_against_model(nn.meta.unbox(dit_params), dit_m.cfg)
    vae_params = restore_params(vae)
    check_vae_against_model(vae_params, vae_m.cfg)
    emb, src = load_text_embedding(text, dit_m.cfg.text_dim, dit_m.cfg.text_len)
    return StarModel(dit_m, dit_params, vae_m, vae_params, emb, src, f"{os.path.abspath(dit)} + {os.path.abspath(vae)}")
