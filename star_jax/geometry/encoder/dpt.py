"""Depth-Anything-3's dual DPT head: depth (+ confidence) and per-pixel rays (+ confidence).

    out = DualDPT(cfg).apply({"params": p}, feats, (H, W))   # feats: 4 x (B, S, h*w, F)
    out["depth"] (B, S, H, W), out["depth_conf"] (B, S, H, W),
    out["ray"] (B, S, 8h, 8w, 6), out["ray_conf"] (B, S, 8h, 8w)

As depth_anything_3/model/dualdpt.py: the four feature maps share one LayerNorm, are projected by
1x1 convs, resized to strides 4, 8, 14 (patch) and 28 px, reduced by 3x3 convs ("layerN_rn"), and
fused top-down twice with separate weights: the main chain ends at 8h x 8w, a 3x3 conv, a bilinear
(align_corners) resize to H x W, a UV sine embedding, conv-ReLU-conv, exp for depth and
1 + exp for confidence; the aux chain ends at 8h x 8w with five 3x3 convs, the UV embedding,
conv-LayerNorm-ReLU-conv to 7 channels: ray (6, linear; the reference's order) and 1 + exp confidence.
The reference also runs the aux pre-head convs of the three coarser levels and discards them;
that work (and their unused weights) is skipped here, the outputs are the same.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp
import numpy as np

from star_jax.geometry.encoder.resample import resize_bilinear
from star_jax.geometry.encoder.variants import EncoderConfig


def uv_embedding(h: int, w: int, channels: int, aspect: float, ratio: float = 0.1) -> np.ndarray:
    """(h, w, channels) sine embedding of a centred UV grid spanning the image diagonal (x then y)."""
    diag = (aspect ** 2 + 1.0) ** 0.5
    sx, sy = aspect / diag, 1.0 / diag
    u = np.linspace(-sx * (w - 1) / w, sx * (w - 1) / w, w, dtype=np.float32)
    v = np.linspace(-sy * (h - 1) / h, sy * (h - 1) / h, h, dtype=np.float32)
    omega = (1.0 / 100.0 ** (np.arange(channels // 4, dtype=np.float32) / (channels / 4))).astype(np.float32)

    def sincos(pos):  # (n,) -> (n, channels / 2)
        ang = pos[:, None] * omega[None]
        return np.concatenate([np.sin(ang), np.cos(ang)], -1)

    ex, ey = sincos(u), sincos(v)
    emb = np.concatenate([np.broadcast_to(ex[None], (h, w, channels // 2)),
                          np.broadcast_to(ey[:, None], (h, w, channels // 2))], -1)
    return (emb * ratio).astype(np.float32)


class _Convs:
    """Conv factories with the config's dtypes (torch padding p -> explicit ((p, p), (p, p)))."""

    def __init__(self, cfg: EncoderConfig):
        self.kw = dict(dtype=jnp.dtype(cfg.dtype), param_dtype=jnp.dtype(cfg.param_dtype))

    def __call__(self, features, k, name, stride=1, pad=None, bias=True):
        pad = k // 2 if pad is None else pad
        return nn.Conv(features, (k, k), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                       use_bias=bias, name=name, **self.kw)


class PatchUpsample(nn.Module):
    """torch ConvTranspose2d with kernel = stride = k (non-overlapping): each pixel -> a k x k tile.
    kernel (k, k, Cin, Cout) = torch weight (Cin, Cout, k, k) transposed."""

    features: int
    k: int
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):  # (N, h, w, Cin) -> (N, k h, k w, Cout)
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.k, self.k, x.shape[-1], self.features),
                            jnp.dtype(self.param_dtype))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.dtype(self.param_dtype))
        N, h, w, _ = x.shape
        y = jnp.einsum("nhwi,abio->nhawbo", x, kernel.astype(x.dtype))
        return y.reshape(N, h * self.k, w * self.k, self.features) + bias.astype(x.dtype)


class ResidualConvUnit(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, x):
        conv = _Convs(self.cfg)
        out = conv(x.shape[-1], 3, "conv1")(nn.relu(x))
        return conv(x.shape[-1], 3, "conv2")(nn.relu(out)) + x


class FusionBlock(nn.Module):
    """(top [+ RCU(lateral)]) -> RCU -> bilinear resize (to `size`, or x2) -> 1x1 conv."""

    cfg: EncoderConfig
    has_residual: bool = True

    @nn.compact
    def __call__(self, top, lateral=None, size=None):
        y = top
        if self.has_residual and lateral is not None:
            y = y + ResidualConvUnit(self.cfg, name="resConfUnit1")(lateral)
        y = ResidualConvUnit(self.cfg, name="resConfUnit2")(y)
        y = resize_bilinear(y, size or (2 * y.shape[1], 2 * y.shape[2]))
        return _Convs(self.cfg)(y.shape[-1], 1, "out_conv")(y)


class DualDPT(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, feats, image_hw: tuple[int, int]):
        """feats: 4 x (B, S, h*w, F); image_hw: (H, W). Returns the dict of the module docstring."""
        cfg, conv = self.cfg, _Convs(self.cfg)
        H, W = image_hw
        B, S, _, F = feats[0].shape
        h, w = H // cfg.patch_size, W // cfg.patch_size
        aspect = W / H
        add_uv = lambda x: x + jnp.asarray(uv_embedding(x.shape[1], x.shape[2], x.shape[3], aspect), x.dtype)
        norm = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype),
                            use_fast_variance=False, name="norm")
        oc = cfg.head_out_channels
        resize = [PatchUpsample(oc[0], 4, cfg.param_dtype, name="resize_layers_0"),
                  PatchUpsample(oc[1], 2, cfg.param_dtype, name="resize_layers_1"),
                  lambda x: x,
                  conv(oc[3], 3, "resize_layers_3", stride=2)]
        levels = []
        for i, f in enumerate(feats):
            x = norm(f.reshape(B * S, h, w, F)).astype(f.dtype)
            x = add_uv(conv(oc[i], 1, f"projects_{i}")(x))
            levels.append(conv(cfg.head_features, 3, f"layer{i + 1}_rn", bias=False)(resize[i](x)))
        l1, l2, l3, l4 = levels

        def chain(suffix):
            out = FusionBlock(cfg, False, name=f"refinenet4{suffix}")(l4, size=l3.shape[1:3])
            out = FusionBlock(cfg, name=f"refinenet3{suffix}")(out, l3, size=l2.shape[1:3])
            out = FusionBlock(cfg, name=f"refinenet2{suffix}")(out, l2, size=l1.shape[1:3])
            return FusionBlock(cfg, name=f"refinenet1{suffix}")(out, l1)

        f1, f2 = cfg.head_features, cfg.head_features // 2
        main = conv(f2, 3, "output_conv1")(chain(""))
        main = add_uv(resize_bilinear(main, (h * cfg.patch_size, w * cfg.patch_size)))
        main = conv(cfg.output_dim, 1, "output_conv2_2")(nn.relu(conv(32, 3, "output_conv2_0")(main)))

        aux = chain("_aux")
        for j, width in enumerate((f2, f1, f2, f1, f2)):
            aux = conv(width, 3, f"output_conv1_aux_3_{j}")(aux)
        aux = conv(32, 3, "output_conv2_aux_3_0")(add_uv(aux))
        aux = nn.LayerNorm(epsilon=1e-5, dtype=jnp.float32, param_dtype=jnp.dtype(cfg.param_dtype),
                           use_fast_variance=False, name="output_conv2_aux_3_2")(aux).astype(main.dtype)
        aux = conv(7, 1, "output_conv2_aux_3_5")(nn.relu(aux))

        main = main.astype(jnp.float32).reshape((B, S) + main.shape[1:])
        aux = aux.astype(jnp.float32).reshape((B, S) + aux.shape[1:])
        return {"depth": jnp.exp(main[..., 0]), "depth_conf": jnp.exp(main[..., -1]) + 1.0,
                "ray": aux[..., :6], "ray_conf": jnp.exp(aux[..., 6]) + 1.0}
