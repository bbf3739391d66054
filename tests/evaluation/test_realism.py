"""star_jax.evaluation.realism: the Frechet formula against closed forms and scipy's sqrtm in
float64, the patch features against a scipy / scikit-image twin, and the distance's behaviour on
procedural worlds: small for two halves of one distribution, large for flat-shaded vs textured
renderings of the same worlds, growing with blur, symmetric."""

import numpy as np
import pytest
import scipy.linalg
from scipy import ndimage
from skimage.transform import downscale_local_mean

from star_jax.errors import InputError
from star_jax.evaluation.realism import (
    RealismConfig,
    frechet_distance,
    gaussian_stats,
    patch_features,
    realism_distance,
)


def _spd(rng, d, rank=None):
    a = rng.standard_normal((d, rank or d))
    return a @ a.T + (1e-3 * np.eye(d) if rank is None else 0.0)


def test_frechet_one_dimensional_and_diagonal_closed_forms():
    assert frechet_distance([1.0], [[4.0]], [-2.0], [[9.0]]) == pytest.approx((1 + 2) ** 2 + (2 - 3) ** 2, abs=1e-12)
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(7), rng.standard_normal(7)
    a, b = rng.uniform(0.1, 3.0, 7), rng.uniform(0.1, 3.0, 7)
    want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("rank", [None, 3])  # full rank, and rank-deficient (singular) covariances
def test_frechet_matches_scipy_sqrtm_and_is_symmetric(rank):
    rng = np.random.default_rng(1)
    d = 12
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    c1, c2 = _spd(rng, d, rank), _spd(rng, d, rank)
    cross = np.real(scipy.linalg.sqrtm(c1 @ c2))
    want = np.sum((mu1 - mu2) ** 2) + np.trace(c1 + c2 - 2 * cross)
    got = frechet_distance(mu1, c1, mu2, c2)
    assert got == pytest.approx(want, rel=1e-6 if rank else 1e-9)  # sqrtm of a singular product is less exact
    assert frechet_distance(mu2, c2, mu1, c1) == pytest.approx(got, rel=1e-9)
    # 0 for one Gaussian (singular: sqrt of round-off eigenvalues ~1e-16 leaves ~1e-8 each)
    assert abs(frechet_distance(mu1, c1, mu1, c1)) < (1e-6 if rank else 1e-9) * np.trace(c1)


def test_gaussian_stats_and_bad_shapes():
    f = np.random.default_rng(2).standard_normal((50, 4))
    mu, cov = gaussian_stats(f)
    np.testing.assert_allclose(mu, f.mean(0), rtol=1e-12)
    np.testing.assert_allclose(cov, np.cov(f.T, ddof=1), rtol=1e-12)
    with pytest.raises(InputError, match="N >= 2"):
        gaussian_stats(f[:1])
    with pytest.raises(InputError, match="one D"):
        frechet_distance(mu, cov, mu[:3], cov[:3, :3])
    with pytest.raises(InputError, match=r"RGB frames \(\.\.\., H, W, 3\)"):
        patch_features(np.zeros((2, 32, 32, 4)))
    with pytest.raises(InputError, match="smaller than one 16x16 patch"):
        patch_features(np.zeros((2, 8, 64, 3)))


def _features_twin(img, cfg):
    """One frame (H, W, 3) float64 -> (patches, D) with scipy / scikit-image ops, patch by patch."""
    p = cfg.patch
    h, w = (img.shape[0] // p) * p, (img.shape[1] // p) * p
    img = img[:h, :w]
    y = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
    bands = []
    for s in range(cfg.scales):
        ys = downscale_local_mean(y, (2 ** s, 2 ** s))
        gx = np.diff(ys, axis=1, append=ys[:, -1:])
        gy = np.diff(ys, axis=0, append=ys[-1:])
        bands.append((gx ** 2 + gy ** 2, ndimage.laplace(ys, mode="nearest") ** 2))
    rows = []
    for i in range(h // p):
        for j in range(w // p):
            patch = img[i * p:(i + 1) * p, j * p:(j + 1) * p].reshape(-1, 3)
            row = list(cfg.color_weight * patch.mean(0)) + list(np.log(patch.std(0) + cfg.eps_std))
            for s, (g, lap) in enumerate(bands):
                q = p >> s
                cell = (slice(i * q, (i + 1) * q), slice(j * q, (j + 1) * q))
                row += [np.log(g[cell].mean() + cfg.eps), np.log(lap[cell].mean() + cfg.eps)]
            rows.append(row)
    return np.array(rows)


def test_patch_features_match_a_scipy_twin():
    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (2, 40, 56, 3), dtype=np.uint8)  # 2 x 3 patches, 8 rows / columns cropped
    frames[0, :, :20] = 128  # a flat region: its energies sit at the floor eps
    cfg = RealismConfig()
    got = patch_features(frames, cfg)
    want = np.concatenate([_features_twin(f / 255.0, cfg) for f in frames])
    assert got.shape == (12, 12)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(patch_features(frames.astype(np.float32) / 255, cfg), got, atol=1e-6)  # uint8 = /255
    small = RealismConfig(patch=8, scales=2)
    np.testing.assert_allclose(patch_features(frames, small), np.concatenate([_features_twin(f / 255.0, small)
                                                                              for f in frames]), rtol=1e-10)


@pytest.fixture(scope="module")
def worlds():
    """Source + target frames (3 each) of 12 procedural worlds, textured and flat-shaded (same
    seeds, scenes and cameras): (12, 6, 64, 112, 3) uint8 each. ~6 s."""
    from data_pipelines.worlds import WorldSpec, sample_world

    out = {}
    for appearance in ("textured", "flat"):
        spec = WorldSpec(height=64, width=112, num_frames=3, supersample=1, appearance=appearance)
        out[appearance] = np.stack([np.concatenate([e.source_rgb, e.target_rgb])
                                    for e in (sample_world(seed, spec) for seed in range(12))])
    return out


def test_realism_separates_flat_from_textured_and_grows_with_blur(worlds):
    tex, flat = worlds["textured"], worlds["flat"]
    a, b = tex[0::2], tex[1::2]  # disjoint worlds, one distribution
    same_worlds = realism_distance(tex[:, 0::2], tex[:, 1::2])  # alternate frames of the same worlds
    halves = realism_distance(a, b)
    flat_vs_tex = realism_distance(flat, tex)
    assert same_worlds < 0.5 and same_worlds < 0.03 * flat_vs_tex
    assert halves < 0.3 * flat_vs_tex
    assert realism_distance(a, flat[1::2]) > 3 * halves  # other worlds, flat: far more than other worlds, textured
    assert realism_distance(tex, flat) == pytest.approx(flat_vs_tex, rel=1e-9)  # symmetric
    assert realism_distance(tex, tex) == pytest.approx(0.0, abs=1e-9)

    blurred = [realism_distance(a, ndimage.gaussian_filter(b / 255.0, sigma=(0, 0, s, s, 0)))
               for s in (0.0, 0.5, 1.0, 2.0, 3.0)]
    assert blurred[0] == pytest.approx(halves, rel=1e-9)
    assert np.all(np.diff(blurred) > 0), blurred  # monotone in the blur strength
    assert blurred[-1] > 5 * halves
