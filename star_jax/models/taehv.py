"""TAEHV, the tiny video autoencoder for Wan2.1 latents (madebyollin/taehv, weights `taew2_1`), in
Flax linen: a fast stand-in for the Wan VAE's decoder (and encoder), streamed with a fixed-shape state.

    tae = TAEHV(taehv_variant("wan2.1"))
    params = init_taehv_params(tae, seed=0)                   # random (torch-style); or convert_taehv
    frames = decode(tae, params, latents)                     # (B, n, h, w, 16) -> (B, 1 + 4(n - 1), 8h, 8w, 3)
    frames0, state = decode_start(tae, params, latents[:, :3])              # 9 frames
    frames1, state = decode_continue(tae, params, latents[:, 3:6], state)   # 12 frames
    latents = encode(tae, params, video)                      # (B, 4k, H, W, 3) -> (B, k, H/8, W/8, 16)

Conventions, those of `star_jax.models.vae` so that either decoder serves a session: latents in and
out are the RAW Wan latents (`denormalize_latents` of the DiT's), frames are in [-1, 1] (the network
itself works in [0, 1]: its output is clipped to [0, 1] and mapped by 2x - 1; the encoder maps its
[-1, 1] input by (x + 1) / 2). A decoder stream turns the first latent frame into 1 frame and every
later one into 4, as Wan's does: each latent frame gives 4 frames and the stream's first 3 are dropped.
The encoder follows the reference exactly (latent i from frames 4i .. 4i + 3, a clip padded at its
end by repeating its last frame); how that aligns in time with Wan's encoder (latent 0 from frame 0
alone) is the published weights' business and is unchecked here (no real weights in tests).

Architecture (per frame 2-D convolutions, channel-last (B, T, H, W, C); the only temporal mixing is
MemBlocks and the TPool / TGrow reshapes):
  MemBlock(x, past) = relu(conv3(relu(conv3(relu(conv3(concat(x, past)))))) + skip(x)), where
      `past` is the block's input one frame earlier (zeros before the stream's first frame);
  TGrow(s): a 1x1 conv to s * C channels read as s consecutive frames [frame 0 C | frame 1 C];
  TPool(s): s consecutive frames concatenated on channels, then a 1x1 conv back to C;
  decoder: tanh(z / 3) * 3, conv -> 256, relu, then three stages of [3 MemBlocks, nearest 2x
      upsampling, TGrow (x1, x2, x2 in time), conv to the next width (256, 128, 64, 64)], relu, conv -> 3;
  encoder: conv -> 64, relu, then three stages of [TPool (x2, x2, x1), conv stride 2, 3 MemBlocks],
      conv -> 16.
Parameter names follow the PyTorch `nn.Sequential` indices: `decoder.3.conv.0.weight` is
`decoder/layers_3/conv_0/kernel` (`star_jax.checkpoint.convert_taehv` maps them).

Streaming. Within a call, every frame of every MemBlock reads its predecessor at once (the
reference's "parallel" mode); across calls the state carries each MemBlock's last input frame
(`DecodeState` / `EncodeState`, shapes fixed by the latent size alone), so a stream of calls of any
length equals one whole-clip call. `decode_continue` scans over single latent frames, so its
memory stays that of one latent frame (4 output frames) whatever the block length.
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

MEM_BLOCKS = 3  # MemBlocks per stage


@dataclasses.dataclass(frozen=True)
class TAEHVConfig:
    """Sizes of a TAEHV. `decoder_widths` are the four stage widths; the time / space flags are
    per stage (the published Wan2.1 / Hunyuan weights: 4x time, 8x space)."""

    latent_channels: int = 16
    image_channels: int = 3
    encoder_width: int = 64
    decoder_widths: tuple[int, int, int, int] = (256, 128, 64, 64)
    encoder_time_downscale: tuple[bool, bool, bool] = (True, True, False)
    decoder_time_upscale: tuple[bool, bool, bool] = (False, True, True)
    decoder_space_upscale: tuple[bool, bool, bool] = (True, True, True)
    dtype: str = "float32"
    param_dtype: str = "float32"

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.decoder_time_upscale)

    @property
    def spatial_factor(self) -> int:
        return 2 ** sum(self.decoder_space_upscale)

    @property
    def frames_to_trim(self) -> int:
        """Output frames dropped at the start of a decoder stream (1 + 4(n - 1) frames from n latents)."""
        return self.temporal_factor - 1


TAEHV_VARIANTS: dict[str, dict] = {
    "wan2.1": dict(),  # taew2_1.pth: the published sizes
    "tiny": dict(encoder_width=8, decoder_widths=(16, 8, 8, 8)),  # the same structure, for tests
}


def taehv_variant(name: str, **overrides) -> TAEHVConfig:
    if name not in TAEHV_VARIANTS:
        raise ValueError(f"unknown TAEHV variant {name!r}; expected one of {sorted(TAEHV_VARIANTS)}")
    return TAEHVConfig(**{**TAEHV_VARIANTS[name], **overrides})


def _torch_init():
    """torch's default conv init (kaiming-uniform, a=sqrt(5)): U(+-1/sqrt(fan_in))."""
    return nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class FrameConv(nn.Module):
    """Per-frame 2-D convolution, zero padding k // 2: x (B, T, H, W, C) -> (B, T, H / stride, W / stride, F)."""

    features: int
    kernel_size: int = 3
    stride: int = 1
    use_bias: bool = True
    dtype: str = "float32"
    param_dtype: str = "float32"

    @nn.compact
    def __call__(self, x):
        k, p, dt = self.kernel_size, self.kernel_size // 2, jnp.dtype(self.dtype)
        kernel = self.param("kernel", _torch_init(), (k, k, x.shape[-1], self.features), jnp.dtype(self.param_dtype))
        b, t = x.shape[:2]
        y = jax.lax.conv_general_dilated(x.reshape(b * t, *x.shape[2:]).astype(dt), kernel.astype(dt),
                                         (self.stride,) * 2, ((p, p), (p, p)),
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros_init(), (self.features,),
                               jnp.dtype(self.param_dtype)).astype(dt)
        return y.reshape(b, t, *y.shape[1:])


def _conv(features, name, cfg: TAEHVConfig, **kw):
    return FrameConv(features, name=name, dtype=cfg.dtype, param_dtype=cfg.param_dtype, **kw)


class MemBlock(nn.Module):
    """x (B, T, H, W, C_in), memory (B, H, W, C_in): the input frame before x[:, 0]
    -> (y (B, T, H, W, features), the new memory x[:, -1] in memory's dtype)."""

    features: int
    cfg: TAEHVConfig

    @nn.compact
    def __call__(self, x, memory):
        past = jnp.concatenate([memory[:, None].astype(x.dtype), x[:, :-1]], axis=1)
        y = jnp.concatenate([x, past], axis=-1)
        y = nn.relu(_conv(self.features, "conv_0", self.cfg)(y))
        y = nn.relu(_conv(self.features, "conv_2", self.cfg)(y))
        y = _conv(self.features, "conv_4", self.cfg)(y)
        skip = x if x.shape[-1] == self.features else _conv(self.features, "skip", self.cfg, kernel_size=1,
                                                            use_bias=False)(x)
        return nn.relu(y + skip), x[:, -1].astype(memory.dtype)  # the state keeps its dtype


def _grow(y, stride: int):
    """(B, T, H, W, s C) -> (B, s T, H, W, C): channel group j is frame s t + j."""
    b, t, h, w, c = y.shape
    y = y.reshape(b, t, h, w, stride, c // stride)
    return jnp.moveaxis(y, 4, 2).reshape(b, t * stride, h, w, c // stride)


def _pool(x, stride: int):
    """(B, s T, H, W, C) -> (B, T, H, W, s C): frames s t .. s t + s - 1 side by side on channels."""
    b, t, h, w, c = x.shape
    return jnp.moveaxis(x.reshape(b, t // stride, stride, h, w, c), 2, 4).reshape(b, t // stride, h, w, stride * c)


class TGrow(nn.Module):
    """x (B, T, H, W, C) -> (B, s T, H, W, C): a 1x1 conv to s C channels, read as s frames."""

    stride: int
    cfg: TAEHVConfig

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        return _grow(_conv(c * self.stride, "conv", self.cfg, kernel_size=1, use_bias=False)(x), self.stride)


class TPool(nn.Module):
    """x (B, s T, H, W, C) -> (B, T, H, W, C): s frames side by side on channels, a 1x1 conv to C."""

    stride: int
    cfg: TAEHVConfig

    @nn.compact
    def __call__(self, x):
        c = x.shape[-1]
        return _conv(c, "conv", self.cfg, kernel_size=1, use_bias=False)(_pool(x, self.stride))


class Decoder(nn.Module):
    """Raw latents (B, T, h, w, z) + memories -> frames (B, 4T, 8h, 8w, 3) in the network's [0, 1]
    scale (unclipped), new memories. `memories` is a tuple of 9 arrays, one per MemBlock."""

    cfg: TAEHVConfig

    @nn.compact
    def __call__(self, z, memories):
        cfg = self.cfg
        w = cfg.decoder_widths
        x = jnp.tanh(z.astype(jnp.dtype(cfg.dtype)) / 3) * 3  # Clamp (index 0)
        x = nn.relu(_conv(w[0], "layers_1", cfg)(x))
        new, i, k = [], 3, 0
        for stage in range(3):
            for _ in range(MEM_BLOCKS):
                x, m = MemBlock(w[stage], cfg, name=f"layers_{i}")(x, memories[k])
                new.append(m)
                i, k = i + 1, k + 1
            if cfg.decoder_space_upscale[stage]:  # nearest 2x (index i)
                x = jnp.repeat(jnp.repeat(x, 2, axis=2), 2, axis=3)
            s = 2 if cfg.decoder_time_upscale[stage] else 1
            x = TGrow(s, cfg, name=f"layers_{i + 1}")(x)
            x = _conv(w[stage + 1], f"layers_{i + 2}", cfg, use_bias=False)(x)
            i += 3
        x = _conv(cfg.image_channels, f"layers_{i + 1}", cfg)(nn.relu(x))  # ReLU at index i
        return x, tuple(new)


class Encoder(nn.Module):
    """Frames (B, 4T, H, W, 3) in [0, 1] + memories -> raw latents (B, T, H/8, W/8, z), new memories."""

    cfg: TAEHVConfig

    @nn.compact
    def __call__(self, x, memories):
        cfg, c = self.cfg, self.cfg.encoder_width
        x = nn.relu(_conv(c, "layers_0", cfg)(x.astype(jnp.dtype(cfg.dtype))))
        new, i, k = [], 2, 0
        for stage in range(3):
            s = 2 if cfg.encoder_time_downscale[stage] else 1
            x = TPool(s, cfg, name=f"layers_{i}")(x)
            x = _conv(c, f"layers_{i + 1}", cfg, stride=2, use_bias=False)(x)
            i += 2
            for _ in range(MEM_BLOCKS):
                x, m = MemBlock(c, cfg, name=f"layers_{i}")(x, memories[k])
                new.append(m)
                i, k = i + 1, k + 1
        return _conv(cfg.latent_channels, f"layers_{i}", cfg)(x), tuple(new)


class TAEHV(nn.Module):
    """Encoder and decoder; the chunk methods are applied with `method=` (see the functions below)."""

    cfg: TAEHVConfig

    def setup(self):
        self.encoder = Encoder(self.cfg)
        self.decoder = Decoder(self.cfg)

    def decode_chunk(self, z, memories):
        return self.decoder(z, memories)

    def encode_chunk(self, x, memories):
        return self.encoder(x, memories)

    def __call__(self, x, z):
        """Touches every parameter; for `init`. x (B, 4, H, W, 3), z (B, 1, H/8, W/8, z)."""
        y, _ = self.encoder(x, _zero_memories(self.cfg, "encoder", x.shape[0], x.shape[2:4], x.dtype))
        f, _ = self.decoder(z, _zero_memories(self.cfg, "decoder", z.shape[0], z.shape[2:4], z.dtype))
        return y, f


def memory_shapes(cfg: TAEHVConfig, part: str, batch: int, hw: tuple[int, int]) -> list[tuple[int, ...]]:
    """Shapes (B, H, W, C) of the 9 MemBlock memories of `part` ("encoder": hw = the frames';
    "decoder": hw = the latents')."""
    h, w = hw
    out = []
    for stage in range(3):
        if part == "encoder":
            h, w, c = -(-h // 2), -(-w // 2), cfg.encoder_width
        elif part == "decoder":
            c = cfg.decoder_widths[stage]
        else:
            raise ValueError(f"part must be 'encoder' or 'decoder', got {part!r}")
        out += [(batch, h, w, c)] * MEM_BLOCKS
        if part == "decoder" and cfg.decoder_space_upscale[stage]:
            h, w = 2 * h, 2 * w
    return out


def _zero_memories(cfg, part, batch, hw, dtype):
    return tuple(jnp.zeros(s, dtype) for s in memory_shapes(cfg, part, batch, hw))


def taehv_param_shapes(tae: TAEHV) -> dict:
    """The params tree as ShapeDtypeStructs (nothing allocated; sizes do not depend on H, W)."""
    f, cfg = tae.cfg.spatial_factor, tae.cfg
    x = jax.ShapeDtypeStruct((1, 4, 2 * f, 2 * f, cfg.image_channels), jnp.float32)
    z = jax.ShapeDtypeStruct((1, 1, 2, 2, cfg.latent_channels), jnp.float32)
    return jax.eval_shape(tae.init, jax.random.PRNGKey(0), x, z)["params"]


def init_taehv_params(tae: TAEHV, seed: int = 0) -> dict:
    """Random parameters as torch initialises them: kernel and bias ~ U(+-1 / sqrt(fan_in)), fan_in
    = k * k * C_in. Drawn with NumPy onto `jax.eval_shape` of `init`: XLA:CPU takes ~50 s to
    compile threefry for this model's ~100 tensors, NumPy a few milliseconds."""
    rng = np.random.default_rng(seed)

    flat = flatten_dict(taehv_param_shapes(tae))
    out = {}
    for path, s in sorted(flat.items()):
        kernel = flat[(*path[:-1], "kernel")].shape
        bound = 1.0 / np.sqrt(np.prod(kernel[:-1]))
        out[path] = jnp.asarray(rng.uniform(-bound, bound, s.shape), jnp.dtype(tae.cfg.param_dtype))
    return unflatten_dict(out)


def init_decode_state(tae: TAEHV, batch: int, latent_hw: tuple[int, int], dtype=None) -> tuple:
    """The all-zero decoder state (the start of a stream): 9 MemBlock memories (B, H_i, W_i, C_i)."""
    return _zero_memories(tae.cfg, "decoder", batch, latent_hw, jnp.dtype(dtype or tae.cfg.dtype))


def init_encode_state(tae: TAEHV, batch: int, frame_hw: tuple[int, int], dtype=None) -> tuple:
    """The all-zero encoder state: 9 MemBlock memories (B, H_i, W_i, C_i)."""
    return _zero_memories(tae.cfg, "encoder", batch, frame_hw, jnp.dtype(dtype or tae.cfg.dtype))


def _check_latents(latents, cfg: TAEHVConfig):
    if latents.ndim != 5 or latents.shape[-1] != cfg.latent_channels or latents.shape[1] < 1:
        raise ValueError(f"latents must be (B, n >= 1, h, w, {cfg.latent_channels}), got {tuple(latents.shape)}")


def _to_frames(y):
    """The network's output scale -> frames in [-1, 1]."""
    return jnp.clip(y, 0.0, 1.0) * 2.0 - 1.0


def decode_chunk(tae: TAEHV, params, latents, state):
    """latents (B, T, h, w, z) raw, state -> (frames (B, 4T, 8h, 8w, 3) in [-1, 1], state).
    Untrimmed: the stream's start is `decode_start`."""
    y, state = tae.apply({"params": params}, latents, state, method=TAEHV.decode_chunk)
    return _to_frames(y), state


@functools.partial(jax.jit, static_argnums=0)
def decode(tae: TAEHV, params, latents):
    """latents (B, n, h, w, z) raw -> frames (B, 1 + 4(n - 1), 8h, 8w, 3) in [-1, 1], all frames
    at once (the reference's parallel decode)."""
    _check_latents(latents, tae.cfg)
    state = init_decode_state(tae, latents.shape[0], latents.shape[2:4])
    return decode_chunk(tae, params, latents, state)[0][:, tae.cfg.frames_to_trim:]


def decode_start(tae: TAEHV, params, latents):
    """Starts a decoder stream: latents (B, n, h, w, z) raw -> (frames (B, 1 + 4(n - 1), 8h, 8w, 3)
    in [-1, 1], state). The first latent frame gives 1 frame; the rest go to `decode_continue`."""
    _check_latents(latents, tae.cfg)
    state = init_decode_state(tae, latents.shape[0], latents.shape[2:4])
    y0, state = decode_chunk(tae, params, latents[:, :1], state)
    y0 = y0[:, tae.cfg.frames_to_trim:]
    if latents.shape[1] == 1:
        return y0, state
    rest, state = decode_continue(tae, params, latents[:, 1:], state)
    return jnp.concatenate([y0, rest], axis=1), state


def decode_continue(tae: TAEHV, params, latents, state):
    """Latents (B, n, h, w, z) raw continuing a stream whose decoder state is `state` ->
    (frames (B, 4n, 8h, 8w, 3) in [-1, 1], state). A `lax.scan` over the latent frames."""
    _check_latents(latents, tae.cfg)

    def step(state, z):
        y, state = decode_chunk(tae, params, z[:, None], state)
        return state, y

    state, ys = jax.lax.scan(step, state, jnp.moveaxis(latents, 1, 0))
    ys = jnp.moveaxis(ys, 0, 1)  # (B, n, 4, H, W, 3)
    return ys.reshape(ys.shape[0], -1, *ys.shape[3:]), state


def encode_chunk(tae: TAEHV, params, video, state):
    """video (B, 4k, H, W, 3) in [-1, 1], state -> (raw latents (B, k, H/8, W/8, z), state)."""
    cfg = tae.cfg
    if video.ndim != 5 or video.shape[-1] != cfg.image_channels or video.shape[1] % 4 or video.shape[1] == 0:
        raise ValueError(f"video must be (B, 4k, H, W, {cfg.image_channels}) with k >= 1, got {tuple(video.shape)}")
    return tae.apply({"params": params}, (video + 1.0) / 2.0, state, method=TAEHV.encode_chunk)


@functools.partial(jax.jit, static_argnums=0)
def encode(tae: TAEHV, params, video):
    """video (B, T, H, W, 3) in [-1, 1] -> raw latents (B, ceil(T / 4), H/8, W/8, z). Like the
    reference, T is padded at the end to a multiple of 4 by repeating the last frame."""
    pad = -video.shape[1] % 4
    if pad:
        video = jnp.concatenate([video, jnp.repeat(video[:, -1:], pad, axis=1)], axis=1)
    state = init_encode_state(tae, video.shape[0], video.shape[2:4])
    return encode_chunk(tae, params, video, state)[0]
