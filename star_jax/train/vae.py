"""The VAE task: the Wan causal video VAE trained as an autoencoder on pixel clips.

    task = make_vae_task(config)          # config.task = "vae"
    loss, aux = vae_loss(vae, train_cfg, data_cfg, params, {"video": (B, T, H, W, 3) uint8}, rng)
    mean, std = latent_stats(vae, params, clips)   # per-channel statistics of the posterior means

Data (config.data): every stored clip is two training videos, its source and its target
(`source_rgb` / `target_rgb` of the pixel dataset, `star_jax.train.records`); "array" reads a
.npy of (N, T, H, W, 3) uint8 videos; "synthetic" makes smooth moving patterns (tests). Each
step crops a random (crop_frames, *crop_hw) window from every video (crop_frames = 1 + 4k: the
Wan VAE encodes the first frame alone, then 4-frame chunks) and flips it left-right with
probability 1/2; the crops come from the step's key, so every epoch sees new windows.

Loss per video, pixels in [-1, 1], the decoder fed a posterior sample:
    l1 * mean|x - x'| + mse * mean (x - x')^2 + grad * mean |d(x - x')| (finite differences in
    H and W) + kl * mean KL(N(mu, sigma^2) || N(0, 1)) over latent elements.
aux: psnr (of the batch, peak-to-peak 2), l1, mse, kl, logvar (mean posterior log-variance).

`train_encoder=False` trains the decoder alone (the encoder and quant_conv get no gradient, so
their params, and every latent a trained DiT was fit to, stay bit-identical): the way to improve
a VAE's reconstructions without retraining the teacher and student on its latents.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.errors import InputError
from star_jax.models.vae import LatentDist, WanVAE, decode_start, encode_start, init_vae_params
from star_jax.models.variants import VAEConfig
from star_jax.train.config import section
from star_jax.train.task import Task

SOURCES = ("records", "array", "synthetic")


@dataclasses.dataclass(frozen=True)
class VAEDataConfig:
    """source: "records" (a pixel dataset folder `path`, split `split`), "array" (a .npy file
    `path` of (N, T, H, W, 3) uint8 videos) or "synthetic" (`num_examples` smooth clips).
    Stored videos are (clip_frames, *clip_hw); training crops are (crop_frames, *crop_hw)."""

    source: str = "synthetic"
    path: str = ""
    split: str = "train"
    clip_frames: int = 9
    clip_hw: tuple[int, int] = (96, 160)
    crop_frames: int = 5
    crop_hw: tuple[int, int] = (64, 64)
    flip: bool = True
    num_examples: int = 64
    seed: int = 0

    def __post_init__(self):
        if self.source not in SOURCES:
            raise InputError(f"config.data.source: expected one of {SOURCES}, got {self.source!r}")
        if self.source != "synthetic" and not self.path:
            raise InputError(f"config.data.path: the {self.source!r} source needs a path, found none")
        if (self.crop_frames - 1) % 4 or self.crop_frames < 1 or any(s % 8 or s < 8 for s in self.crop_hw):
            raise InputError(f"config.data: crop_frames must be 1 + 4k and crop_hw multiples of 8, got "
                             f"{self.crop_frames}, {tuple(self.crop_hw)}")
        if self.crop_frames > self.clip_frames or any(c > s for c, s in zip(self.crop_hw, self.clip_hw)):
            raise InputError(f"config.data: the crop {(self.crop_frames, *self.crop_hw)} exceeds the clips "
                             f"{(self.clip_frames, *self.clip_hw)}")


@dataclasses.dataclass(frozen=True)
class VAETrainConfig:
    """Weights of the loss terms (module docstring); `sample`: decode a posterior sample (else
    the mean); `init_from`: start from the params of an exported VAE folder
    (`star_jax.checkpoint.export`) instead of a random init; `train_encoder`: False freezes the
    encoder side (`ENCODER_PARAMS`), usually with `init_from`."""

    l1: float = 1.0
    mse: float = 1.0
    grad: float = 0.0
    kl: float = 1e-6
    sample: bool = True
    init_from: str = ""
    train_encoder: bool = True


ENCODER_PARAMS = ("encoder", "quant_conv")  # the params that map pixels to the posterior


class SyntheticClips:
    """Smooth moving colour patterns, {"video": (T, H, W, 3) uint8}, deterministic in (seed, i):
    a few drifting sinusoids per channel plus a moving disc."""

    def __init__(self, num_examples: int, frames: int, hw: tuple[int, int], seed: int = 0):
        self.num_examples, self.frames, self.hw, self.seed = num_examples, frames, tuple(hw), seed

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        rng = np.random.default_rng([self.seed, int(index)])
        h, w = self.hw
        t, y, x = np.meshgrid(np.arange(self.frames), np.arange(h) / h, np.arange(w) / w, indexing="ij")
        img = np.zeros((self.frames, h, w, 3))
        for c in range(3):
            for _ in range(3):
                fy, fx = rng.uniform(-4, 4, 2)
                vy, vx = rng.uniform(-0.03, 0.03, 2)
                img[..., c] += rng.uniform(0.1, 0.3) * np.sin(2 * np.pi * (fy * (y + vy * t) + fx * (x + vx * t))
                                                              + rng.uniform(0, 2 * np.pi))
        cy, cx, r = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.1, 0.25)
        disc = (y - cy - 0.02 * t) ** 2 + (x - cx) ** 2 < r * r
        img = np.where(disc[..., None], rng.uniform(-0.8, 0.8, 3), img)
        return {"video": np.clip(np.round((img + 1) * 127.5), 0, 255).astype(np.uint8)}


class ClipVideos:
    """A pixel dataset split (`records.open_split`) as videos: example 2i is clip i's source
    video, 2i + 1 its target video, {"video": (T, H, W, 3) uint8}."""

    def __init__(self, split):
        self.split = split

    def __len__(self) -> int:
        return 2 * len(self.split)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        ex = self.split[int(index) // 2]
        return {"video": np.asarray(ex["target_rgb" if int(index) % 2 else "source_rgb"], np.uint8)}


class ArrayVideos:
    """A .npy of (N, T, H, W, 3) uint8 videos (memory-mapped), {"video": (T, H, W, 3)}."""

    def __init__(self, path: str):
        try:
            self.videos = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read a .npy of videos ({type(e).__name__}: {e})") from e
        if self.videos.ndim != 5 or self.videos.shape[-1] != 3 or self.videos.dtype != np.uint8:
            raise InputError(f"{path}: expected (N, T, H, W, 3) uint8 videos, found {self.videos.shape} "
                             f"{self.videos.dtype}")

    def __len__(self) -> int:
        return len(self.videos)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {"video": np.array(self.videos[int(index)])}


def make_source(data: VAEDataConfig):
    """The random-access source of {"video": (clip_frames, *clip_hw, 3) uint8} the config names."""
    if data.source == "synthetic":
        return SyntheticClips(data.num_examples, data.clip_frames, data.clip_hw, data.seed)
    if data.source == "array":
        return ArrayVideos(data.path)
    from star_jax.train.records import open_split

    return ClipVideos(open_split(data.path, data.split))


def random_crops(videos, rng, crop_frames: int, crop_hw: tuple[int, int], flip: bool):
    """videos (B, T, H, W, 3) -> (B, crop_frames, *crop_hw, 3): a uniform random window per
    video, mirrored left-right with probability 1/2 when `flip`."""
    b, t, h, w, c = videos.shape
    k_t, k_y, k_x, k_f = jax.random.split(rng, 4)
    starts = [jax.random.randint(k, (b,), 0, n - m + 1) for k, n, m in
              ((k_t, t, crop_frames), (k_y, h, crop_hw[0]), (k_x, w, crop_hw[1]))]
    size = (crop_frames, *crop_hw, c)
    crops = jax.vmap(lambda v, s0, s1, s2: jax.lax.dynamic_slice(v, (s0, s1, s2, 0), size))(videos, *starts)
    if flip:
        mirror = jax.random.bernoulli(k_f, 0.5, (b,))
        crops = jnp.where(mirror[:, None, None, None, None], crops[:, :, :, ::-1], crops)
    return crops


def to_signed(video_u8):
    """uint8 pixels -> float32 in [-1, 1] (the VAE's input range)."""
    return video_u8.astype(jnp.float32) / 127.5 - 1.0


def kl_divergence(dist: LatentDist):
    """KL(N(mean, exp(logvar)) || N(0, 1)) per latent element, same shape as dist.mean."""
    return 0.5 * (jnp.square(dist.mean) + jnp.exp(dist.logvar) - 1.0 - dist.logvar)


def psnr(mse, peak_to_peak: float = 2.0):
    """PSNR in dB of a mean squared error on signals with range `peak_to_peak`."""
    return 10.0 * jnp.log10(peak_to_peak ** 2 / jnp.maximum(mse, 1e-12))


def reconstruct(vae: WanVAE, params, video, rng=None):
    """video (B, 1 + 4k, H, W, 3) in [-1, 1] -> (reconstruction, LatentDist); decodes a
    posterior sample when `rng` is given, else the mean. Unrolled chunk loops (fast gradients
    on XLA:CPU, see `models.vae._scan`)."""
    dist, _ = encode_start(vae, params, video, unroll=True)
    z = dist.mean if rng is None else dist.sample(rng)
    return decode_start(vae, params, z, unroll=True)[0], dist


def reconstruction_loss(x, y, cfg: VAETrainConfig):
    """The pixel terms of the loss (module docstring) -> (loss (), {"l1", "mse"})."""
    err = y.astype(jnp.float32) - x.astype(jnp.float32)
    l1, mse = jnp.mean(jnp.abs(err)), jnp.mean(jnp.square(err))
    loss = cfg.l1 * l1 + cfg.mse * mse
    if cfg.grad:
        gy = jnp.mean(jnp.abs(err[:, :, 1:] - err[:, :, :-1]))
        gx = jnp.mean(jnp.abs(err[:, :, :, 1:] - err[:, :, :, :-1]))
        loss = loss + cfg.grad * (gy + gx)
    return loss, {"l1": l1, "mse": mse}


def vae_loss(vae: WanVAE, cfg: VAETrainConfig, data: VAEDataConfig, params, batch, rng):
    """The training loss on a batch {"video": (B, T, H, W, 3) uint8} (module docstring)."""
    k_crop, k_z = jax.random.split(rng)
    x = to_signed(random_crops(batch["video"], k_crop, data.crop_frames, data.crop_hw, data.flip))
    if not cfg.train_encoder:
        params = {k: jax.lax.stop_gradient(v) if k in ENCODER_PARAMS else v for k, v in params.items()}
    y, dist = reconstruct(vae, params, x, k_z if cfg.sample else None)
    loss, aux = reconstruction_loss(x, y, cfg)
    kl = jnp.mean(kl_divergence(dist))
    return loss + cfg.kl * kl, {**aux, "kl": kl, "psnr": psnr(aux["mse"]), "logvar": jnp.mean(dist.logvar)}


@functools.partial(jax.jit, static_argnums=0)
def posterior_mean(vae: WanVAE, params, videos_u8):
    """uint8 videos (B, 1 + 4k, H, W, 3) -> posterior means (B, 1 + k, H/8, W/8, z_dim)."""
    return encode_start(vae, params, to_signed(videos_u8))[0].mean


def latent_stats(vae: WanVAE, params, videos, batch: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and std (z_dim,) of the posterior means of `videos` (N, 1 + 4k, H, W, 3)
    uint8, accumulated in float64."""
    total, total_sq, count = 0.0, 0.0, 0
    for i in range(0, len(videos), batch):
        z = np.asarray(posterior_mean(vae, params, jnp.asarray(videos[i:i + batch])), np.float64)
        z = z.reshape(-1, vae.cfg.z_dim)
        total, total_sq, count = total + z.sum(0), total_sq + np.square(z).sum(0), count + len(z)
    if not count:
        raise InputError("latent statistics: no videos given")
    mean = total / count
    return mean, np.sqrt(np.maximum(total_sq / count - np.square(mean), 1e-12))


def vae_config(config) -> VAEConfig:
    """config.model.vae (VAEConfig fields) -> VAEConfig."""
    return section(VAEConfig, config.get("model", {}), "vae", "config.model")


def make_vae_task(config) -> Task:
    """config.model.vae (VAEConfig fields), config.data (VAEDataConfig), config.vae_train
    (VAETrainConfig) -> the VAE Task."""
    cfg = vae_config(config)
    data = section(VAEDataConfig, config, "data")
    train_cfg = section(VAETrainConfig, config, "vae_train")
    if not train_cfg.train_encoder and config.get("optim", {}).get("weight_decay", 0.0):
        raise InputError("config.vae_train.train_encoder=False needs config.optim.weight_decay=0: weight decay "
                         "would still move the frozen encoder's kernels")
    vae = WanVAE(cfg)
    spec = {"video": jax.ShapeDtypeStruct((data.clip_frames, *data.clip_hw, 3), jnp.uint8)}
    init = lambda rng: init_vae_params(vae, rng, *data.crop_hw)
    if train_cfg.init_from:
        from star_jax.checkpoint.storage import restore_params
        from star_jax.checkpoint.vae import check_vae_against_model

        start = restore_params(train_cfg.init_from, what="vae")
        check_vae_against_model(start, cfg)
        init = lambda rng: jax.tree_util.tree_map(jnp.asarray, start)
    return Task(name="vae", init=init, loss_fn=lambda p, b, r: vae_loss(vae, train_cfg, data, p, b, r),
                example_spec=spec, source=make_source(data), sections=("model", "data", "vae_train"))
