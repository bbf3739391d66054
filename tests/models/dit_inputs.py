"""Shared inputs of the DiT cache / mask / memory tests: a 2-layer tiny DiT with in_dim 36 on a
4 x 6 latent (2 x 3 = 6 tokens per latent frame), its params, and random inputs."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from star_jax.models import WanDiT, dit_variant

CFG = dit_variant("tiny", in_dim=36, num_layers=2)
H, W = 4, 6
TPF = (H // 2) * (W // 2)


def init_params():
    """The block-causal DiT's params (flax init, seed 0, jitted: one compile, not op-by-op), unboxed."""
    x = jnp.zeros((1, 3, H, W, 36))
    init = jax.jit(WanDiT(CFG, block_causal=True).init)
    v = init(jax.random.key(0), x, jnp.zeros((1,)), jnp.zeros((1, 4, CFG.text_dim)))
    return nn.meta.unbox(v["params"])


def data(T, seed=0, B=2):
    """(latents (B, T, H, W, 36), text (B, 5, text_dim)) float32, standard normal."""
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(B, T, H, W, 36)), jnp.float32)
    return x, jnp.asarray(rng.normal(size=(B, 5, CFG.text_dim)), jnp.float32)
