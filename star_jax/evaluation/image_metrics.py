"""PSNR and SSIM of images or videos, over all pixels or over a region (a per-pixel mask), so that
"inside the render mask" and "in the holes" are the same call with a different mask.

    psnr(pred, target)                          # all pixels; images (..., H, W, C) in [0, 1]
    psnr(pred, target, region=valid)            # valid (..., H, W): the pixels that count
    ssim(pred, target, region=valid == 0)       # SSIM in the holes

Conventions (one number per call; a clip of T frames is pooled, not averaged per frame):
- Values are RGB (or any C channels) in [0, 1] (data range 1); uint8 inputs are divided by 255.
  Computed in float64 NumPy.
- PSNR = 10 log10(1 / MSE), the MSE pooled over every channel of every pixel in the region; inf
  when the MSE is 0, NaN when the region is empty.
- SSIM follows Wang et al. 2004: an 11x11 Gaussian window (sigma 1.5, normalised), K1 0.01, K2 0.03,
  population (biased) local variances, computed per colour channel on RGB (not on luma) and the
  channel maps averaged. The SSIM map is defined where the whole window lies inside the image
  ("valid" filtering, as the paper's reference code: an (H - 10) x (W - 10) map whose pixel (i, j)
  is centred on image pixel (i + 5, j + 5)). SSIM in a region = the mean of the map over the map
  pixels whose centre pixel is in the region; NaN when there is none. This equals scikit-image's
  `structural_similarity(..., gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
  data_range=1, channel_axis=-1)` for the full region (it crops the same 5-pixel border).
"""

from __future__ import annotations

import numpy as np

from star_jax.errors import InputError

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # an 11x11 window
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_float(x, name: str) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float64) / 255.0
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 or float images in [0, 1], got dtype {x.dtype}")
    return x.astype(np.float64)


def _check(pred, target, region):
    """-> pred, target (..., H, W, C) float64 and region (..., H, W) bool (all True when None)."""
    p, t = _as_float(pred, "pred"), _as_float(target, "target")
    if p.shape != t.shape or p.ndim < 3:
        raise InputError(f"image metrics: pred and target must be (..., H, W, C) of one shape, got "
                         f"{p.shape} and {t.shape}")
    if region is None:
        return p, t, np.ones(p.shape[:-1], bool)
    r = np.asarray(region)
    if r.shape != p.shape[:-1]:
        raise InputError(f"image metrics: region must be (..., H, W) = {p.shape[:-1]} like the images, got {r.shape}")
    return p, t, r.astype(bool)


def psnr(pred, target, region=None) -> float:
    """PSNR in dB of pred against target (..., H, W, C) in [0, 1] over `region` (..., H, W)."""
    p, t, r = _check(pred, target, region)
    n = np.count_nonzero(r)
    if n == 0:
        return float("nan")
    mse = np.sum(((p - t) ** 2)[r]) / (n * p.shape[-1])
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def gaussian_window(sigma: float = SSIM_SIGMA, radius: int = SSIM_RADIUS) -> np.ndarray:
    """The normalised 1-D Gaussian (2 radius + 1,) float64; the 2-D window is its outer product."""
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def _filter_valid(x: np.ndarray, g: np.ndarray) -> np.ndarray:
    """(..., H, W, C) -> (..., H - 2r, W - 2r, C): the separable window applied where it fits
    (OpenCV's separable filter per image, float64, when it is installed and C <= 4; else NumPy)."""
    k = g.shape[0]
    try:
        import cv2
    except ImportError:
        cv2 = None
    if cv2 is not None and x.shape[-1] <= 4:
        r = k // 2
        flat = x.reshape((-1,) + x.shape[-3:])
        out = np.stack([cv2.sepFilter2D(f, cv2.CV_64F, g, g, borderType=cv2.BORDER_CONSTANT)[r:-r, r:-r]
                        .reshape(f.shape[0] - 2 * r, f.shape[1] - 2 * r, f.shape[2]) for f in flat])
        return out.reshape(x.shape[:-3] + out.shape[-3:])
    rows = np.lib.stride_tricks.sliding_window_view(x, k, axis=-3)  # (..., H-2r, W, C, k)
    x = rows @ g
    cols = np.lib.stride_tricks.sliding_window_view(x, k, axis=-2)  # (..., H-2r, W-2r, C, k)
    return cols @ g


def ssim_map(pred, target) -> np.ndarray:
    """The SSIM map (..., H - 10, W - 10) of images (..., H, W, C) in [0, 1], channels averaged."""
    p, t, _ = _check(pred, target, None)
    if min(p.shape[-3:-1]) < 2 * SSIM_RADIUS + 1:
        raise InputError(f"ssim: images must be at least {2 * SSIM_RADIUS + 1} pixels on a side, got {p.shape}")
    g = gaussian_window()
    mu_p, mu_t = _filter_valid(p, g), _filter_valid(t, g)
    var_p = _filter_valid(p * p, g) - mu_p ** 2
    var_t = _filter_valid(t * t, g) - mu_t ** 2
    cov = _filter_valid(p * t, g) - mu_p * mu_t
    c1, c2 = SSIM_K1 ** 2, SSIM_K2 ** 2
    s = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p ** 2 + mu_t ** 2 + c1) * (var_p + var_t + c2))
    return s.mean(axis=-1)


def ssim(pred, target, region=None) -> float:
    """Mean SSIM of pred against target (..., H, W, C) in [0, 1] over the map pixels whose centre
    is in `region` (..., H, W) (see the module docstring)."""
    p, t, r = _check(pred, target, region)
    s = ssim_map(p, t)
    inner = r[..., SSIM_RADIUS:-SSIM_RADIUS, SSIM_RADIUS:-SSIM_RADIUS]
    if not inner.any():
        return float("nan")
    return float(np.mean(s[inner]))
