"""Attention pieces of the STAR DiT: the attention functions, 3-D RoPE, masks.

Layouts: q (B, Lq, N, D), k / v (B, Lk, N, D). Token order is (frame, row, column), as Wan
flattens (T, H, W). A mask is None (every key visible), an `AttentionMask` (key lengths and
per-token block ids: O(B + Lq + Lk) numbers, what the DiT passes), or a dense (B | 1, 1 | N, Lq,
Lk) bool array (True = attend; kept for callers that have one).

Three attention functions compute the same softmax(q k^T / sqrt(D)) v; `DiTConfig.attention`
names one (`attention_by_name`):
    "xla"          the plain XLA graph: (B, N, Lq, Lk) float32 scores in memory (the reference)
    "dot_product"  on a GPU with bf16 / fp16 inputs: cuDNN's fused flash kernel through
                   jax.nn.dot_product_attention (a key-length mask goes in as its
                   key_value_seq_lengths), or "blockwise" where cuDNN has no such mask type
                   (block ids: block-causal); elsewhere the same XLA graph as "xla"
    "blockwise"    flash-style in pure JAX (any backend): queries and keys in chunks of
                   `chunk` tokens, an online softmax over the key chunks, and a custom VJP that
                   recomputes each chunk's probabilities from the saved log-sum-exp, so neither
                   the forward nor the backward pass holds an (Lq, Lk) array. An `AttentionMask`
                   is turned into each chunk's mask on the fly, and (query, key) chunk pairs it
                   hides entirely are skipped (block-causal: about half the work); a dense mask,
                   when given, is sliced per chunk and is then the only (Lq, Lk) array
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct


class AttentionMask(struct.PyTreeNode):
    """Which keys each query sees, without an (Lq, Lk) array.

    kv_length: (B,) int32 or None: keys [0, kv_length[b]) are valid for every query of batch row
        b, the rest are padding (cuDNN's key_value_seq_lengths); None: every key.
    q_block (Lq,) / k_block (Lk,) int32, or both None: key k is visible to query q iff
        k_block[k] <= q_block[q] (block-causal: a query sees its own block and earlier ones).
    A key is visible iff every condition given holds."""

    kv_length: jnp.ndarray | None = None
    q_block: jnp.ndarray | None = None
    k_block: jnp.ndarray | None = None

    def chunk(self, q0, cq: int, k0, ck: int) -> jnp.ndarray:
        """(B | 1, 1, cq, ck) bool: queries [q0, q0 + cq) x keys [k0, k0 + ck) (q0, k0 may be traced)."""
        m = jnp.ones((1, 1, cq, ck), bool)
        if self.kv_length is not None:
            m = m & ((k0 + jnp.arange(ck)) < self.kv_length[:, None])[:, None, None, :]
        if self.q_block is not None:
            qb = jax.lax.dynamic_slice_in_dim(self.q_block, q0, cq)
            kb = jax.lax.dynamic_slice_in_dim(self.k_block, k0, ck)
            m = m & (kb[None, :] <= qb[:, None])[None, None]
        return m

    def dense(self, Lq: int, Lk: int) -> jnp.ndarray:
        """The same mask as a (B | 1, 1, Lq, Lk) bool array (the "xla" path: fused into its select)."""
        return self.chunk(0, Lq, 0, Lk)

    def any_visible(self, q0, cq: int, k0, ck: int) -> jnp.ndarray:
        """() bool, False only if no query of [q0, q0 + cq) sees any key of [k0, k0 + ck) in any
        batch row (such a chunk pair contributes exactly nothing and can be skipped)."""
        ok = jnp.asarray(True)
        if self.kv_length is not None:
            ok = ok & (k0 < jnp.max(self.kv_length))
        if self.q_block is not None:
            qb = jax.lax.dynamic_slice_in_dim(self.q_block, q0, cq)
            kb = jax.lax.dynamic_slice_in_dim(self.k_block, k0, ck)
            ok = ok & (jnp.min(kb) <= jnp.max(qb))
        return ok

    def padded(self, Lq: int, Lk: int) -> "AttentionMask":
        """Block ids padded to Lq / Lk tokens: padding queries see nothing, padding keys are seen
        by no query (and neither changes `any_visible`)."""
        if self.q_block is None:
            return self
        lo, hi = np.iinfo(np.int32).min, np.iinfo(np.int32).max
        return self.replace(q_block=jnp.pad(self.q_block, (0, Lq - self.q_block.shape[0]), constant_values=lo),
                            k_block=jnp.pad(self.k_block, (0, Lk - self.k_block.shape[0]), constant_values=hi))


def check_mask(mask: AttentionMask, B: int, Lq: int, Lk: int) -> None:
    """Raises ValueError unless `mask`'s arrays have the shapes and integer dtypes q / k need."""
    def bad(name, want):
        return ValueError(f"attention mask: {name} must be {want} int32, got "
                          f"{getattr(mask, name).shape} {getattr(mask, name).dtype}")
    if mask.kv_length is not None and (mask.kv_length.shape != (B,) or mask.kv_length.dtype != jnp.int32):
        raise bad("kv_length", f"({B},)")
    if (mask.q_block is None) != (mask.k_block is None):
        raise ValueError("attention mask: q_block and k_block go together (both or neither)")
    if mask.q_block is not None:
        if mask.q_block.shape != (Lq,) or not jnp.issubdtype(mask.q_block.dtype, jnp.integer):
            raise bad("q_block", f"({Lq},)")
        if mask.k_block.shape != (Lk,) or not jnp.issubdtype(mask.k_block.dtype, jnp.integer):
            raise bad("k_block", f"({Lk},)")


Mask = jnp.ndarray | AttentionMask | None
AttentionFn = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, Mask], jnp.ndarray]


ATTENTIONS = ("xla", "dot_product", "blockwise")
_NEG = -1e30  # the score of a masked key (finite: a fully masked row averages, as XLA's does)
_NEG_PAD = -2e30  # the score of a padding key (below _NEG: never part of any average)


def xla_attention(q, k, v, mask=None):
    """Plain softmax(q k^T / sqrt(D)) v through XLA: float32 scores, probabilities cast to the
    values' dtype. The reference the others are tested against. An `AttentionMask` becomes its
    dense form here (iota comparisons that XLA fuses into the select on the scores)."""
    if isinstance(mask, AttentionMask):
        check_mask(mask, q.shape[0], q.shape[1], k.shape[1])
        mask = mask.dense(q.shape[1], k.shape[1])
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation="xla")


def dot_product_route(q: jnp.ndarray, mask: Mask, backend: str) -> str:
    """What `dot_product_attention` runs on `backend` ("gpu", "cpu", ...): "cudnn" (a GPU, bf16 /
    fp16, head dim a multiple of 8 up to 128, and a mask cuDNN takes: none, dense, or key lengths
    only), "blockwise" (the same GPU case with block ids, which cuDNN cannot express), else "xla"."""
    fused = (backend == "gpu" and q.dtype in (jnp.bfloat16, jnp.float16)
             and q.shape[-1] % 8 == 0 and q.shape[-1] <= 128)
    if not fused:
        return "xla"
    if isinstance(mask, AttentionMask) and mask.q_block is not None:
        return "blockwise"
    return "cudnn"


def dot_product_attention(q, k, v, mask=None, *, chunk: int = 1024):
    """jax.nn.dot_product_attention with cuDNN's flash kernel where it applies (`dot_product_route`),
    the blockwise kernel for block ids on such a GPU, else XLA's graph (identical to `xla_attention`).
    An `AttentionMask` of key lengths only is passed as key_value_seq_lengths (cuDNN's padding mask)."""
    route = dot_product_route(q, mask, jax.default_backend())
    if route == "blockwise":
        return blockwise_attention(q, k, v, mask, chunk=chunk)
    if isinstance(mask, AttentionMask):
        check_mask(mask, q.shape[0], q.shape[1], k.shape[1])
        if mask.q_block is not None:  # "xla": no kernel takes block ids, the dense form is fused
            return xla_attention(q, k, v, mask)
        return jax.nn.dot_product_attention(q, k, v, key_value_seq_lengths=mask.kv_length, implementation=route)
    return jax.nn.dot_product_attention(q, k, v, mask=mask, implementation=route)


def attention_by_name(name: str, chunk: int = 1024) -> AttentionFn:
    """The `AttentionFn` a config names (see the module docstring); `chunk`: blockwise chunk size."""
    if name == "xla":
        return xla_attention
    if name == "dot_product":
        return functools.partial(dot_product_attention, chunk=chunk)
    if name == "blockwise":
        return functools.partial(blockwise_attention, chunk=chunk)
    raise ValueError(f"attention must be one of {ATTENTIONS}, got {name!r}")


def blockwise_attention(q, k, v, mask=None, *, chunk: int = 1024):
    """Flash-style attention in pure JAX, equal to `xla_attention` (float32 accumulation).

    q (B, Lq, N, D), k / v (B, Lk, N, D), mask None, an `AttentionMask` or (B | 1, 1 | N, Lq, Lk)
    bool -> (B, Lq, N, D) in q's dtype. Sequences are cut into chunks of min(chunk, L) tokens (the
    last padded); memory is O((Lq + Lk) D + chunk^2) per batch row and head, in both passes. With
    an `AttentionMask`, chunk pairs it hides entirely are skipped (exactly: they add zeros); every
    query is assumed to see at least one key (a query that sees none gets an arbitrary value)."""
    if chunk < 1:
        raise ValueError(f"blockwise attention: chunk must be >= 1, got {chunk}")
    if isinstance(mask, AttentionMask):
        check_mask(mask, q.shape[0], q.shape[1], k.shape[1])
    elif mask is not None:
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
    if isinstance(mask, AttentionMask):
        s = jnp.where(mask.chunk(i * cq, cq, j * ck, ck), s, _NEG)
    elif mask is not None:
        Bm, Nm = mask.shape[:2]
        m = jax.lax.dynamic_slice(mask, (0, 0, i * cq, j * ck), (Bm, Nm, cq, ck))
        s = jnp.where(m, s, _NEG)
    if Lk % ck:
        s = jnp.where((j * ck + jnp.arange(ck)) < Lk, s, _NEG_PAD)
    return s


def _padded_mask(mask, Lq, Lk, cq, ck):
    if mask is None:
        return None
    if isinstance(mask, AttentionMask):
        return mask.padded(Lq + -Lq % cq, Lk + -Lk % ck)
    return jnp.pad(mask, ((0, 0), (0, 0), (0, -Lq % cq), (0, -Lk % ck)))


def _skippable(update, mask, i, j, cq, ck):
    """`update(carry)` for chunk pair (i, j), or the carry unchanged where an `AttentionMask` hides
    the whole pair (a hidden pair adds exact zeros, so skipping changes no bit)."""
    if not isinstance(mask, AttentionMask):
        return update
    return lambda carry: jax.lax.cond(mask.any_visible(i * cq, cq, j * ck, ck), update, lambda c: c, carry)


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5))
def _flash(q, k, v, mask, cq, ck):
    return _flash_fwd(q, k, v, mask, cq, ck)[0]


def _flash_fwd(q, k, v, mask, cq, ck):
    Lq, Lk, D = q.shape[1], k.shape[1], q.shape[-1]
    scale = 1.0 / np.sqrt(D)
    qc, kc, vc = _chunked(q, cq), _chunked(k, ck), _chunked(v, ck)
    pmask = _padded_mask(mask, Lq, Lk, cq, ck)

    def one_query_chunk(args):
        i, qi = args

        def step(carry, xs):
            j, kj, vj = xs

            def update(carry):
                m, l, acc = carry
                s = _scores(qi, kj, i, j, pmask, cq, ck, Lk, scale)
                m_new = jnp.maximum(m, s.max(-1))
                p = jnp.exp(s - m_new[..., None])
                corr = jnp.exp(m - m_new)
                pv = jnp.einsum("bnqk,bnkd->bnqd", p.astype(vj.dtype), vj, preferred_element_type=jnp.float32)
                return m_new, l * corr + p.sum(-1), acc * corr[..., None] + pv

            return _skippable(update, pmask, i, j, cq, ck)(carry), None

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
    pmask = _padded_mask(mask, Lq, Lk, cq, ck)
    delta = _chunked((g.astype(jnp.float32) * out.astype(jnp.float32)).sum(-1, keepdims=True), cq)[..., 0]

    def one_key_chunk(dq, xs):
        j, kj, vj = xs

        def step(carry, ys):
            i, qi, gi, lse_i, delta_i = ys

            def update(carry):
                dk, dv, dq = carry
                s = _scores(qi, kj, i, j, pmask, cq, ck, Lk, scale)
                p = jnp.exp(s - lse_i[..., None])  # (B, N, cq, ck)
                dv = dv + jnp.einsum("bnqk,bnqd->bnkd", p.astype(gi.dtype), gi, preferred_element_type=jnp.float32)
                dp = jnp.einsum("bnqd,bnkd->bnqk", gi, vj, preferred_element_type=jnp.float32)
                ds = (p * (dp - delta_i[..., None]) * scale).astype(qi.dtype)
                dk = dk + jnp.einsum("bnqk,bnqd->bnkd", ds, qi, preferred_element_type=jnp.float32)
                dqi = jnp.einsum("bnqk,bnkd->bnqd", ds, kj, preferred_element_type=jnp.float32)
                return dk, dv, dq.at[i].add(dqi)

            return _skippable(update, pmask, i, j, cq, ck)(carry), None

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
    latent frames); within a block attention is bidirectional. The dense twin of
    AttentionMask(q_block=q_frames // frames_per_block, k_block=k_frames // frames_per_block)."""
    qb = q_frames // frames_per_block
    kb = k_frames // frames_per_block
    return (kb[None, :] <= qb[:, None])[None, None]
