"""The Wan2.1 causal video VAE in Flax linen, with chunked causal encode / decode whose feature
cache is a fixed-shape pytree that a `lax.scan` carries.

    vae = WanVAE(vae_variant("tiny"))
    params = init_vae_params(vae, rng, height=64, width=64)
    mean, logvar = encode(vae, params, video)          # video (B, 1 + 4k, H, W, 3) in [-1, 1]
    frames = decode(vae, params, latents)               # latents (B, 1 + k, H/8, W/8, 16)
    # streaming: one chunk at a time, the cache in and out
    cache = init_decode_cache(vae, params, batch=B, latent_hw=(h, w))
    frames0, cache = decode_chunk(vae, params, z[:, :1], cache, first=True)    # 1 frame
    frames1, cache = decode_chunk(vae, params, z[:, 1:2], cache, first=False)  # 4 frames

Layout: channel-last, video (B, T, H, W, C). Latents are the raw posterior mean (Wan's `mu`);
`normalize_latents` gives the (z - mean) / std latents the DiT works on.

Causality. Every convolution with a temporal kernel of 3 sees the two frames before its chunk
through a 2-frame cache, initialised to zeros; that reproduces the reference implementation's
`feat_cache` rules exactly (zero padding on the first chunk; "last frame of the previous cache +
this frame" when a chunk has a single frame, because the new cache is always the last two frames of
`concat(cache, x)`). The temporal downsampler skips its strided time convolution on the first chunk
and caches one frame; the temporal upsampler skips its time convolution on the first chunk. The
first chunk (1 frame in, or 1 latent frame out) has its own shape, so it is one call before the
scan; every later chunk (4 frames <-> 1 latent frame) is one scan step of the same shape.

Parameter names follow diffusers' `AutoencoderKLWan` (`encoder/down_blocks_3/conv1/kernel` is
`encoder.down_blocks.3.conv1.weight`); `star_jax.checkpoint.vae` maps the original Wan names and
the diffusers names onto them. Numerics: parameters in `param_dtype`, convolutions in `dtype`,
RMS norms in float32.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from star_jax.models.attention import AttentionFn, xla_attention
from star_jax.models.variants import VAEConfig

CACHE_T = 2  # frames of left context a temporal-kernel-3 causal convolution needs


def _conv(x, kernel, bias, strides, padding, dtype):
    """N-d convolution, channel-last input (B, *S, C), kernel (*K, C_in, C_out)."""
    n = kernel.ndim - 2
    spatial = "DHW"[-n:]
    dn = jax.lax.conv_dimension_numbers(x.shape, kernel.shape, (f"N{spatial}C", f"{spatial}IO", f"N{spatial}C"))
    y = jax.lax.conv_general_dilated(x.astype(dtype), kernel.astype(dtype), strides, padding, dimension_numbers=dn)
    return y + bias.astype(dtype)


def _conv_time_taps(x, kernel, bias, time_stride, padding, dtype):
    """A 3-D convolution valid in time, as the sum over its k_t temporal taps of 2-D convolutions
    with time folded into the batch: x (B, T, H, W, C_in), kernel (k_t, k_h, k_w, C_in, C_out) ->
    (B, (T - k_t) // time_stride + 1, H', W', C_out). The same sums as a 3-D convolution (in
    another order), and several times faster on XLA:CPU, whose 3-D convolutions are unblocked."""
    b, t, h, w, c = x.shape
    kt = kernel.shape[0]
    t_out = (t - kt) // time_stride + 1
    if t_out < 1:
        raise ValueError(f"a temporal kernel of {kt} needs >= {kt} frames, got x {tuple(x.shape)}")
    y = None
    for i in range(kt):
        tap = x[:, i: i + time_stride * (t_out - 1) + 1: time_stride].reshape(b * t_out, h, w, c)
        yi = _conv(tap, kernel[i], jnp.zeros_like(bias), (1, 1), padding, dtype)
        y = yi if y is None else y + yi
    y = y + bias.astype(dtype)
    return y.reshape(b, t_out, *y.shape[1:])


def _kernel_init():
    """torch's default conv init (kaiming-uniform, a=sqrt(5)): U(+-1/sqrt(fan_in))."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class CausalConv3d(nn.Module):
    """3-D convolution, causal in time. x (B, T, H, W, C_in) -> (B, T', H, W, C_out).

    The `cache` (B, k_t - 1, H, W, C_in) holds the input frames before this chunk (None at the start
    of the stream: zeros); the convolution runs on `concat(cache, x)` and returns its last k_t - 1
    frames as the new cache. Temporal kernel 1, or `causal=False` (the caller prepends the context
    itself), is valid in time and returns None. Space is zero-padded to keep H, W."""

    features: int
    kernel_size: tuple[int, int, int] = (3, 3, 3)
    time_stride: int = 1
    causal: bool = True  # False: valid in time, the caller prepends the context itself
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, cache):
        kt, kh, kw = self.kernel_size
        if self.causal and kt > 1 and cache is None:  # start of the stream: zero context
            cache = jnp.zeros((x.shape[0], kt - 1, *x.shape[2:]), x.dtype)
        kernel = self.param("kernel", _kernel_init(), (kt, kh, kw, x.shape[-1], self.features),
                            jnp.dtype(self.param_dtype))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.dtype(self.param_dtype))
        if cache is not None:
            x = jnp.concatenate([cache.astype(x.dtype), x], axis=1)
            cache = x[:, x.shape[1] - (kt - 1):]
        pad = ((kh // 2, kh // 2), (kw // 2, kw // 2))
        return _conv_time_taps(x, kernel, bias, self.time_stride, pad, jnp.dtype(self.dtype)), cache


class Conv2d(nn.Module):
    """Per-frame 2-D convolution: x (B, T, H, W, C_in) -> (B, T, H', W', C_out)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    padding: tuple = ((1, 1), (1, 1))
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        k = self.kernel_size
        kernel = self.param("kernel", _kernel_init(), (k, k, x.shape[-1], self.features),
                            jnp.dtype(self.param_dtype))
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.dtype(self.param_dtype))
        b, t = x.shape[:2]
        y = _conv(x.reshape(b * t, *x.shape[2:]), kernel, bias, (self.stride, self.stride), self.padding,
                  jnp.dtype(self.dtype))
        return y.reshape(b, t, *y.shape[1:])


class RMSNorm(nn.Module):
    """Wan's RMS_norm over channels: x / max(||x||_2, 1e-12) * sqrt(C) * gamma, in float32."""

    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        gamma = self.param("gamma", nn.initializers.ones_init(), (c,), jnp.dtype(self.param_dtype))
        x32 = x.astype(jnp.float32)
        inv = jax.lax.rsqrt(jnp.maximum(jnp.sum(x32 * x32, axis=-1, keepdims=True), 1e-24))
        return (x32 * inv * math.sqrt(c) * gamma.astype(jnp.float32)).astype(x.dtype)


def _sub(cache, name):
    return None if cache is None else cache[name]


class ResidualBlock(nn.Module):
    """norm1 -> SiLU -> conv1 -> norm2 -> SiLU -> conv2, plus a 1x1x1 shortcut when C changes."""

    features: int
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, cache):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if x.shape[-1] != self.features:
            h, _ = CausalConv3d(self.features, (1, 1, 1), name="conv_shortcut", **kw)(x, None)
        else:
            h = x
        y = nn.silu(RMSNorm(self.param_dtype, name="norm1")(x))
        y, c1 = CausalConv3d(self.features, name="conv1", **kw)(y, _sub(cache, "conv1"))
        y = nn.silu(RMSNorm(self.param_dtype, name="norm2")(y))
        y, c2 = CausalConv3d(self.features, name="conv2", **kw)(y, _sub(cache, "conv2"))
        return y + h, {"conv1": c1, "conv2": c2}


class AttentionBlock(nn.Module):
    """Single-head self-attention within each frame (over its H*W positions), with residual."""

    attention_fn: AttentionFn = xla_attention
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        b, t, h, w, c = x.shape
        kw = dict(kernel_size=1, padding=((0, 0), (0, 0)), dtype=self.dtype, param_dtype=self.param_dtype)
        y = RMSNorm(self.param_dtype, name="norm")(x)
        qkv = Conv2d(3 * c, name="to_qkv", **kw)(y).reshape(b * t, h * w, 1, 3 * c)
        q, k, v = jnp.split(qkv, 3, axis=-1)
        y = self.attention_fn(q, k, v, None).reshape(b, t, h, w, c)
        return Conv2d(c, name="proj", **kw)(y) + x


class Resample(nn.Module):
    """Spatial 2x down / up sampling, optionally with a causal 2x temporal step.

    modes: downsample2d, downsample3d (pad right/bottom, 3x3 stride 2; then a strided (3,1,1) time
    conv over [cached last frame, chunk]), upsample2d (nearest 2x, 3x3 conv to `out_features`),
    upsample3d (a causal (3,1,1) time conv to 2C channels, split into two interleaved frames)."""

    mode: str
    out_features: int | None = None
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, cache, first: bool):
        """x (B, T, H, W, C) -> (B, T', H', W', C'); `first` (static): the stream's first chunk."""
        c = x.shape[-1]
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        if self.mode == "upsample3d" and first and cache is None:
            cache = jnp.zeros((x.shape[0], CACHE_T, *x.shape[2:]), x.dtype)  # the skipped conv's context
        if self.mode == "upsample3d" and not first:
            y, cache = CausalConv3d(2 * c, (3, 1, 1), name="time_conv", **kw)(x, cache)
            b, t, h, w, _ = y.shape  # channels [frame 2t | frame 2t + 1]
            x = y.reshape(b, t, h, w, 2, c).transpose(0, 1, 4, 2, 3, 5).reshape(b, 2 * t, h, w, c)
        if self.mode.startswith("upsample"):
            x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)  # nearest-exact at scale 2
            return Conv2d(self.out_features or c // 2, name="resample_1", **kw)(x), cache
        x = Conv2d(c, stride=2, padding=((0, 1), (0, 1)), name="resample_1", **kw)(x)
        if self.mode == "downsample3d":
            last = x[:, -1:]
            if not first:
                if cache is None:
                    raise ValueError("downsample3d: a chunk after the first needs the cache of the one before")
                x, _ = CausalConv3d(c, (3, 1, 1), time_stride=2, causal=False, name="time_conv", **kw)(
                    jnp.concatenate([cache.astype(x.dtype), x], axis=1), None)
            cache = last
        return x, cache


class MidBlock(nn.Module):
    """residual block, per-frame attention, residual block (`resnets_0`, `attentions_0`, `resnets_1`)."""

    attention_fn: AttentionFn = xla_attention
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, cache):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        c = x.shape[-1]
        x, c0 = ResidualBlock(c, name="resnets_0", **kw)(x, _sub(cache, "resnets_0"))
        x = AttentionBlock(self.attention_fn, name="attentions_0", **kw)(x)
        x, c1 = ResidualBlock(c, name="resnets_1", **kw)(x, _sub(cache, "resnets_1"))
        return x, {"resnets_0": c0, "resnets_1": c1}


class Encoder(nn.Module):
    """Video (B, T, H, W, 3) -> posterior moments (B, T', H/8, W/8, 2 z_dim), one chunk."""

    cfg: VAEConfig
    attention_fn: AttentionFn = xla_attention

    @nn.compact
    def __call__(self, x, cache, first: bool):
        cfg = self.cfg
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        dims = [cfg.base_dim * u for u in (1, *cfg.dim_mult)]
        new = {}
        x, new["conv_in"] = CausalConv3d(dims[0], name="conv_in", **kw)(x, _sub(cache, "conv_in"))
        k = 0
        for i, out_dim in enumerate(dims[1:]):
            for _ in range(cfg.num_res_blocks):
                name = f"down_blocks_{k}"
                x, new[name] = ResidualBlock(out_dim, name=name, **kw)(x, _sub(cache, name))
                k += 1
            if i != len(cfg.dim_mult) - 1:
                name = f"down_blocks_{k}"
                mode = "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"
                x, new[name] = Resample(mode, name=name, **kw)(x, _sub(cache, name), first)
                k += 1
        x, new["mid_block"] = MidBlock(self.attention_fn, name="mid_block", **kw)(x, _sub(cache, "mid_block"))
        x = nn.silu(RMSNorm(cfg.param_dtype, name="norm_out")(x))
        x, new["conv_out"] = CausalConv3d(2 * cfg.z_dim, name="conv_out", **kw)(x, _sub(cache, "conv_out"))
        return x, new


class UpBlock(nn.Module):
    """`num_res` residual blocks (`resnets_j`), then an optional upsampler (`upsamplers_0`)."""

    features: int
    num_res: int
    upsample_mode: str | None
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x, cache, first: bool):
        kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        new = {}
        for j in range(self.num_res):
            name = f"resnets_{j}"
            x, new[name] = ResidualBlock(self.features, name=name, **kw)(x, _sub(cache, name))
        if self.upsample_mode is not None:
            x, new["upsamplers_0"] = Resample(self.upsample_mode, name="upsamplers_0", **kw)(
                x, _sub(cache, "upsamplers_0"), first)
        return x, new


class Decoder(nn.Module):
    """Latents (B, t, h, w, z_dim) -> frames (B, T, 8h, 8w, 3), one chunk."""

    cfg: VAEConfig
    attention_fn: AttentionFn = xla_attention

    @nn.compact
    def __call__(self, z, cache, first: bool):
        cfg = self.cfg
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        dims = [cfg.base_dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
        temporal_upsample = cfg.temporal_downsample[::-1]
        new = {}
        x, new["conv_in"] = CausalConv3d(dims[0], name="conv_in", **kw)(z, _sub(cache, "conv_in"))
        x, new["mid_block"] = MidBlock(self.attention_fn, name="mid_block", **kw)(x, _sub(cache, "mid_block"))
        for i, out_dim in enumerate(dims[1:]):
            mode = None
            if i != len(cfg.dim_mult) - 1:
                mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
            name = f"up_blocks_{i}"
            x, new[name] = UpBlock(out_dim, cfg.num_res_blocks + 1, mode, name=name, **kw)(
                x, _sub(cache, name), first)
        x = nn.silu(RMSNorm(cfg.param_dtype, name="norm_out")(x))
        x, new["conv_out"] = CausalConv3d(3, name="conv_out", **kw)(x, _sub(cache, "conv_out"))
        return x, new


class WanVAE(nn.Module):
    """The Wan2.1 VAE. Chunk methods (apply with `method=`); whole-video functions are below.

    encode_chunk: x (B, T, H, W, 3) in [-1, 1], T = 1 when `first` else 4
        -> moments (B, 1, H/8, W/8, 2 z_dim) = [mean | logvar], cache
    decode_chunk: z (B, 1, h, w, z_dim) raw latents -> frames (B, 1 if first else 4, 8h, 8w, 3)
        clipped to [-1, 1], cache
    A cache of None means the start of a stream (all-zero context)."""

    cfg: VAEConfig
    attention_fn: AttentionFn = xla_attention

    def setup(self):
        cfg = self.cfg
        if cfg.temporal_factor != 4 or cfg.spatial_factor != 8:
            raise ValueError(f"Wan VAE chunking assumes 4x time / 8x space, got {cfg.temporal_factor}x / "
                             f"{cfg.spatial_factor}x (temporal_downsample {cfg.temporal_downsample}, "
                             f"dim_mult {cfg.dim_mult})")
        kw = dict(dtype=cfg.dtype, param_dtype=cfg.param_dtype)
        self.encoder = Encoder(cfg, self.attention_fn)
        self.quant_conv = CausalConv3d(2 * cfg.z_dim, (1, 1, 1), **kw)
        self.post_quant_conv = CausalConv3d(cfg.z_dim, (1, 1, 1), **kw)
        self.decoder = Decoder(cfg, self.attention_fn)

    def encode_chunk(self, x, cache, first: bool):
        h, cache = self.encoder(x, cache, first)
        return self.quant_conv(h, None)[0], cache

    def decode_chunk(self, z, cache, first: bool):
        x, cache = self.decoder(self.post_quant_conv(z, None)[0], cache, first)
        return jnp.clip(x, -1.0, 1.0), cache

    def __call__(self, x):
        """Touches every parameter (a first and a steady-state chunk each way); for `init`."""
        m0, c = self.encode_chunk(x[:, :1], None, True)
        m1, _ = self.encode_chunk(x[:, 1:5], c, False)
        z = jnp.concatenate([m0, m1], axis=1)[..., : self.cfg.z_dim]
        y0, c = self.decode_chunk(z[:, :1], None, True)
        y1, _ = self.decode_chunk(z[:, 1:2], c, False)
        return jnp.concatenate([y0, y1], axis=1)


class LatentDist(NamedTuple):
    """Diagonal Gaussian posterior: mean, logvar (B, t, h, w, z_dim), logvar clipped to [-30, 20]."""

    mean: jnp.ndarray
    logvar: jnp.ndarray

    def sample(self, rng):
        return self.mean + jnp.exp(0.5 * self.logvar) * jax.random.normal(rng, self.mean.shape, self.mean.dtype)


def init_vae_params(vae: WanVAE, rng, height: int = 64, width: int = 64):
    """Random parameters (a dict tree); H, W only need to be multiples of 8."""
    x = jnp.zeros((1, 5, height, width, 3), jnp.float32)
    return vae.init(rng, x)["params"]


def check_video(video, cfg: VAEConfig) -> None:
    """Raises ValueError unless video is (B, 1 + 4k, H, W, 3) with H, W multiples of 8."""
    if video.ndim != 5 or video.shape[-1] != 3:
        raise ValueError(f"video must be (B, T, H, W, 3), got shape {tuple(video.shape)}")
    t, h, w = video.shape[1:4]
    f = cfg.spatial_factor
    if (t - 1) % cfg.temporal_factor or h % f or w % f:
        raise ValueError(f"video (B, T, H, W, 3) = {tuple(video.shape)}: T must be 1 + 4k and H, W "
                         f"multiples of {f}")


def encode_chunk(vae: WanVAE, params, x, cache, first: bool):
    """One causal encoder step; see `WanVAE.encode_chunk`."""
    return vae.apply({"params": params}, x, cache, first, method=WanVAE.encode_chunk)


def decode_chunk(vae: WanVAE, params, z, cache, first: bool):
    """One causal decoder step; see `WanVAE.decode_chunk`."""
    return vae.apply({"params": params}, z, cache, first, method=WanVAE.decode_chunk)


def init_decode_cache(vae: WanVAE, params, batch: int, latent_hw: tuple[int, int], dtype=None):
    """An all-zero decoder cache of the steady-state shape (what the first latent frame leaves
    behind), e.g. a `lax.scan` carry allocated before the stream starts."""
    z = jax.ShapeDtypeStruct((batch, 1, *latent_hw, vae.cfg.z_dim), jnp.dtype(dtype or vae.cfg.dtype))
    _, cache = jax.eval_shape(lambda p, z: decode_chunk(vae, p, z, None, True), params, z)
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), cache)


def _dist(moments) -> LatentDist:
    mean, logvar = jnp.split(moments, 2, axis=-1)
    return LatentDist(mean, jnp.clip(logvar, -30.0, 20.0))


def encode_start(vae: WanVAE, params, video, unroll: int | bool = 1):
    """Starts an encoder stream: video (B, 1 + 4k, H, W, 3) in [-1, 1] -> (LatentDist of
    (B, 1 + k, H/8, W/8, z_dim) raw latents, cache). The first frame is one chunk, then a
    `lax.scan` over 4-frame chunks (`encode_continue`; `unroll` as there)."""
    check_video(video, vae.cfg)
    moments, cache = encode_chunk(vae, params, video[:, :1], None, True)
    dist = _dist(moments)
    if video.shape[1] == 1:
        return dist, cache
    rest, cache = encode_continue(vae, params, video[:, 1:], cache, unroll)
    return LatentDist(*(jnp.concatenate([a, b], axis=1) for a, b in zip(dist, rest))), cache


@functools.partial(jax.jit, static_argnums=0)
def encode(vae: WanVAE, params, video) -> LatentDist:
    """video (B, 1 + 4k, H, W, 3) in [-1, 1] -> LatentDist of (B, 1 + k, H/8, W/8, z_dim) raw latents."""
    return encode_start(vae, params, video)[0]


def _scan(step, carry, xs, unroll: int | bool):
    """`lax.scan(step, carry, xs)`; `unroll=True` is a Python loop (no while loop left at all:
    `lax.scan(..., unroll=True)` still emits one, and XLA:CPU runs the gradients of the
    convolutions inside it ~7x slower)."""
    if unroll is not True:
        return jax.lax.scan(step, carry, xs, unroll=unroll)
    ys = []
    for i in range(xs.shape[0]):
        carry, y = step(carry, xs[i])
        ys.append(y)
    return carry, jnp.stack(ys)


def encode_continue(vae: WanVAE, params, video, cache, unroll: int | bool = 1):
    """Encodes frames (B, 4k, H, W, 3) that continue a stream whose encoder state is `cache`
    -> (LatentDist of k latent frames, cache). A `lax.scan` over 4-frame chunks; `unroll=True`
    is a Python loop (training on short clips; see `_scan`)."""
    b, t, h, w, c = video.shape
    if t % 4:
        raise ValueError(f"a continuing chunk needs a multiple of 4 frames, got video {tuple(video.shape)}")
    chunks = jnp.moveaxis(video.reshape(b, t // 4, 4, h, w, c), 1, 0)

    def step(cache, chunk):
        m, cache = encode_chunk(vae, params, chunk, cache, False)
        return cache, m[:, 0]

    cache, ms = _scan(step, cache, chunks, unroll)
    return _dist(jnp.moveaxis(ms, 0, 1)), cache


def decode_start(vae: WanVAE, params, latents, unroll: int | bool = 1):
    """Starts a decoder stream: latents (B, n, h, w, z_dim) raw -> (frames (B, 1 + 4(n - 1), 8h,
    8w, 3) in [-1, 1], cache). The first latent frame is one chunk, then a `lax.scan` over single
    latent frames (`decode_continue`)."""
    if latents.ndim != 5 or latents.shape[-1] != vae.cfg.z_dim:
        raise ValueError(f"latents must be (B, n, h, w, {vae.cfg.z_dim}), got {tuple(latents.shape)}")
    y0, cache = decode_chunk(vae, params, latents[:, :1], None, True)
    if latents.shape[1] == 1:
        return y0, cache
    rest, cache = decode_continue(vae, params, latents[:, 1:], cache, unroll)
    return jnp.concatenate([y0, rest], axis=1), cache


@functools.partial(jax.jit, static_argnums=0)
def decode(vae: WanVAE, params, latents):
    """latents (B, n, h, w, z_dim) raw -> frames (B, 1 + 4(n - 1), 8h, 8w, 3) in [-1, 1]."""
    return decode_start(vae, params, latents)[0]


def decode_continue(vae: WanVAE, params, latents, cache, unroll: int | bool = 1):
    """Decodes latents (B, n, h, w, z) that continue a stream whose decoder state is `cache`
    -> (frames (B, 4n, 8h, 8w, 3), cache). A `lax.scan` over the n latent frames (`unroll` as
    in `encode_continue`)."""

    def step(cache, z):
        y, cache = decode_chunk(vae, params, z[:, None], cache, False)
        return cache, y

    cache, ys = _scan(step, cache, jnp.moveaxis(latents, 1, 0), unroll)
    ys = jnp.moveaxis(ys, 0, 1)  # (B, n, 4, H, W, 3)
    return ys.reshape(ys.shape[0], -1, *ys.shape[3:]), cache


def normalize_latents(z, cfg: VAEConfig):
    """Raw latents (..., z_dim) -> the DiT's (z - mean) / std, per channel."""
    mean = jnp.asarray(cfg.latents_mean, jnp.float32)
    std = jnp.asarray(cfg.latents_std, jnp.float32)
    return ((z.astype(jnp.float32) - mean) / std).astype(z.dtype)


def denormalize_latents(z, cfg: VAEConfig):
    """The DiT's normalised latents (..., z_dim) -> raw latents for the decoder."""
    mean = jnp.asarray(cfg.latents_mean, jnp.float32)
    std = jnp.asarray(cfg.latents_std, jnp.float32)
    return (z.astype(jnp.float32) * std + mean).astype(z.dtype)
