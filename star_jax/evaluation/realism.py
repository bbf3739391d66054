"""A realism distance for generated frames that needs no downloaded weights: the Frechet distance
between Gaussian fits of local texture and colour statistics of two sets of frames.

    d = realism_distance(generated, real)        # frames (..., H, W, 3) in [0, 1] or uint8; 0 = alike
    a, b = patch_features(generated), patch_features(real)       # (N, 12) float64, one row per patch
    d = frechet_distance(*gaussian_stats(a), *gaussian_stats(b))

Why this measure. FID's Inception features cannot be downloaded here, and what separates our
"real" (textured) appearance from the flat-shaded one, or a sharp generator from a blurry one, is
local texture: how much energy a surface carries at fine, middle and coarse scales, and its
colours. So each frame is cut into P x P pixel patches (P = 16: a 96 x 160 frame gives 6 x 10
patches; rows and columns past a multiple of P are dropped) and each patch becomes 12 numbers:
    colour mean (3)     the patch's mean R, G, B, times `color_weight` (5)
    colour contrast (3) log(std + eps_std) of R, G, B over the patch (eps_std 0.01)
    band energies (2S)  on luma (0.299 R + 0.587 G + 0.114 B) box-downsampled by 2^s, s < S (3):
                        log(mean |gradient|^2 + eps) and log(mean Laplacian^2 + eps) over the
                        patch (forward differences and the 4-neighbour Laplacian, edges
                        replicated; eps = (2/255)^2, so uint8 quantisation noise reads as flat)
The band energies are a coarse local power spectrum (a Laplacian pyramid's energy per patch):
flat shading empties the fine bands inside faces, blur empties them progressively (so the distance
grows with the blur sigma), noise fills them. Logs and the colour weight put every feature on a
scale of a few units, so no group dominates and the measure is a fixed function of the frames
(no whitening by either set, which would make it asymmetric).

Frechet distance of N(mu1, S1) and N(mu2, S2) (the squared 2-Wasserstein distance, as FID):
    |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr (S1^1/2 S2 S1^1/2)^1/2
computed in float64 with symmetric eigendecompositions (S1^1/2 from eigh, the trace from the
eigenvalues of the symmetric PSD S1^1/2 S2 S1^1/2, negatives from round-off clipped to 0), which
equals tr (S1 S2)^1/2 and is symmetric in its arguments. Covariances are the unbiased sample
covariances (N - 1). Like FID it has a positive finite-sample bias: two disjoint halves of one
set of frames score small but not 0 (compare against that floor, and use the same number of frames
for the methods of one table).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from star_jax.errors import InputError

LUMA = np.array([0.299, 0.587, 0.114], np.float64)


@dataclasses.dataclass(frozen=True)
class RealismConfig:
    """patch: side P in pixels (a multiple of 2^(scales - 1)); scales: S luma scales; eps: energy
    floor; eps_std: contrast floor; color_weight: the colour means' factor."""

    patch: int = 16
    scales: int = 3
    eps: float = (2.0 / 255.0) ** 2
    eps_std: float = 0.01
    color_weight: float = 5.0

    def __post_init__(self):
        if self.scales < 1 or self.patch < 1 or self.patch % (2 ** (self.scales - 1)):
            raise ValueError(f"RealismConfig: patch {self.patch} must be a positive multiple of 2^(scales - 1), "
                             f"scales {self.scales} >= 1")
        if not (self.eps > 0 and self.eps_std > 0 and self.color_weight > 0):
            raise ValueError(f"RealismConfig: eps, eps_std and color_weight must be positive, got {self}")

    @property
    def num_features(self) -> int:
        return 6 + 2 * self.scales


def _frames(x, name: str) -> np.ndarray:
    """(..., H, W, 3) uint8 or float in [0, 1] -> (N, H, W, 3) float64."""
    x = np.asarray(x)
    if x.ndim < 3 or x.shape[-1] != 3:
        raise InputError(f"realism: {name} must be RGB frames (..., H, W, 3), got shape {x.shape}")
    if x.dtype == np.uint8:
        x = x.astype(np.float64) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)
    else:
        raise InputError(f"realism: {name} must be uint8 or float frames in [0, 1], got dtype {x.dtype}")
    if not np.all(np.isfinite(x)):
        raise InputError(f"realism: {name} has non-finite values")
    return x.reshape(-1, *x.shape[-3:])


def _patch_mean(x: np.ndarray, p: int) -> np.ndarray:
    """(N, H, W, ...) with H, W multiples of p -> (N, H/p, W/p, ...): the mean over each p x p patch."""
    n, h, w = x.shape[:3]
    return x.reshape(n, h // p, p, w // p, p, *x.shape[3:]).mean(axis=(2, 4))


def _band_energies(y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Luma (N, H, W) -> per-pixel |forward gradient|^2 and 4-neighbour Laplacian^2, edges replicated."""
    e = np.pad(y, ((0, 0), (1, 1), (1, 1)), mode="edge")
    c = e[:, 1:-1, 1:-1]
    gx, gy = e[:, 1:-1, 2:] - c, e[:, 2:, 1:-1] - c
    lap = e[:, 1:-1, 2:] + e[:, 1:-1, :-2] + e[:, 2:, 1:-1] + e[:, :-2, 1:-1] - 4.0 * c
    return gx * gx + gy * gy, lap * lap


def patch_features(frames, cfg: RealismConfig = RealismConfig()) -> np.ndarray:
    """Frames (..., H, W, 3) in [0, 1] (or uint8) -> (N, num_features) float64, one row per P x P
    patch of every frame (see the module docstring for the columns)."""
    x = _frames(frames, "frames")
    p = cfg.patch
    h, w = (x.shape[1] // p) * p, (x.shape[2] // p) * p
    if h == 0 or w == 0:
        raise InputError(f"realism: frames of {x.shape[1]}x{x.shape[2]} pixels are smaller than one {p}x{p} patch")
    x = x[:, :h, :w]
    patches = x.reshape(x.shape[0], h // p, p, w // p, p, 3)
    cols = [cfg.color_weight * patches.mean(axis=(2, 4)), np.log(patches.std(axis=(2, 4)) + cfg.eps_std)]
    y = x @ LUMA
    for s in range(cfg.scales):
        if s:
            y = _patch_mean(y, 2)
        grad, lap = _band_energies(y)
        q = p >> s
        cols += [np.log(_patch_mean(grad, q) + cfg.eps)[..., None], np.log(_patch_mean(lap, q) + cfg.eps)[..., None]]
    return np.concatenate(cols, axis=-1).reshape(-1, cfg.num_features)


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(N, D) features -> (mean (D,), unbiased covariance (D, D)) float64; N >= 2."""
    f = np.asarray(features, np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise InputError(f"realism: need (N >= 2, D) features for a Gaussian fit, got shape {f.shape}")
    return f.mean(axis=0), np.atleast_2d(np.cov(f, rowvar=False))


def _sqrt_psd(s: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh((s + s.T) / 2.0)
    return (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """The Frechet (squared 2-Wasserstein) distance between N(mu1, cov1) and N(mu2, cov2), float64."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    c1, c2 = np.atleast_2d(np.asarray(cov1, np.float64)), np.atleast_2d(np.asarray(cov2, np.float64))
    d = mu1.shape[0]
    if mu1.shape != (d,) or mu2.shape != (d,) or c1.shape != (d, d) or c2.shape != (d, d):
        raise InputError(f"frechet_distance: means (D,) and covariances (D, D) of one D, got {mu1.shape}, "
                         f"{c1.shape}, {mu2.shape}, {c2.shape}")
    r = _sqrt_psd(c1)
    m = r @ c2 @ r
    cross = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((m + m.T) / 2.0), 0.0, None)))
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(c1) + np.trace(c2) - 2.0 * cross)


def realism_distance(frames, reference, cfg: RealismConfig = RealismConfig()) -> float:
    """Frechet distance between the patch-feature Gaussians of `frames` and of `reference`
    (each (..., H, W, 3) in [0, 1] or uint8; the sizes may differ). 0 for identical sets."""
    return frechet_distance(*gaussian_stats(patch_features(frames, cfg)),
                            *gaussian_stats(patch_features(reference, cfg)))
