"""Separable resampling with PyTorch's `F.interpolate` coordinates, as static gather taps.

Each axis is resampled by `resample_axis(x, axis, taps)`: out[i] = sum_k w[i, k] * x[idx[i, k]],
with (idx, w) built once in NumPy for the static sizes, so the jitted graph is a few gathers and
multiply-adds (no dense interpolation matrices).

- `bilinear_taps(n_in, n_out)`: `mode="bilinear", align_corners=True` (the DPT head's upsampling).
- `bicubic_taps(n_in, n_out, scale)`: `mode="bicubic", align_corners=False, antialias=False` with an
  explicit `scale_factor` (the ViT's position-table interpolation): source x = (i + 0.5) / scale - 0.5,
  Keys' cubic with a = -0.75, taps clamped to the border, as ATen's upsample_bicubic2d.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np


def bilinear_taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    """(idx, w), each (n_out, 2), for align_corners=True linear interpolation."""
    scale = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    src = np.float32(scale) * np.arange(n_out, dtype=np.float32)
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    return np.stack([i0, i1], 1), np.stack([1 - frac, frac], 1).astype(np.float32)


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    t = np.abs(t)
    near = ((a + 2) * t - (a + 3)) * t * t + 1
    far = ((a * t - 5 * a) * t + 8 * a) * t - 4 * a
    return np.where(t <= 1, near, np.where(t < 2, far, 0.0))


def bicubic_taps(n_in: int, n_out: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(idx, w), each (n_out, 4), for align_corners=False bicubic with `scale_factor=scale`."""
    src = (np.arange(n_out, dtype=np.float64) + 0.5) / scale - 0.5
    base = np.floor(src)
    frac = src - base
    offsets = np.arange(-1, 3)
    idx = np.clip(base[:, None].astype(np.int64) + offsets[None], 0, n_in - 1)
    w = _cubic(frac[:, None] - offsets[None])
    return idx, w.astype(np.float32)


def resample_axis(x: jnp.ndarray, axis: int, taps: tuple[np.ndarray, np.ndarray]) -> jnp.ndarray:
    """x resampled along `axis` by static taps (idx, w) of shape (n_out, K)."""
    idx, w = taps
    axis = axis % x.ndim
    shape = [1] * x.ndim
    shape[axis] = idx.shape[0]
    out = 0.0
    for k in range(idx.shape[1]):
        out = out + jnp.take(x, jnp.asarray(idx[:, k]), axis=axis) * jnp.asarray(w[:, k], x.dtype).reshape(shape)
    return out


def resize_bilinear(x: jnp.ndarray, size: tuple[int, int]) -> jnp.ndarray:
    """(..., h, w, C) -> (..., H, W, C), bilinear with align_corners=True."""
    h, w = x.shape[-3:-1]
    x = resample_axis(x, -3, bilinear_taps(h, size[0]))
    return resample_axis(x, -2, bilinear_taps(w, size[1]))
