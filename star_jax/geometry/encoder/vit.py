"""The geometry encoder's backbone: a DINOv2 ViT with Depth-Anything-3's cross-view attention.

    feats, cam = Backbone(cfg).apply({"params": p}, images)          # images (B, S, H, W, 3)
    # feats: 4 x (B, S, h*w, 2C) patch features of cfg.out_layers; cam: 4 x (B, S, 2C) camera tokens

What DA3 adds to DINOv2 (depth_anything_3/model/dinov2/vision_transformer.py):
- Blocks i >= alt_start with i odd attend across all views (tokens of the S views concatenated);
  the others attend within each view. From qknorm_start the heads' q and k get a LayerNorm, from
  rope_start a 2D RoPE: per view the patch at (row y, col x) has position (y + 1, x + 1) and the
  class token (0, 0); across views every patch has (1, 1) and every class token (0, 0).
- Before block alt_start the class token of each view is replaced by a camera token: the learned
  reference token for view 0 and the learned source token for the others, or one token per view
  from the camera encoder when cameras are given.
- With >= 3 views and no cameras, the view that serves as reference is chosen before block
  alt_start - 1 from the class tokens (cfg.ref_view_strategy; "saddle_balanced" by default), moved
  to the front, and every output is put back into the input order.
- Output at block i: [last per-view stream, current stream] concatenated on channels (cat_token),
  the second half layer-normed; the camera token is the class slot of that (before the norm).

Images are ImageNet-normalised, channel-last, H and W multiples of the patch size (14).
Layer norms and softmax run in float32; matmuls in cfg.dtype. Attention is one of the DiT's
implementations (`star_jax.models.attention`, cfg.attention): "blockwise" by default, so the
cross-view blocks (S x (1 + h w) tokens, 12k for 16 views at 294 x 504) never hold the score matrix.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from star_jax import sharding as sh
from star_jax.errors import InputError
from star_jax.geometry.encoder.resample import bicubic_taps, resample_axis
from star_jax.geometry.encoder.variants import EncoderConfig
from star_jax.models.attention import attention_by_name


def dense(features: int, names: tuple, cfg: EncoderConfig, name: str, use_bias: bool = True) -> nn.Dense:
    return nn.Dense(
        features, use_bias=use_bias, dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype),
        kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-1:]), name=name)


def layer_norm(cfg: EncoderConfig, eps: float, name: str, axis_name: str = sh.NORM) -> nn.LayerNorm:
    return nn.LayerNorm(
        epsilon=eps, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype), use_fast_variance=False,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), (axis_name,)),
        bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis_name,)), name=name)


def rope_2d(x: jnp.ndarray, pos: jnp.ndarray, freq: float) -> jnp.ndarray:
    """2D rotary embedding. x (..., N, D) with D % 4 == 0; pos (N, 2) integer (row, col).
    The first D/2 channels rotate with the row, the last D/2 with the column (rotate-half form)."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (freq ** (np.arange(0, half, 2, dtype=np.float32) / half))

    def rotate(t, p):
        ang = p.astype(jnp.float32)[:, None] * inv_freq[None]  # (N, half / 2)
        ang = jnp.concatenate([ang, ang], -1)
        t1, t2 = jnp.split(t, 2, axis=-1)
        return t * jnp.cos(ang).astype(t.dtype) + jnp.concatenate([-t2, t1], -1) * jnp.sin(ang).astype(t.dtype)

    return jnp.concatenate([rotate(x[..., :half], pos[:, 0]), rotate(x[..., half:], pos[:, 1])], -1)


class Attention(nn.Module):
    """Multi-head self-attention with a fused qkv projection, optional QK LayerNorm and 2D RoPE."""

    cfg: EncoderConfig
    num_heads: int
    qk_norm: bool = False

    @nn.compact
    def __call__(self, x, pos=None):  # x (B, N, C), pos (N, 2) or None
        cfg, (B, N, C) = self.cfg, x.shape
        hd = C // self.num_heads
        qkv = dense(3 * C, (sh.EMBED, sh.HEADS), cfg, "qkv")(x).reshape(B, N, 3, self.num_heads, hd)
        q, k, v = (qkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))  # (B, heads, N, hd)
        if self.qk_norm:
            q = layer_norm(cfg, 1e-5, "q_norm")(q).astype(v.dtype)
            k = layer_norm(cfg, 1e-5, "k_norm")(k).astype(v.dtype)
        if pos is not None:
            q, k = rope_2d(q, pos, cfg.rope_freq), rope_2d(k, pos, cfg.rope_freq)
        attend = attention_by_name(cfg.attention, cfg.attention_chunk)
        out = attend(*(t.transpose(0, 2, 1, 3) for t in (q, k, v)), None)  # (B, N, heads, hd)
        return dense(C, (sh.HEADS, sh.EMBED), cfg, "proj")(out.reshape(B, N, C))


class Block(nn.Module):
    """Pre-norm transformer block with LayerScale: x + ls1 * attn(norm1 x); x + ls2 * mlp(norm2 x)."""

    cfg: EncoderConfig
    num_heads: int
    ln_eps: float = 1e-6
    qk_norm: bool = False

    @nn.compact
    def __call__(self, x, pos=None):  # (B, N, C)
        cfg, C = self.cfg, x.shape[-1]
        gamma = lambda name: self.param(
            name, nn.with_logical_partitioning(nn.initializers.ones_init(), (sh.NORM,)), (C,),
            jnp.dtype(cfg.param_dtype))
        h = layer_norm(cfg, self.ln_eps, "norm1")(x).astype(x.dtype)
        x = x + Attention(cfg, self.num_heads, self.qk_norm, name="attn")(h, pos) * gamma("ls1")
        h = layer_norm(cfg, self.ln_eps, "norm2")(x).astype(x.dtype)
        h = dense(int(C * cfg.mlp_ratio), (sh.EMBED, sh.MLP), cfg, "fc1")(h)
        h = dense(C, (sh.MLP, sh.EMBED), cfg, "fc2")(nn.gelu(h, approximate=False))
        return x + h * gamma("ls2")


def select_reference_view(cls_tokens: jnp.ndarray, strategy: str) -> jnp.ndarray:
    """The index (B,) of the view that becomes the reference, from the class tokens (B, S, C)."""
    B, S, _ = cls_tokens.shape
    if strategy == "first":
        return jnp.zeros((B,), jnp.int32)
    if strategy == "middle":
        return jnp.full((B,), S // 2, jnp.int32)
    norm = jnp.linalg.norm(cls_tokens, axis=-1)
    unit = cls_tokens / norm[..., None]
    sim = jnp.einsum("bsc,btc->bst", unit, unit) - jnp.eye(S, dtype=unit.dtype)
    if strategy == "saddle_sim_range":
        return jnp.argmax(sim.max(-1) - sim.min(-1), axis=1).astype(jnp.int32)

    def unit_range(m):
        lo, hi = m.min(1, keepdims=True), m.max(1, keepdims=True)
        return (m - lo) / (hi - lo + 1e-8)

    score = (jnp.abs(unit_range(sim.sum(-1) / (S - 1)) - 0.5) + jnp.abs(unit_range(norm) - 0.5)
             + jnp.abs(unit_range(jnp.var(unit, axis=-1, ddof=1)) - 0.5))
    return jnp.argmin(score, axis=1).astype(jnp.int32)


def reference_first_order(ref: jnp.ndarray, num_views: int) -> jnp.ndarray:
    """(B, S) gather indices that move view `ref` (B,) to the front, the others keeping their order."""
    p = jnp.arange(num_views)[None]
    r = ref[:, None]
    return jnp.where(p == 0, r, jnp.where(p <= r, p - 1, p))


def input_order(ref: jnp.ndarray, num_views: int) -> jnp.ndarray:
    """(B, S) gather indices that undo `reference_first_order`."""
    p = jnp.arange(num_views)[None]
    r = ref[:, None]
    return jnp.where(p < r, p + 1, jnp.where(p == r, 0, p))


def take_views(x: jnp.ndarray, order: jnp.ndarray) -> jnp.ndarray:
    """x (B, S, ...) gathered along S by order (B, S)."""
    return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), axis=1)


def token_positions(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """RoPE positions (1 + h*w, 2) of one view's tokens: per-view (class (0, 0), patches (y+1, x+1))
    and cross-view (class (0, 0), every patch (1, 1))."""
    yx = np.stack(np.meshgrid(np.arange(h), np.arange(w), indexing="ij"), -1).reshape(-1, 2) + 1
    zero = np.zeros((1, 2), np.int32)
    return (np.concatenate([zero, yx]).astype(np.int32),
            np.concatenate([zero, np.ones_like(yx)]).astype(np.int32))


class Backbone(nn.Module):
    """DA3's DinoV2 backbone. Returns (features, camera_tokens), one entry per cfg.out_layers."""

    cfg: EncoderConfig

    def _position_table(self, pos_embed, h: int, w: int) -> jnp.ndarray:
        """The learned (1 + M*M, C) table resized to (1 + h*w, C) as DINOv2 does (bicubic, +0.1 offset)."""
        M = self.cfg.pos_grid
        if h == M and w == M:
            return pos_embed
        grid = pos_embed[1:].astype(jnp.float32).reshape(M, M, -1)
        grid = resample_axis(grid, 0, bicubic_taps(M, h, (h + 0.1) / M))
        grid = resample_axis(grid, 1, bicubic_taps(M, w, (w + 0.1) / M))
        return jnp.concatenate([pos_embed[:1].astype(jnp.float32), grid.reshape(h * w, -1)]).astype(pos_embed.dtype)

    @nn.compact
    def __call__(self, images, cam_tokens=None):
        """images (B, S, H, W, 3); cam_tokens (B, S, C) from the camera encoder, or None.
        Returns ([(B, S, h*w, F)] * 4, [(B, S, F)] * 4) with h = H / 14, w = W / 14, F = cfg.feature_dim."""
        cfg = self.cfg
        B, S, H, W, _ = images.shape
        p, C = cfg.patch_size, cfg.embed_dim
        if H % p or W % p:
            raise InputError(f"geometry encoder: image size {H}x{W} must be a multiple of the patch size {p}")
        if cam_tokens is not None and cam_tokens.shape != (B, S, C):
            raise InputError(f"geometry encoder: camera tokens {cam_tokens.shape}, expected {(B, S, C)}")
        h, w = H // p, W // p
        pdt = jnp.dtype(cfg.param_dtype)
        zeros = nn.with_logical_partitioning(nn.initializers.zeros_init(), (None, sh.EMBED))
        normal = nn.with_logical_partitioning(nn.initializers.normal(1.0), (None, sh.EMBED))
        cls_token = self.param("cls_token", zeros, (1, C), pdt)
        camera_token = self.param("camera_token", normal, (2, C), pdt) if cfg.alt_start != -1 else None
        pos_embed = self.param("pos_embed", zeros, (cfg.pos_grid ** 2 + 1, C), pdt)

        x = nn.Conv(C, (p, p), strides=(p, p), padding="VALID", dtype=jnp.dtype(cfg.dtype), param_dtype=pdt,
                    name="patch_embed")(images.reshape(B * S, H, W, 3).astype(cfg.dtype))
        x = jnp.concatenate([jnp.broadcast_to(cls_token.astype(x.dtype), (B * S, 1, C)), x.reshape(B * S, h * w, C)], 1)
        x = (x + self._position_table(pos_embed, h, w).astype(x.dtype)).reshape(B, S, 1 + h * w, C)
        local_pos, global_pos = (jnp.asarray(a) for a in token_positions(h, w))
        global_pos = jnp.tile(global_pos, (S, 1))

        reorder = cfg.alt_start != -1 and S >= 3 and cam_tokens is None
        ref = None
        local_x, feats, cams = x, [], []
        final_norm = layer_norm(cfg, 1e-5, "norm")
        for i in range(cfg.depth):
            if reorder and i == cfg.alt_start - 1:
                ref = select_reference_view(x[:, :, 0].astype(jnp.float32), cfg.ref_view_strategy)
                order = reference_first_order(ref, S)
                x, local_x = take_views(x, order), take_views(local_x, order)
            if cfg.alt_start != -1 and i == cfg.alt_start:
                if cam_tokens is None:
                    cam_tokens = jnp.concatenate([jnp.broadcast_to(camera_token[None, :1], (B, 1, C)),
                                                  jnp.broadcast_to(camera_token[None, 1:], (B, S - 1, C))], 1)
                x = x.at[:, :, 0].set(cam_tokens.astype(x.dtype))
            block = Block(cfg, cfg.num_heads, 1e-6, cfg.qknorm_start != -1 and i >= cfg.qknorm_start,
                          name=f"blocks_{i}")
            use_rope = cfg.rope_start != -1 and i >= cfg.rope_start
            if cfg.alt_start != -1 and i >= cfg.alt_start and i % 2 == 1:  # across views
                x = block(x.reshape(B, S * (1 + h * w), C), global_pos if use_rope else None).reshape(x.shape)
            else:  # within each view
                x = block(x.reshape(B * S, 1 + h * w, C), local_pos if use_rope else None).reshape(x.shape)
                local_x = x
            if i in cfg.out_layers:
                out = jnp.concatenate([local_x, x], -1) if cfg.cat_token else x
                if ref is not None:
                    out = take_views(out, input_order(ref, S))
                cams.append(out[:, :, 0])
                normed = final_norm(out[..., -C:]).astype(out.dtype)
                out = jnp.concatenate([out[..., :-C], normed], -1) if cfg.cat_token else normed
                feats.append(out[:, :, 1:])
        return feats, cams
