"""A synthetic in-memory source of STAR teacher examples, for smoke runs and tests (the
procedural worlds and their precomputed latents live in `data_pipelines/`).

Example i (deterministic in (seed, i)), latents (n, h, w, C):
    ref     N(0, 1) "reference video" latents (C = 16)
    target  ref shifted by a whole-cell camera pan (dy, dx) in [-max_shift, max_shift], wrapping
    render  target where the pan keeps content in view, 0 in the cells it uncovers (the holes)
    mask    (n, h, w, 4) `mask_valid` where rendered, `mask_hole` in the holes (the packed-mask
            layout of StarConditions; the defaults +1 / -1 are the "inspatio-release" convention)
    text    (text_len, text_dim) N(0, 1), carries no information
So a model that copies the render where the mask is 1 and finds the wrapped-around content in
the reference elsewhere reaches zero error at low noise: the loss can fall far below its start.
"""

from __future__ import annotations

import numpy as np

from star_jax.errors import InputError

LATENT_CHANNELS = 16
MASK_CHANNELS = 4


class SyntheticStarSource:
    """A grain random-access source (`len`, `[i]`) of dicts target / ref / render / mask / text."""

    def __init__(self, num_examples: int, latent_frames: int, latent_hw: tuple[int, int], text_len: int,
                 text_dim: int, seed: int = 0, max_shift: int = 1, mask_hole: float = -1.0,
                 mask_valid: float = 1.0):
        if num_examples < 1 or latent_frames < 1 or min(latent_hw) < 1 or text_len < 1 or text_dim < 1:
            raise InputError(f"synthetic data: sizes must be >= 1, got num_examples={num_examples}, latent_frames="
                             f"{latent_frames}, latent_hw={tuple(latent_hw)}, text_len={text_len}, text_dim={text_dim}")
        self.num_examples, self.latent_frames = num_examples, latent_frames
        self.latent_hw, self.text_len, self.text_dim = tuple(latent_hw), text_len, text_dim
        self.seed, self.max_shift = seed, max_shift
        self.mask_hole, self.mask_valid = float(mask_hole), float(mask_valid)

    def __len__(self) -> int:
        return self.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < self.num_examples:
            raise IndexError(f"synthetic data: index {index} out of range [0, {self.num_examples})")
        rng = np.random.default_rng([self.seed, index])
        n, (h, w) = self.latent_frames, self.latent_hw
        ref = rng.standard_normal((n, h, w, LATENT_CHANNELS), dtype=np.float32)
        dy, dx = (int(v) for v in rng.integers(-self.max_shift, self.max_shift + 1, size=2))
        target = np.roll(ref, (dy, dx), axis=(1, 2))
        valid = np.ones((n, h, w), np.float32)
        for axis, d in ((1, dy), (2, dx)):
            holes = [slice(None)] * 3
            holes[axis] = slice(0, d) if d > 0 else slice(d, None) if d < 0 else slice(0, 0)
            valid[tuple(holes)] = 0.0
        text = rng.standard_normal((self.text_len, self.text_dim), dtype=np.float32)
        mask = np.where(valid > 0, self.mask_valid, self.mask_hole).astype(np.float32)
        return {"target": target, "ref": ref, "render": target * valid[..., None],
                "mask": np.repeat(mask[..., None], MASK_CHANNELS, axis=-1), "text": text}
