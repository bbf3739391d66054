"""The STAR generator: a Wan2.1 video DiT in Flax linen, with per-frame timesteps, block-causal
attention and an explicit, fixed-shape KV cache.

    model = WanDiT(dit_variant("tiny"))
    params = model.init(rng, x, t, ctx)["params"]
    y, _ = model.apply({"params": params}, x, t, ctx)                       # plain forward
    cache = init_cache(cfg, batch=B, num_tokens=6 * tokens_per_frame)
    _, cache = model.apply(p, ctx_latents, zeros, ctx, cache=cache, cache_mode="write")   # t = 0
    y, _ = model.apply(p, noisy, t, ctx, cache=cache, cache_mode="read", frame_offset=6)

Shapes: x (B, T, H, W, in_dim) channel-last latents; t (B,) or per-frame (B, T) in [0, 1000];
context (B, Lc, text_dim) with Lc <= text_len, zero-padded to text_len inside (as Wan does);
y (B, T, H, W, out_dim). Parameter names follow the original Wan checkpoints (`self_attn.q`,
`ffn_0`, `modulation`, `head.head`, ...), so conversion is a rename.

Numerics: parameters in `param_dtype`, matmuls in `dtype`; layer norms, adaLN modulation, RoPE
and the residual stream are float32, as in the reference implementation; the timestep sinusoid
matches Wan's float64 one to a float32 ulp.

Masks: self-attention masks are `AttentionMask`s (key lengths and per-token block ids), never
(Lq, Lk) arrays: block-causal attention is q_block / k_block = latent frame // frames_per_block; a
cache read attends to keys laid out as [the cache's valid tokens | the block's own tokens | the
rest], so the visible keys are a prefix of length `cache.length + L` (cuDNN's padding mask).

Memory: `cfg.attention` picks the attention implementation (`star_jax.models.attention`; all
three compute the same function) and `cfg.remat` wraps each block in `nn.remat` with that
`jax.checkpoint_policies` policy (outputs and gradients unchanged; the backward pass recomputes
the block instead of keeping its activations).
"""

from __future__ import annotations

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from star_jax import sharding as sh
from star_jax.errors import InputError
from star_jax.models.attention import (
    AttentionFn,
    AttentionMask,
    apply_rope,
    attention_by_name,
    rope_tables,
    token_positions,
)
from star_jax.models.variants import DiTConfig

CACHE_MODES = ("none", "write", "read")
REMAT_POLICIES = {
    "nothing_saveable": jax.checkpoint_policies.nothing_saveable,
    "dots_with_no_batch_dims_saveable": jax.checkpoint_policies.dots_with_no_batch_dims_saveable,
}


class KVCache(struct.PyTreeNode):
    """Keys / values of the context tokens, per layer, at a fixed capacity S.

    k, v: (layers, B, S, N, D) with RoPE already applied; `length`: () int32, tokens [0, length)
    are valid. Filled by a `cache_mode="write"` pass, read by `cache_mode="read"` passes."""

    k: jnp.ndarray
    v: jnp.ndarray
    length: jnp.ndarray


def init_cache(cfg: DiTConfig, batch: int, num_tokens: int, dtype=None) -> KVCache:
    """An empty cache with room for `num_tokens` context tokens (e.g. 6 latent frames x 1560)."""
    dtype = jnp.dtype(dtype or cfg.dtype)
    shape = (cfg.num_layers, batch, num_tokens, cfg.num_heads, cfg.head_dim)
    return KVCache(jnp.zeros(shape, dtype), jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def _dense(features, names, cfg, name):
    return nn.Dense(
        features,
        dtype=jnp.dtype(cfg.dtype),
        param_dtype=jnp.dtype(cfg.param_dtype),
        kernel_init=nn.with_logical_partitioning(nn.initializers.xavier_uniform(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-1:]),
        name=name,
    )


class RMSNorm(nn.Module):
    """x * rsqrt(mean(x^2) + eps) * weight over the last axis, in float32."""

    eps: float
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        w = self.param("weight", nn.with_logical_partitioning(nn.initializers.ones_init(), (sh.HEADS,)),
                       (x.shape[-1],), jnp.dtype(self.param_dtype))
        xf = x.astype(jnp.float32)
        y = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return (y * w.astype(jnp.float32)).astype(x.dtype)


def _modulation_table(module: nn.Module, name: str, slots: int, cfg) -> jnp.ndarray:
    """A learned adaLN table (1, slots, dim), initialised N(0, 1 / dim) as in Wan."""
    init = lambda k, s, d: jax.random.normal(k, s, d) / math.sqrt(cfg.dim)
    return module.param(name, nn.with_logical_partitioning(init, (None, sh.MOD, sh.EMBED)),
                        (1, slots, cfg.dim), jnp.dtype(cfg.param_dtype))


def _layer_norm(cfg, affine: bool, name: str):
    return nn.LayerNorm(
        epsilon=cfg.eps, use_bias=affine, use_scale=affine, dtype=jnp.float32,
        param_dtype=jnp.dtype(cfg.param_dtype), use_fast_variance=False,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (sh.NORM,)), bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (sh.NORM,)),
        name=name,
    )


class Attention(nn.Module):
    """Wan attention: q/k/v/o projections with RMS qk-norm across heads; RoPE for self-attention."""

    cfg: DiTConfig

    def setup(self):
        cfg = self.cfg
        self.q = _dense(cfg.dim, (sh.EMBED, sh.HEADS), cfg, None)
        self.k = _dense(cfg.dim, (sh.EMBED, sh.HEADS), cfg, None)
        self.v = _dense(cfg.dim, (sh.EMBED, sh.HEADS), cfg, None)
        self.o = _dense(cfg.dim, (sh.HEADS, sh.EMBED), cfg, None)
        if cfg.qk_norm:
            self.norm_q = RMSNorm(cfg.eps, cfg.param_dtype)
            self.norm_k = RMSNorm(cfg.eps, cfg.param_dtype)

    def project(self, name, x):
        """x (B, L, dim) -> (B, L, N, D) for name in q / k / v (q and k RMS-normed)."""
        cfg = self.cfg
        y = getattr(self, name)(x)
        if name in ("q", "k") and cfg.qk_norm:
            y = getattr(self, f"norm_{name}")(y)
        y = y.reshape(y.shape[:-1] + (cfg.num_heads, cfg.head_dim))
        return nn.with_logical_constraint(y, (sh.BATCH, sh.LENGTH, sh.HEADS, None))

    def output(self, y):
        return self.o(y.reshape(y.shape[:-2] + (self.cfg.dim,)))


def cache_read_keys(cached: jnp.ndarray, own: jnp.ndarray, length) -> jnp.ndarray:
    """The keys (or values) of a cache read: cached (B, S, N, D), own (B, L, N, D), `length` ()
    valid cached tokens -> (B, S + L, N, D) = [cached[:length] | own | cached[length:]], so the
    visible keys are the prefix [0, length + L)."""
    buf = jnp.concatenate([cached.astype(own.dtype), jnp.zeros_like(own)], axis=1)
    return jax.lax.dynamic_update_slice_in_dim(buf, own, length, axis=1)


class WanBlock(nn.Module):
    """One DiT block. Scanned over layers; `cache_mode` is static. `mask`: the self-attention
    `AttentionMask` (None: full attention) over the own keys, or in read mode over the keys of
    `cache_read_keys` (the cache's first `cache_length` tokens, then the own ones)."""

    cfg: DiTConfig
    attention_fn: AttentionFn
    cache_mode: str = "none"

    @nn.compact
    def __call__(self, x, cache_kv, e6, context, cos, sin, mask, cache_length):
        cfg = self.cfg
        cdt = jnp.dtype(cfg.dtype)
        mod = _modulation_table(self, "modulation", 6, cfg)
        # adaLN per latent frame: e6 is (B, Tp, 6, dim); tokens are viewed as (B, Tp, HW, dim)
        B, L, D = x.shape
        Tp = e6.shape[1]
        m = mod.astype(jnp.float32)[None] + e6
        shift, scale, gate, c_shift, c_scale, c_gate = (m[:, :, i, None] for i in range(6))  # (B, Tp, 1, dim)

        def gated(y, g):
            return (y.astype(jnp.float32).reshape(B, Tp, L // Tp, D) * g).reshape(B, L, D)

        # self-attention (RoPE, block-causal / cache)
        h = frame_modulate(_layer_norm(cfg, False, "norm1")(x), shift, scale).astype(cdt)
        sa = Attention(cfg, name="self_attn")
        q, k, v = (sa.project(n, h) for n in ("q", "k", "v"))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.cache_mode == "read":
            ck, cv = cache_kv
            keys, vals = cache_read_keys(ck, k, cache_length), cache_read_keys(cv, v, cache_length)
        else:
            keys, vals = k, v
        y = self.attention_fn(q, keys, vals, mask)
        x = x + gated(sa.output(y), gate)

        # cross-attention to text
        h = _layer_norm(cfg, cfg.cross_attn_norm, "norm3")(x).astype(cdt)
        ca = Attention(cfg, name="cross_attn")
        y = self.attention_fn(ca.project("q", h), ca.project("k", context), ca.project("v", context), None)
        x = x + ca.output(y).astype(jnp.float32)

        # feed-forward
        h = frame_modulate(_layer_norm(cfg, False, "norm2")(x), c_shift, c_scale).astype(cdt)
        h = _dense(cfg.ffn_dim, (sh.EMBED, sh.MLP), cfg, "ffn_0")(h)
        h = nn.gelu(h, approximate=True)
        h = _dense(cfg.dim, (sh.MLP, sh.EMBED), cfg, "ffn_2")(h)
        x = x + gated(h, c_gate)
        x = nn.with_logical_constraint(x, (sh.BATCH, sh.LENGTH, sh.EMBED))
        new_kv = (k, v) if self.cache_mode == "write" else None
        return x, new_kv


def pad_text(context: jnp.ndarray, cfg: DiTConfig) -> jnp.ndarray:
    """(B, Lc, text_dim) text, Lc <= text_len -> (B, text_len, text_dim), zero rows appended.

    As in the original Wan model (and diffusers' Wan pipeline): cross-attention always sees
    `text_len` rows, and the padded rows matter (after `text_embedding` they are no longer zero)."""
    if context.ndim != 3 or context.shape[-1] != cfg.text_dim or context.shape[1] > cfg.text_len:
        raise InputError(f"text context must be (B, Lc <= text_len={cfg.text_len}, text_dim={cfg.text_dim}), "
                         f"got shape {tuple(context.shape)}")
    return jnp.pad(context, ((0, 0), (0, cfg.text_len - context.shape[1]), (0, 0)))


def frame_modulate(h, shift, scale):
    """adaLN h * (1 + scale) + shift with per-frame (B, Tp, 1, dim) tables over the tokens
    (B, L, dim) of those frames (token order: frame-major)."""
    B, L, D = h.shape
    Tp = shift.shape[1]
    return (h.reshape(B, Tp, L // Tp, D) * (1 + scale) + shift).reshape(B, L, D)


def _round_bits(x: np.ndarray, bits: int) -> np.ndarray:
    """float64 x rounded to `bits` significant bits (so that x * n is exact in float32 for n < 2^(24 - bits))."""
    m, e = np.frexp(x)
    return np.ldexp(np.round(m * 2.0**bits), e - bits)


def _two_sum(a, b):
    """(s, e) with s = fl(a + b) and s + e = a + b exactly (Knuth; additions only, so FMA-safe)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


_TWO_PI = 2.0 * math.pi
_P1 = float(_round_bits(np.float64(_TWO_PI), 14))  # 2 pi = P1 + P2 + P3; k * P1 exact for k < 2^10
_P2 = float(np.float32(_TWO_PI - _P1))
_P3 = float(np.float32(_TWO_PI - _P1 - _P2))


def sinusoidal_embedding(t: jnp.ndarray, dim: int) -> jnp.ndarray:
    """Wan's timestep embedding [cos(t w), sin(t w)], w_i = 10000^(-i / (dim / 2)), (..., dim) float32.

    Wan computes it in float64 and rounds to float32; a float32 product t * w alone is off by up
    to 6e-5 at t = 1000. Here, in float32 only (so it also runs under jit on traced t): with
    t = n + f (n = floor(t)) and w = w1 + w2 + w3 (w1 on 12 significant bits), n * w1 is exact for
    |t| < 4096 and is reduced mod 2 pi exactly (Cody-Waite, 2 pi in three parts); the small terms
    f w, n w2, n w3 and the reduction remainders are added as a double-float (hi + lo), and
    sin / cos of (hi + lo) use the first-order correction in lo. The angle is then known to about
    1e-8 rad, and the result differs from the float64 one rounded to float32 by at most one
    float32 ulp at 1 (2^-23; measured on 3e5 timesteps, tested in tests/models/test_dit_parity.py).
    """
    half = dim // 2
    w = 10000.0 ** (-np.arange(half, dtype=np.float64) / half)
    w1 = _round_bits(w, 12)
    w2 = (w - w1).astype(np.float32)
    w3 = (w - w1 - w2.astype(np.float64)).astype(np.float32)
    t = jnp.asarray(t, jnp.float32)[..., None]
    n = jnp.floor(t)
    f = t - n  # exact
    a = n * jnp.asarray(w1, jnp.float32)  # exact
    k = jnp.round(a * np.float32(1.0 / _TWO_PI))
    r = a - k * np.float32(_P1)  # exact: k * P1 has <= 24 bits, and Sterbenz
    hi, lo = _two_sum(r, f * jnp.asarray(w, jnp.float32))
    lo = lo + ((n * w2 - k * np.float32(_P2)) + (n * w3 - k * np.float32(_P3)))
    hi, lo = _two_sum(hi, lo)
    s, c = jnp.sin(hi), jnp.cos(hi)
    return jnp.concatenate([c - s * lo, s + c * lo], axis=-1)


class WanDiT(nn.Module):
    """Wan2.1 DiT for STAR. See the module docstring for the call forms."""

    cfg: DiTConfig
    attention_fn: AttentionFn | None = None  # None: the one cfg.attention names
    block_causal: bool = False

    @nn.compact
    def __call__(self, x, t, context, *, cache: KVCache | None = None, cache_mode: str = "none",
                 frame_offset=0, context_valid_tokens=None):
        """Returns (y (B, T, H, W, out_dim), cache).

        cache_mode "none": plain forward, cache returned unchanged. "write": x is context (run it
        at t = 0); its keys/values replace the cache (the first `context_valid_tokens` tokens are
        valid, default all; the rest are also hidden from the context's own attention).
        "read": x attends to the valid cached tokens and to itself. `frame_offset` shifts the
        RoPE time positions (and block ids) of x, e.g. 6 to place a block after a 6-frame context.
        """
        cfg = self.cfg
        if cache_mode not in CACHE_MODES:
            raise ValueError(f"cache_mode must be one of {CACHE_MODES}, got {cache_mode!r}")
        if cache_mode != "none" and cache is None:
            raise ValueError(f"cache_mode={cache_mode!r} needs a cache (see init_cache)")
        B, T, H, W, C = x.shape
        pt, ph, pw = cfg.patch_size
        if C != cfg.in_dim or T % pt or H % ph or W % pw:
            raise ValueError(f"x must be (B, T, H, W, {cfg.in_dim}) with T, H, W divisible by {cfg.patch_size}; "
                             f"got {x.shape}")
        Tp, Hp, Wp = T // pt, H // ph, W // pw
        L = Tp * Hp * Wp
        cdt = jnp.dtype(cfg.dtype)

        # patchify: (B, Tp, pt, Hp, ph, Wp, pw, C) -> (B, L, pt*ph*pw*C)
        p = x.reshape(B, Tp, pt, Hp, ph, Wp, pw, C).transpose(0, 1, 3, 5, 2, 4, 6, 7).reshape(B, L, -1)
        h = _dense(cfg.dim, (sh.PATCH, sh.EMBED), cfg, "patch_embedding")(p.astype(cdt)).astype(jnp.float32)
        h = nn.with_logical_constraint(h, (sh.BATCH, sh.LENGTH, sh.EMBED))

        # timesteps: (B,) shared, or (B, T) one per latent frame
        t = jnp.asarray(t, jnp.float32)
        t_frames = jnp.broadcast_to(t[:, None], (B, T)) if t.ndim == 1 else t
        if t_frames.shape != (B, T):
            raise ValueError(f"t must be (B,) or (B, T) = {(B, T)}, got {t.shape}")
        # time embedding per latent frame (B, Tp, ...), broadcast over that frame's tokens in the
        # blocks: the same values as Wan's per-token embedding, without a (B, L, 6, dim) tensor
        t_lat = t_frames[:, ::pt]
        e = _dense(cfg.dim, (None, sh.EMBED), cfg, "time_embedding_0")(sinusoidal_embedding(t_lat, cfg.freq_dim))
        e = _dense(cfg.dim, (sh.EMBED, sh.MOD), cfg, "time_embedding_2")(nn.silu(e)).astype(jnp.float32)
        e6 = _dense(6 * cfg.dim, (sh.EMBED, sh.MOD), cfg, "time_projection")(nn.silu(e).astype(cdt))
        e6 = e6.astype(jnp.float32).reshape(B, Tp, 6, cfg.dim)

        ctx = _dense(cfg.dim, (sh.TEXT, sh.EMBED), cfg, "text_embedding_0")(pad_text(context, cfg).astype(cdt))
        ctx = _dense(cfg.dim, (sh.MLP, sh.EMBED), cfg, "text_embedding_2")(nn.gelu(ctx, approximate=True))

        pos = token_positions(Tp, Hp, Wp, frame_offset)
        cos, sin = rope_tables(pos, cfg.head_dim, cfg.rope_theta)
        # self-attention mask (None: every key visible): per-token block ids, key lengths
        blocks = pos[:, 0] // cfg.frames_per_block if self.block_causal else None
        mask = AttentionMask(q_block=blocks, k_block=blocks) if self.block_causal else None
        if cache_mode == "write" and L > cache.k.shape[2]:
            raise ValueError(f"context has {L} tokens but the cache holds {cache.k.shape[2]}")
        if cache_mode == "write" and context_valid_tokens is not None:
            kv_length = jnp.full((B,), context_valid_tokens, jnp.int32)
            mask = AttentionMask(kv_length=kv_length) if mask is None else mask.replace(kv_length=kv_length)
        xs, cache_length = None, None
        if cache_mode == "read":  # keys [cache[:length] | own | cache[length:]] (`cache_read_keys`)
            S = cache.k.shape[2]
            cache_length = cache.length
            kv_length = jnp.full((B,), cache_length + L, jnp.int32)
            k_block = None
            if self.block_causal:  # the cached tokens come before every block
                k_block = jnp.full((S + L,), np.iinfo(np.int32).min, jnp.int32)
                k_block = jax.lax.dynamic_update_slice_in_dim(k_block, blocks.astype(jnp.int32), cache_length, 0)
            mask = AttentionMask(kv_length=kv_length, q_block=blocks, k_block=k_block)
            xs = (cache.k, cache.v)

        block = WanBlock
        if cfg.remat != "none":
            block = nn.remat(WanBlock, policy=REMAT_POLICIES[cfg.remat], prevent_cse=False)
        Blocks = nn.scan(
            block,
            variable_axes={"params": 0},
            split_rngs={"params": True},
            in_axes=(0, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast, nn.broadcast),
            length=cfg.num_layers,
            metadata_params={nn.PARTITION_NAME: sh.LAYERS},
        )
        attention_fn = self.attention_fn or attention_by_name(cfg.attention, cfg.attention_chunk)
        h, new_kv = Blocks(cfg, attention_fn, cache_mode, name="blocks")(h, xs, e6, ctx, cos, sin, mask, cache_length)

        # head with its own modulation on the (un-projected) time embedding
        hm = _modulation_table(self, "head_modulation", 2, cfg)
        m = hm.astype(jnp.float32)[None] + e[:, :, None]  # (B, Tp, 2, dim)
        h = frame_modulate(_layer_norm(cfg, False, "head_norm")(h), m[:, :, 0, None], m[:, :, 1, None])
        out = _dense(cfg.out_dim * pt * ph * pw, (sh.EMBED, None), cfg, "head")(h.astype(cdt))
        y = out.reshape(B, Tp, Hp, Wp, pt, ph, pw, cfg.out_dim).transpose(0, 1, 4, 2, 5, 3, 6, 7)
        y = y.reshape(B, T, H, W, cfg.out_dim)

        if cache_mode == "write":
            k, v = new_kv  # (layers, B, L, N, D)
            zero = (0, 0, 0, 0, 0)
            cache = KVCache(
                jax.lax.dynamic_update_slice(jnp.zeros_like(cache.k), k.astype(cache.k.dtype), zero),
                jax.lax.dynamic_update_slice(jnp.zeros_like(cache.v), v.astype(cache.v.dtype), zero),
                jnp.asarray(L if context_valid_tokens is None else context_valid_tokens, jnp.int32),
            )
        return y, cache


def count_params(params) -> int:
    return sum(int(math.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))


@functools.lru_cache(maxsize=None)
def abstract_params(cfg: DiTConfig, tokens_hw: tuple[int, int] = (4, 4), frames: int = 1):
    """Params as ShapeDtypeStructs (boxed with logical names), via `jax.eval_shape`: no memory."""
    model = WanDiT(cfg)
    x = jax.ShapeDtypeStruct((1, frames, 2 * tokens_hw[0], 2 * tokens_hw[1], cfg.in_dim), jnp.float32)
    t = jax.ShapeDtypeStruct((1,), jnp.float32)
    c = jax.ShapeDtypeStruct((1, 4, cfg.text_dim), jnp.float32)
    return jax.eval_shape(model.init, jax.random.key(0), x, t, c)["params"]
