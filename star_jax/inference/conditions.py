"""STAR conditioning latents: the reference video, its render into the target cameras, and the
render's validity mask, all at latent resolution and aligned frame for frame.

DiT input per generated block (36 channels, in this order):
    [ noisy latent (16) | mask latent (4) | rendered-view latent (16) ]
and each context pass sees [ clean latent (16) | zeros (20) ].

A `Conditioning` convention says how a render and its mask become those inputs; it belongs to
the weights (a checkpoint stores its name, see `star_jax.inference.model`), so converted and
trained models each see what they were trained on. Four are named:

  "inspatio-release" (the default): what the InSpatio-World release feeds its DiT
      (utils/render_warper.py `convert_mask_video`, datasets/test_dataset.py). The pixel mask
      (True where a point landed) becomes -1 for holes and +1 for rendered pixels, and is resized
      to (H/8, W/8) by bilinear interpolation, align_corners=False, no antialiasing: for the
      factor 8 that samples the centre of each 8x8 cell, i.e. the mean of its 4 centre pixels
      (values in {-1, -0.5, 0, 0.5, 1}). Renders come from the release's point renderer
      (`warp_recipe("inspatio-release")`: 2x supersampling, 5x5 footprint, area downsampling).
  "inspatio-1.5": what the InSpatio-World 1.5 release feeds its DiT (pipeline/render_scene.py,
      datasets/utils.py): renders from its bilinear soft-depth splat (`warp_recipe("inspatio-1.5")`),
      the mask encoded as the 1.0 release's (its `iter_mask_latents` thresholds at 127.5, maps to
      +-1 and resizes bilinearly to /8: the centre 2x2 of each cell).
  "star-jax-v0": this codebase before issue 13: holes 0, rendered 1, each cell the mean of all
      its 64 pixels (the covered fraction), renders splatted at output resolution.
  "star-jax-v1": the crack-free triangle-mesh render (`warp_recipe("star-jax-v1")`, cut at depth
      edges) with the release's mask encoding: for models trained here from now on.

Both encodings are the same computation with different numbers (hole / valid values, the side of
the centred window each cell averages). Then the Wan frame packing: the first frame is repeated
4 times, every following group of 4 frames becomes the 4 channels of one latent frame (frame
1 + 4k + c -> latent frame 1 + k, channel c).

The releases round-trip the render through H.264 (crf 18; 1.0 also the mask, 1.5 writes the mask
losslessly) as uint8 (truncated) before encoding and threshold the decoded mask at 0.5. star-jax
feeds the float render and the exact mask: the codec would only add its noise and a -0.5/255 bias,
and skipping it keeps renders reproducible and the parity tests exact.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
from flax import struct

from star_jax.errors import InputError
from star_jax.geometry.warp import WarpRecipe, warp_recipe
from star_jax.models.vae import WanVAE, encode, normalize_latents

MASK_CHANNELS = 4


@dataclasses.dataclass(frozen=True)
class Conditioning:
    """A conditioning convention (see the module docstring): mask values for holes and rendered
    pixels, the centred window x window pixels of each 8x8 cell that the cell averages, and the
    warp mode that renders the reference."""

    name: str
    mask_hole: float
    mask_valid: float
    mask_window: int
    warp_mode: str

    def warp_recipe(self, point_size: int = 2) -> WarpRecipe:
        return warp_recipe(self.warp_mode, point_size)

    def metadata(self, point_size: int = 2) -> dict:
        return {"convention": self.name, "mask": {"hole": self.mask_hole, "valid": self.mask_valid,
                                                  "window": self.mask_window},
                "warp": self.warp_recipe(point_size).metadata()}


INSPATIO_RELEASE = Conditioning("inspatio-release", -1.0, 1.0, 2, "inspatio-release")
INSPATIO_15 = Conditioning("inspatio-1.5", -1.0, 1.0, 2, "inspatio-1.5")
STAR_JAX_V0 = Conditioning("star-jax-v0", 0.0, 1.0, 8, "star-jax-v0")
STAR_JAX_V1 = Conditioning("star-jax-v1", -1.0, 1.0, 2, "star-jax-v1")
CONVENTIONS = {c.name: c for c in (INSPATIO_RELEASE, INSPATIO_15, STAR_JAX_V0, STAR_JAX_V1)}
DEFAULT_CONDITIONING = INSPATIO_RELEASE.name


def get_conditioning(name: str | Conditioning) -> Conditioning:
    """The convention of that name (a `Conditioning` passes through)."""
    if isinstance(name, Conditioning):
        return name
    if name not in CONVENTIONS:
        raise InputError(f"conditioning convention {name!r}: expected one of {', '.join(CONVENTIONS)}")
    return CONVENTIONS[name]


class StarConditions(struct.PyTreeNode):
    """Per latent frame conditions, (B, n, h, w, C): `ref` and `render` normalised VAE latents
    (C = 16), `mask` the packed validity mask (C = 4)."""

    ref: jnp.ndarray
    render: jnp.ndarray
    mask: jnp.ndarray

    @property
    def num_latent_frames(self) -> int:
        return self.ref.shape[1]

    def frames(self, start: int, stop: int) -> "StarConditions":
        return StarConditions(self.ref[:, start:stop], self.render[:, start:stop], self.mask[:, start:stop])


def mask_to_latent(mask, spatial_factor: int = 8, temporal_factor: int = 4, first: bool = True,
                   convention: str | Conditioning = DEFAULT_CONDITIONING):
    """Pixel validity mask (B, 1 + 4k, H, W) bool -> (B, 1 + k, H/8, W/8, 4) float32, encoded by
    `convention` (default: the release's, values in [-1, 1]).
    `first=False`: the frames continue a stream, (B, 4k, H, W) -> (B, k, H/8, W/8, 4)."""
    c = get_conditioning(convention)
    if mask.ndim != 4:
        raise ValueError(f"mask must be (B, T, H, W), got shape {tuple(mask.shape)}")
    b, t, h, w = mask.shape
    f = spatial_factor
    if (t - int(first)) % temporal_factor or t < int(first) or h % f or w % f:
        lead = "1 + " if first else ""
        raise ValueError(f"mask (B, T, H, W) = {tuple(mask.shape)}: T must be {lead}{temporal_factor}k and H, W "
                         f"multiples of {f}")
    if not 1 <= c.mask_window <= f or (f - c.mask_window) % 2:
        raise ValueError(f"convention {c.name!r}: window {c.mask_window} must centre in a {f}x{f} cell")
    lo = (f - c.mask_window) // 2
    m = jnp.where(mask, jnp.float32(c.mask_valid), jnp.float32(c.mask_hole))
    m = m.reshape(b, t, h // f, f, w // f, f)[:, :, :, lo:lo + c.mask_window, :, lo:lo + c.mask_window]
    m = m.mean(axis=(3, 5))
    if first:
        m = jnp.concatenate([jnp.repeat(m[:, :1], temporal_factor, axis=1), m[:, 1:]], axis=1)
    m = m.reshape(b, -1, temporal_factor, h // f, w // f)
    return m.transpose(0, 1, 3, 4, 2)


def encode_conditions(vae: WanVAE, vae_params, reference, renders, masks,
                      convention: str | Conditioning = DEFAULT_CONDITIONING) -> StarConditions:
    """reference, renders (B, 1 + 4k, H, W, 3) in [-1, 1] (holes in the render are -1, black);
    masks (B, 1 + 4k, H, W) bool -> StarConditions with n = 1 + k latent frames. Uses the latent
    means (no sampling), as at inference."""
    if reference.shape != renders.shape or masks.shape != renders.shape[:-1]:
        raise ValueError(f"reference {tuple(reference.shape)}, renders {tuple(renders.shape)} and masks "
                         f"{tuple(masks.shape)} must be (B, T, H, W, 3), (B, T, H, W, 3), (B, T, H, W)")
    cfg = vae.cfg
    ref = normalize_latents(encode(vae, vae_params, reference).mean, cfg)
    ren = normalize_latents(encode(vae, vae_params, renders).mean, cfg)
    return StarConditions(ref, ren, mask_to_latent(masks, cfg.spatial_factor, cfg.temporal_factor,
                                                   convention=convention))
