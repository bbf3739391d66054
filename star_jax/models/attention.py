"""Attention pieces of the STAR DiT: the swappable attention function, 3-D RoPE, masks.

Layouts: q (B, Lq, N, D), k / v (B, Lk, N, D), masks (B | 1, 1, Lq, Lk) bool (True = attend).
Token order is (frame, row, column), as Wan flattens (T, H, W).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

AttentionFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray | None], jnp.ndarray]


def xla_attention(q, k, v, mask=None):
    """Plain softmax(q k^T / sqrt(D)) v through XLA. The default `AttentionFn`; a cuDNN / Pallas
    flash kernel with the same signature can replace it (`WanDiT(attention_fn=...)`)."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def rope_split(head_dim: int) -> tuple[int, int, int]:
    """Wan's split of a head's channels over (t, h, w): h = w = 2 * (D // 6), t = the rest."""
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def token_positions(num_frames: int, height: int, width: int, frame_offset=0) -> jnp.ndarray:
    """(L, 3) int32 positions (t + frame_offset, h, w) of the tokens of a (T, H, W) token grid."""
    t, h, w = jnp.meshgrid(jnp.arange(num_frames), jnp.arange(height), jnp.arange(width), indexing="ij")
    pos = jnp.stack([t.reshape(-1) + frame_offset, h.reshape(-1), w.reshape(-1)], axis=-1)
    return pos.astype(jnp.int32)


def rope_tables(positions: jnp.ndarray, head_dim: int, theta: float = 10000.0):
    """cos / sin (L, D // 2) for the interleaved channel pairs of each head.

    Pair k of the t-part rotates by pos_t * theta^(-2k / d_t); likewise for h and w. Angles are
    computed in float32 from integer positions (exact for positions < 2^24)."""
    tables = []
    for axis, d in enumerate(rope_split(head_dim)):
        inv_freq = 1.0 / (theta ** (np.arange(0, d, 2, dtype=np.float64) / d))
        tables.append(positions[:, axis, None].astype(jnp.float32) * jnp.asarray(inv_freq, jnp.float32)[None])
    angles = jnp.concatenate(tables, axis=-1)
    return jnp.cos(angles), jnp.sin(angles)


def apply_rope(x: jnp.ndarray, cos: jnp.ndarray, sin: jnp.ndarray) -> jnp.ndarray:
    """Rotates interleaved pairs (x[2k], x[2k+1]) of x (B, L, N, D) by the (L, D/2) angles."""
    xf = x.astype(jnp.float32).reshape(x.shape[:-1] + (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    out = jnp.stack([x1 * c - x2 * s, x1 * s + x2 * c], axis=-1)
    return out.reshape(x.shape).astype(x.dtype)


def block_causal_mask(q_frames: jnp.ndarray, k_frames: jnp.ndarray, frames_per_block: int) -> jnp.ndarray:
    """(1, 1, Lq, Lk): a query in block b sees keys in blocks <= b (blocks of `frames_per_block`
    latent frames); within a block attention is bidirectional."""
    qb = q_frames // frames_per_block
    kb = k_frames // frames_per_block
    return (kb[None, :] <= qb[:, None])[None, None]
