"""The umT5 text encoder in Flax linen: the encoder half of umt5-xxl, as Wan2.1 (and so
InSpatio-World) uses it to turn a caption into the DiT's (L, 4096) text context.

    cfg = umt5_variant("umt5-xxl")
    params = load_umt5_checkpoint("models_t5_umt5-xxl-enc-bf16.pth", cfg)   # star_jax.checkpoint.umt5
    h = UMT5Encoder(cfg).apply({"params": params}, ids, mask)                # (B, L, dim)

Shapes: ids (B, L) int32 token ids; mask (B, L) bool, True for real tokens; output (B, L, dim)
float32 (rows of padded tokens are computed but meaningless: they attend to the real tokens only).

The T5 v1.1 encoder block, pre-norm: x += attn(rms(x)); x += ffn(rms(x)), then a final RMS norm.
No biases; RMS norms without mean or shift; attention logits are not scaled by 1/sqrt(D) and get a
learned relative-position bias. umT5 differs from T5 there: *every* layer has its own bias table
(num_buckets, num_heads) (T5 shares layer 0's). The FFN is gated: fc2(fc1(x) * gelu_tanh(gate(x))).
Parameter names follow Wan's `wan/modules/t5.py` (`blocks.N.attn.q`, `ffn.gate.0`, `ffn.fc1`,
`pos_embedding.embedding`, ...); layers are stacked on a leading axis (`nn.scan`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from star_jax import sharding as sh
from star_jax.models.dit import RMSNorm


@dataclasses.dataclass(frozen=True)
class UMT5Config:
    """umT5 encoder sizes (names follow Wan's `umt5_xxl`; HF: d_model, num_heads * d_kv, d_ff)."""

    vocab_size: int = 256384
    dim: int = 4096
    dim_attn: int = 4096
    ffn_dim: int = 10240
    num_heads: int = 64
    num_layers: int = 24
    num_buckets: int = 32
    max_distance: int = 128
    eps: float = 1e-6
    dtype: str = "float32"
    param_dtype: str = "float32"

    def __post_init__(self):
        if self.dim_attn % self.num_heads:
            raise ValueError(f"dim_attn {self.dim_attn} not divisible by num_heads {self.num_heads}")


UMT5_VARIANTS: dict[str, dict] = {
    "umt5-xxl": dict(),  # Wan2.1's text encoder (5.7B parameters, text_dim 4096)
    "tiny": dict(vocab_size=128, dim=32, dim_attn=32, ffn_dim=64, num_heads=4, num_layers=2, num_buckets=8,
                 max_distance=16),  # width = the tiny DiT's text_dim
}


def umt5_variant(name: str, **overrides) -> UMT5Config:
    if name not in UMT5_VARIANTS:
        raise ValueError(f"unknown umT5 variant {name!r}; known: {sorted(UMT5_VARIANTS)}")
    return UMT5Config(**{**UMT5_VARIANTS[name], **overrides})


def relative_position_buckets(length: int, num_buckets: int, max_distance: int) -> np.ndarray:
    """(L, L) int32 bucket of (key - query) for bidirectional attention, as T5 computes it: half the
    buckets per sign; within a half, |d| < n/2 exact, larger |d| log-spaced up to max_distance.
    The log step is done in float32 with the same operations as the torch references, so the
    buckets agree with them exactly (also where the exact value is an integer, e.g. |d| = 16)."""
    rel = np.arange(length)[None, :] - np.arange(length)[:, None]
    half = num_buckets // 2
    exact = half // 2
    d = np.abs(rel)
    with np.errstate(divide="ignore"):
        ratio = np.log(d.astype(np.float32) / np.float32(exact)) / np.float32(math.log(max_distance / exact))
    large = exact + np.where(d < exact, 0, ratio * np.float32(half - exact)).astype(np.int64)
    buckets = (rel > 0) * half + np.where(d < exact, d, np.minimum(large, half - 1))
    return buckets.astype(np.int32)


def _dense(features: int, cfg: UMT5Config, name: str):
    return nn.Dense(features, use_bias=False, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
                    kernel_init=nn.initializers.normal(features ** -0.5), name=name)


class _Attention(nn.Module):
    cfg: UMT5Config

    @nn.compact
    def __call__(self, x, bias, mask):
        cfg = self.cfg
        B, L, _ = x.shape
        n, d = cfg.num_heads, cfg.dim_attn // cfg.num_heads
        q, k, v = (_dense(cfg.dim_attn, cfg, name)(x).reshape(B, L, n, d) for name in ("q", "k", "v"))
        y = jax.nn.dot_product_attention(q, k, v, bias=bias.astype(q.dtype), mask=mask, scale=1.0,
                                         implementation="xla")
        return _dense(cfg.dim, cfg, "o")(y.reshape(B, L, cfg.dim_attn))


class _FeedForward(nn.Module):
    cfg: UMT5Config

    @nn.compact
    def __call__(self, x):
        cfg = self.cfg
        gate = nn.gelu(_dense(cfg.ffn_dim, cfg, "gate")(x), approximate=True)
        return _dense(cfg.dim, cfg, "fc2")(_dense(cfg.ffn_dim, cfg, "fc1")(x) * gate)


class UMT5Block(nn.Module):
    """One encoder layer, with its own relative-position table; scanned over layers."""

    cfg: UMT5Config

    @nn.compact
    def __call__(self, x, buckets, mask):
        cfg = self.cfg
        cdt = jnp.dtype(cfg.dtype)
        table = self.param("pos_embedding", nn.initializers.normal((2 * cfg.num_buckets * cfg.num_heads) ** -0.5),
                           (cfg.num_buckets, cfg.num_heads), jnp.dtype(cfg.param_dtype))
        bias = jnp.transpose(table[buckets], (2, 0, 1))[None].astype(jnp.float32)  # (1, N, L, L)
        h = RMSNorm(cfg.eps, cfg.param_dtype, name="norm1")(x).astype(cdt)
        x = x + _Attention(cfg, name="attn")(h, bias, mask).astype(jnp.float32)
        h = RMSNorm(cfg.eps, cfg.param_dtype, name="norm2")(x).astype(cdt)
        x = x + _FeedForward(cfg, name="ffn")(h).astype(jnp.float32)
        return x, None


class UMT5Encoder(nn.Module):
    """umT5 encoder: ids (B, L), mask (B, L) -> (B, L, dim) float32. See the module docstring."""

    cfg: UMT5Config

    @nn.compact
    def __call__(self, ids, mask=None):
        cfg = self.cfg
        B, L = ids.shape
        mask = jnp.ones((B, L), bool) if mask is None else jnp.asarray(mask, bool)
        emb = nn.Embed(cfg.vocab_size, cfg.dim, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype),
                       embedding_init=nn.initializers.normal(1.0), name="token_embedding")
        x = emb(ids).astype(jnp.float32)
        buckets = jnp.asarray(relative_position_buckets(L, cfg.num_buckets, cfg.max_distance))
        Blocks = nn.scan(UMT5Block, variable_axes={"params": 0}, split_rngs={"params": True},
                         in_axes=(nn.broadcast, nn.broadcast), length=cfg.num_layers,
                         metadata_params={nn.PARTITION_NAME: sh.LAYERS})
        x, _ = Blocks(cfg, name="blocks")(x, buckets, mask[:, None, None, :])
        return RMSNorm(cfg.eps, cfg.param_dtype, name="norm")(x).astype(jnp.float32)


@functools.lru_cache(maxsize=None)
def abstract_umt5_params(cfg: UMT5Config):
    """The params tree as ShapeDtypeStructs (`jax.eval_shape`: no memory)."""
    ids = jax.ShapeDtypeStruct((1, 4), jnp.int32)
    tree = jax.eval_shape(UMT5Encoder(cfg).init, jax.random.key(0), ids)["params"]
    return nn.meta.unbox(tree)


@functools.partial(jax.jit, static_argnums=0)
def encode_tokens(model: UMT5Encoder, params, ids, mask):
    """Jitted forward: (B, L) ids and mask -> (B, L, dim) float32."""
    return model.apply({"params": params}, ids, mask)
