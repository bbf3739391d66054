"""Attention pieces of the STAR DiT: the attention functions, 3-D RoPE, masks.

Layouts: q (B, Lq, N, D), k / v (B, Lk, N, D), masks (B | 1, 1, Lq, Lk) bool (True = attend) or
None (every key visible). Token order is (frame, row, column), as Wan flattens (T, H, W).

Three attention functions compute the same softmax(q k^T / sqrt(D)) v; `DiTConfig.attention`
names one (`attention_by_name`):
    "xla"          the plain XLA graph: (B, N, Lq, Lk) float32 scores in memory (the reference)
    "dot_product"  jax.nn.dot_product_attention: cuDNN's fused flash kernel on a GPU for
                   bf16 / fp16 inputs, else the same XLA graph as "xla"
    "blockwise"    flash-style in pure JAX (any backend): queries and keys in chunks of
                   `chunk` tokens, an online softmax over the key chunks, and a custom VJP that
                   recomputes each chunk's probabilities from the saved log-sum-exp, so neither
                   the forward nor the backward pass holds an (Lq, Lk) array (a dense mask,
                   when given, is the only (Lq, Lk) array: one byte per entry, sliced per chunk)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

AttentionFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray | None], jnp.ndarray]


ATTENTIONS = ("xla", "dot_product", "blockwise")
_NEG = -1e30  # the score of a masked key (finite: a fully masked row averages, as XLA's does)
_NEG_PAD = -2e30  # the score of a padding key (below _NEG: never part of any average)


def xla_attention(q, k, v, mask=None):
    """Plain softmax(q k^T / sqrt(D)) v through XLA: float32 scores, probabilities cast to the
    values' dtype. The reference the others are tested against."""
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def dot_product_attention(q, k, v, mask=None):
    """jax.nn.dot_product_attention with cuDNN's flash kernel where it applies (a GPU, bf16 / fp16,
    head dim a multiple of 8 up to 128), else XLA's graph (identical to `xla_attention`)."""
    cudnn = (jax.default_backend() == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
             and q.shape[-1] % 8 == 0 and q.shape[-1] <= 128)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="cudnn" if cudnn else "xla")


def attention_by_name(name: str, chunk: int = 1024) -> AttentionFn:
    """The `AttentionFn` a config names (see the module docstring); `chunk`: blockwise chunk size."""
    if name == "xla":
        return xla_attention
    if name == "dot_product":
        return dot_product_attention
    if name == "blockwise":
        return functools.partial(blockwise_attention, chunk=chunk)
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {name!r}")


def blockwise_attention(q, k, v, mask=None, *, chunk: int = 1024):
    """Flash-style attention in pure JAX, equal to `xla_attention` (float32 accumulation).

    q (B, Lq, N, D), k / v (B, Lk, N, D), mask None or (B | 1, 1 | N, Lq, Lk) bool ->
    (B, Lq, N, D) in q's dtype. Sequences are cut into chunks of min(chunk, L) tokens (the last
    padded); memory is O((Lq + Lk) D + chunk^2) per batch row and head, in both passes."""
    if chunk < 1:
        raise ValueError(f"blockwise attention: chunk must be >= 1, got {chunk}")
    if mask is not None:
        mask = jnp.broadcast_to(mask, (mask.shape[0], mask.shape[1], q.shape[1], k.shape[1]))
    return _flash(q, k, v, mask, min(chunk, q.shape[1]), min(chunk, k.shape[1]))


def _chunked(x, c):
    """(B, L, N, D) -> (n, B, N, c, D), L zero-padded to n * c."""
    B, L, N, D = x.shape
    n = -(-L // c)
    x = jnp.pad(x, ((0, 0), (0, n * c - L), (0, 0), (0, 0)))
    return x.reshape(B, n, c, N, D).transpose(1, 0, 3, 2, 4)


def _unchunked(x, L):
    """(n, B, N, c, ...) -> (B, L, N, ...)."""
    n, B, N, c = x.shape[:4]
    x = jnp.moveaxis(x, 3, 1).reshape((n * c, B, N) + x.shape[4:])
    return jnp.moveaxis(x[:L], 0, 1)


def _scores(qi, kj, i, j, mask, cq, ck, Lk, scale):
    """Masked float32 scores (B, N, cq, ck) of query chunk i against key chunk j; `mask` is
    None or already padded to whole chunks (`_padded_mask`)."""
    s = jnp.einsum("bnqd,bnkd->bnqk", qi, kj, preferred_element_type=jnp.float32) * scale
    if mask is not None:
        Bm, Nm = mask.shape[:2]
        m = jax.lax.dynamic_slice(mask, (0, 0, i * cq, j * ck), (Bm, Nm, cq, ck))
        s = jnp.where(m, s, _NEG)
    if Lk % ck:
        s = jnp.where((j * ck + jnp.arange(ck)) < Lk, s, _NEG_PAD)
    return s


def _padded_mask(mask, cq, ck):
    if mask is None:
        return None
    Lq, Lk = mask.shape[2:]
    return jnp.pad(mask, ((0, 0), (0, 0), (0, -Lq % cq), (0, -Lk % ck)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _flash(q, k, v, mask, cq, ck):
    return _flash_fwd(q, k, v, mask, cq, ck)[0]


def _flash_fwd(q, k, v, mask, cq, ck):
    Lq, Lk, D = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / np.sqrt(D)
    qc, kc, vc = _chunked(q, cq), _chunked(k, ck), _chunked(v, ck)
    pmask = _padded_mask(mask, cq, ck)

    def one_query_chunk(args):
        i, qi = args

        def step(carry, xs):
            m, l, acc = carry
            j, kj, vj = xs
            s = _scores(qi, kj, i, j, pmask, cq, ck, Lk, scale)
            m_new = jnp.maximum(m, s.max(-1))
            p = jnp.exp(s - m_new[..., None])
            corr = jnp.exp(m - m_new)
            pv = jnp.einsum("bnqk,bnkd->bnqd", p.astype(vj.dtype), vj, preferred_element_type=jnp.float32)
            return (m_new, l * corr + p.sum(-1), acc * corr[..., None] + pv), None

        B, N = qi.shape[:2]
        init = (jnp.full((B, N, cq), -jnp.inf, jnp.float32), jnp.zeros((B, N, cq), jnp.float32),
                jnp.zeros((B, N, cq, D), jnp.float32))
        (m, l, acc), _ = jax.lax.scan(step, init, (jnp.arange(kc.shape[0]), kc, vc))
        return acc / l[..., None], m + jnp.log(l)

    o, lse = jax.lax.map(one_query_chunk, (jnp.arange(qc.shape[0]), qc))  # (nq, B, N, cq, D), (nq, B, N, cq)
    out = _unchunked(o, Lq).astype(q.dtype)
    return out, (q, k, v, mask, out, lse)


def _flash_bwd(cq, ck, res, g):
    q, k, v, mask, out, lse = res
    Lq, Lk, D = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / np.sqrt(D)
    qc, kc, vc = _chunked(q, cq), _chunked(k, ck), _chunked(v, ck)
    gc = _chunked(g, cq)
    pmask = _padded_mask(mask, cq, ck)
    delta = _chunked((g.astype(jnp.float32) * out.astype(jnp.float32)).sum(-1, keepdims=True), cq)[..., 0]

    def one_key_chunk(dq, xs):
        j, kj, vj = xs

        def step(carry, ys):
            dk, dv, dq = carry
            i, qi, gi, lse_i, delta_i = ys
            s = _scores(qi, kj, i, j, pmask, cq, ck, Lk, scale)
            p = jnp.exp(s - lse_i[..., None])  # (B, N, cq, ck)
            dv = dv + jnp.einsum("bnqk,bnqd->bnkd", p.astype(gi.dtype), gi, preferred_element_type=jnp.float32)
            dp = jnp.einsum("bnqd,bnkd->bnqk", gi, vj, preferred_element_type=jnp.float32)
            ds = (p * (dp - delta_i[..., None]) * scale).astype(qi.dtype)
            dk = dk + jnp.einsum("bnqk,bnqd->bnkd", ds, qi, preferred_element_type=jnp.float32)
            dqi = jnp.einsum("bnqk,bnkd->bnqd", ds, kj, preferred_element_type=jnp.float32)
            dq = dq.at[i].add(dqi)
            return (dk, dv, dq), None

        zeros = jnp.zeros(kj.shape, jnp.float32)
        (dk, dv, dq), _ = jax.lax.scan(step, (zeros, zeros, dq), (jnp.arange(qc.shape[0]), qc, gc, lse, delta))
        return dq, (dk, dv)

    dq0 = jnp.zeros(qc.shape, jnp.float32)
    dq, (dk, dv) = jax.lax.scan(one_key_chunk, dq0, (jnp.arange(kc.shape[0]), kc, vc))
    return (_unchunked(dq, Lq).astype(q.dtype), _unchunked(dk, Lk).astype(k.dtype),
            _unchunked(dv, Lk).astype(v.dtype), None)


_flash.defvjp(_flash_fwd, _flash_bwd)


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
