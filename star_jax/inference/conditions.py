"""STAR conditioning latents: the reference video, its render into the target cameras, and the
render's validity mask, all at latent resolution and aligned frame for frame.

DiT input per generated block (36 channels, in this order):
    [ noisy latent (16) | mask latent (4) | rendered-view latent (16) ]
and each context pass sees [ clean latent (16) | zeros (20) ].

The mask latent packs the pixel mask the way Wan packs its conditioning masks: the first frame is
repeated 4 times, then every 4 frames become the 4 channels of one latent frame; spatially each
latent cell holds the fraction of its 8x8 pixels that received a point (1 = fully rendered).
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import struct

from star_jax.models.vae import WanVAE, encode, normalize_latents

MASK_CHANNELS = 4


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


def mask_to_latent(mask, spatial_factor: int = 8, temporal_factor: int = 4, first: bool = True):
    """Pixel validity mask (B, 1 + 4k, H, W) bool -> (B, 1 + k, H/8, W/8, 4) float32 in [0, 1].
    `first=False`: the frames continue a stream, (B, 4k, H, W) -> (B, k, H/8, W/8, 4)."""
    if mask.ndim != 4:
        raise ValueError(f"mask must be (B, T, H, W), got shape {tuple(mask.shape)}")
    b, t, h, w = mask.shape
    f = spatial_factor
    if (t - int(first)) % temporal_factor or t < int(first) or h % f or w % f:
        lead = "1 + " if first else ""
        raise ValueError(f"mask (B, T, H, W) = {tuple(mask.shape)}: T must be {lead}{temporal_factor}k and H, W "
                         f"multiples of {f}")
    m = mask.astype(jnp.float32).reshape(b, t, h // f, f, w // f, f).mean(axis=(3, 5))
    if first:
        m = jnp.concatenate([jnp.repeat(m[:, :1], temporal_factor, axis=1), m[:, 1:]], axis=1)
    m = m.reshape(b, -1, temporal_factor, h // f, w // f)
    return m.transpose(0, 1, 3, 4, 2)


def encode_conditions(vae: WanVAE, vae_params, reference, renders, masks) -> StarConditions:
    """reference, renders (B, 1 + 4k, H, W, 3) in [-1, 1] (holes in the render are -1, black);
    masks (B, 1 + 4k, H, W) bool -> StarConditions with n = 1 + k latent frames. Uses the latent
    means (no sampling), as at inference."""
    if reference.shape != renders.shape or masks.shape != renders.shape[:-1]:
        raise ValueError(f"reference {tuple(reference.shape)}, renders {tuple(renders.shape)} and masks "
                         f"{tuple(masks.shape)} must be (B, T, H, W, 3), (B, T, H, W, 3), (B, T, H, W)")
    cfg = vae.cfg
    ref = normalize_latents(encode(vae, vae_params, reference).mean, cfg)
    ren = normalize_latents(encode(vae, vae_params, renders).mean, cfg)
    return StarConditions(ref, ren, mask_to_latent(masks, cfg.spatial_factor, cfg.temporal_factor))
