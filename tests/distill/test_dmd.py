"""star_jax.distill.dmd against float64 NumPy twins and closed forms: the normalised direction,
its guards, the loss whose gradient is D / N, the JDMD mix and the re-noising levels (the
teacher's CFG: tests/train/test_guidance.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.distill import dmd_direction, dmd_loss, jdmd_direction, sample_dmd_sigmas
from star_jax.errors import InputError

SHAPE = (3, 2, 4, 5)  # (B, T, H, C)-like: every non-batch axis is normalised over


def _arrays(seed, n=3):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=SHAPE).astype(np.float32) for _ in range(n)]


def _twin(x, x_real, x_fake):
    x, x_real, x_fake = (np.asarray(a, np.float64) for a in (x, x_real, x_fake))
    norm = np.mean(np.abs(x - x_real), axis=(1, 2, 3), keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (x_fake - x_real) / norm


def test_dmd_direction_matches_float64_twin():
    x, x_real, x_fake = _arrays(0)
    d = dmd_direction(x, x_real, x_fake)
    assert d.dtype == jnp.float32 and d.shape == SHAPE
    np.testing.assert_allclose(np.asarray(d), _twin(x, x_real, x_fake), rtol=1e-5, atol=1e-6)


def test_dmd_direction_is_normalised_per_sample():
    """Scaling one sample's |X - x_real| and x_fake - x_real by c leaves its D unchanged; the
    others' D do not depend on it; mean|D| = mean|x_fake - x_real| / mean|X - x_real|."""
    x, x_real, x_fake = _arrays(1)
    c = np.array([1.0, 7.0, 0.01], np.float32)[:, None, None, None]
    d = np.asarray(dmd_direction(x, x_real, x_fake))
    d_scaled = np.asarray(dmd_direction(x_real + c * (x - x_real), x_real, x_real + c * (x_fake - x_real)))
    np.testing.assert_allclose(d_scaled, d, rtol=2e-4, atol=1e-6)
    ratio = np.abs(x_fake - x_real).mean(axis=(1, 2, 3)) / np.abs(x - x_real).mean(axis=(1, 2, 3))
    np.testing.assert_allclose(np.abs(d).mean(axis=(1, 2, 3)), ratio, rtol=1e-5)


def test_dmd_direction_nonfinite_and_zero_normaliser_give_zero():
    x, x_real, x_fake = _arrays(2)
    x_fake[0, 0, 0, 0] = np.nan  # one NaN element: only it becomes 0
    x_real[1, 1, 2, 3] = np.inf  # an infinite teacher: the sample's normaliser is inf
    x[2] = x_real[2]  # a zero normaliser: the whole sample gets no direction
    d = np.asarray(dmd_direction(x, x_real, x_fake))
    assert np.all(np.isfinite(d))
    assert d[0, 0, 0, 0] == 0.0
    np.testing.assert_allclose(d[0].ravel()[1:], _twin(x, x_real, x_fake)[0].ravel()[1:], rtol=1e-5, atol=1e-6)
    assert np.all(d[1] == 0.0) and np.all(d[2] == 0.0)


def test_dmd_direction_rejects_mismatched_shapes():
    x, x_real, _ = _arrays(3)
    with pytest.raises(InputError, match="share one"):
        dmd_direction(x, x_real, x_real[:2])


def test_dmd_loss_gradient_is_direction_over_n():
    """d loss / dX = D / N with N = X.size, also when D is computed from X inside the loss (no
    gradient flows through the teacher, the critic or the normaliser); loss = 0.5 mean(D^2)."""
    x, x_real, x_fake = _arrays(4)
    d = dmd_direction(x, x_real, x_fake)
    g = jax.grad(dmd_loss)(jnp.asarray(x), d)
    np.testing.assert_allclose(np.asarray(g), np.asarray(d) / x.size, rtol=1e-6, atol=1e-9)
    g_inside = jax.grad(lambda xx: dmd_loss(xx, dmd_direction(xx, x_real, x_fake)))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(g_inside), np.asarray(d) / x.size, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(float(dmd_loss(x, d)), 0.5 * np.mean(np.asarray(d, np.float64) ** 2), rtol=1e-5)


def test_jdmd_direction_weights():
    x, xr_c, xf_c, xr_m, xf_m = _arrays(5, 5)
    np.testing.assert_array_equal(np.asarray(jdmd_direction(x, xr_c, xf_c, None, None, 0.0)),
                                  np.asarray(dmd_direction(x, xr_c, xf_c)))
    np.testing.assert_array_equal(np.asarray(jdmd_direction(x, xr_c, xf_c, xr_m, xf_m, 1)),
                                  np.asarray(dmd_direction(x, xr_m, xf_m)))
    w = 0.3
    f64 = lambda a: np.asarray(a, np.float64)
    raw = (1 - w) * (f64(xf_c) - f64(xr_c)) + w * (f64(xf_m) - f64(xr_m))
    norm = np.mean(np.abs(f64(x) - (1 - w) * f64(xr_c) - w * f64(xr_m)), axis=(1, 2, 3), keepdims=True)
    np.testing.assert_allclose(np.asarray(jdmd_direction(x, xr_c, xf_c, xr_m, xf_m, w)), raw / norm,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("weight", [-0.1, 1.5, float("nan"), "0.5", True, None])
def test_jdmd_direction_rejects_bad_weights(weight):
    x, xr, xf = _arrays(6)
    with pytest.raises(InputError, match="weight must be a number in"):
        jdmd_direction(x, xr, xf, xr, xf, weight)


def test_jdmd_direction_rejects_mismatched_streams():
    x, xr, xf = _arrays(7)
    with pytest.raises(InputError, match="share one"):
        jdmd_direction(x, xr, xf, xr[:2], xf[:2], 0.5)


def test_sample_dmd_sigmas_follow_the_shifted_clamped_law():
    """s = clip(5u / (1 + 4u), 0.02, 0.98): P(s <= y) = y / (5 - 4y) inside the clamp, an atom
    of 1 - 0.98 / 1.08 = 9.3% at 0.98 and one of 0.02 / 4.92 = 0.4% at 0.02."""
    s = np.asarray(sample_dmd_sigmas(jax.random.PRNGKey(0), 40000))
    assert s.shape == (40000,) and s.dtype == np.float32
    assert s.min() >= 0.02 and s.max() <= 0.98
    np.testing.assert_array_equal(s, np.asarray(sample_dmd_sigmas(jax.random.PRNGKey(0), 40000)))
    for y in (0.1, 0.3, 0.5, 0.7, 0.9):
        assert abs(np.mean(s <= y) - y / (5 - 4 * y)) < 0.01, y
    assert abs(np.mean(s == np.float32(0.98)) - (1 - 0.98 / 1.08)) < 0.006
    assert abs(np.mean(s == np.float32(0.02)) - 0.02 / 4.92) < 0.002
    s1 = np.asarray(sample_dmd_sigmas(jax.random.PRNGKey(1), 40000, shift=1.0, lo=0.0, hi=1.0))
    assert abs(np.mean(s1 <= 0.5) - 0.5) < 0.01  # shift 1: uniform

