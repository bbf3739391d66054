"""Flow matching against closed forms: the shift equals the scheduler's table, the loss equals a
float64 NumPy twin, its minimum on Gaussian data is the analytic conditional variance, the
Euler sampler with the exact velocity field lands on the data distribution, CFG mixes as
documented, and condition dropout zeroes exactly the dropped rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.diffusion.flow_matching import (
    FlowMatchingConfig,
    drop_condition,
    drop_mask,
    euler_sample,
    euler_sigmas,
    flow_matching_loss,
    sample_sigmas,
    shift_sigma,
)
from star_jax.diffusion.schedule import flow_match_timestep_table
from star_jax.errors import InputError


def test_shift_matches_the_scheduler_table():
    # schedule.py shifts linspace(1, 0, 1001)[:-1] (times 1000); the same levels through shift_sigma
    u = np.linspace(1.0, 0.0, 1001)[:-1]
    np.testing.assert_allclose(shift_sigma(u, 5.0) * 1000, flow_match_timestep_table(5.0)[:-1], rtol=1e-12)
    np.testing.assert_allclose(euler_sigmas(4, 5.0), [1.0, 15 / 16, 5 / 6, 5 / 8, 0.0], rtol=1e-12)


def test_sampled_levels_follow_the_shifted_uniform():
    cfg = FlowMatchingConfig(shift=3.0, min_sigma=0.02, max_sigma=0.98)
    s = np.asarray(sample_sigmas(jax.random.PRNGKey(0), 200_000, cfg), np.float64)
    assert s.min() == np.float32(0.02) and s.max() == np.float32(0.98)  # clamped (both ends are hit)
    # P(s <= q) = P(u <= shift^-1(q)), shift^-1(q) = q / (k - (k - 1) q)
    for q in (0.3, 0.6, 0.9):
        np.testing.assert_allclose(np.mean(s <= q), q / (3.0 - 2.0 * q), atol=4e-3)


def test_loss_equals_float64_twin():
    cfg = FlowMatchingConfig(shift=5.0)
    rng = jax.random.PRNGKey(3)
    x = jax.random.normal(jax.random.PRNGKey(1), (4, 3, 2, 2, 16))
    w = jnp.asarray(np.random.default_rng(0).normal(size=(16,)), jnp.float32)
    predict = lambda xs, t: xs * w + t[:, None, None, None, None] / 1000.0
    loss, aux = flow_matching_loss(predict, x, rng, cfg)

    k_sigma, k_noise = jax.random.split(rng)  # the documented draw order
    s = np.asarray(sample_sigmas(k_sigma, 4, cfg), np.float64)
    eps = np.asarray(jax.random.normal(k_noise, x.shape), np.float64)
    x64 = np.asarray(x, np.float64)
    sb = s[:, None, None, None, None]
    xs = (1 - sb) * x64 + sb * eps
    pred = xs * np.asarray(w, np.float64) + sb
    per = np.mean((pred - (eps - x64)) ** 2, axis=(1, 2, 3, 4))
    np.testing.assert_allclose(np.asarray(aux["sigma"]), s, rtol=1e-7)
    np.testing.assert_allclose(np.asarray(aux["loss_per_example"]), per, rtol=2e-5)
    np.testing.assert_allclose(float(loss), per.mean(), rtol=2e-5)

    # weights: mean over the weighted elements only
    mask = (np.arange(16) < 4).astype(np.float32)
    lw, auxw = flow_matching_loss(predict, x, rng, cfg, weight=mask)
    np.testing.assert_allclose(np.asarray(auxw["loss_per_example"]),
                               np.mean((pred - (eps - x64))[..., :4] ** 2, axis=(1, 2, 3, 4)), rtol=2e-5)


def exact_velocity(mu, tau):
    """E[eps - x | x_s] for x ~ N(mu, tau^2), eps ~ N(0, 1): a linear function of x_s."""

    def v(xs, s):
        var = (1 - s) ** 2 * tau**2 + s**2
        cov = s - (1 - s) * tau**2  # Cov(eps - x, x_s)
        mean_xs = (1 - s) * mu
        return -mu + cov / var * (xs - mean_xs)

    return v


def test_minimum_loss_is_the_conditional_variance():
    """With the exact posterior velocity at a fixed level s the loss is Var(eps - x | x_s) in
    closed form; any other predictor does worse."""
    mu, tau, s = 0.7, 0.5, 0.4
    cfg = FlowMatchingConfig(shift=1.0, min_sigma=s, max_sigma=s)  # every draw is s
    x = mu + tau * jax.random.normal(jax.random.PRNGKey(0), (400_000, 1))
    v = exact_velocity(mu, tau)
    loss, _ = flow_matching_loss(lambda xs, t: v(xs, t[:, None] / 1000.0), x, jax.random.PRNGKey(1), cfg)
    var_xs = (1 - s) ** 2 * tau**2 + s**2
    closed = (1 + tau**2) - (s - (1 - s) * tau**2) ** 2 / var_xs
    np.testing.assert_allclose(float(loss), closed, rtol=1e-2)
    worse, _ = flow_matching_loss(lambda xs, t: 1.1 * v(xs, t[:, None] / 1000.0), x, jax.random.PRNGKey(1), cfg)
    assert float(worse) > float(loss) * 1.001


def euler_affine_twin(mu, tau, num_steps, shift):
    """float64: the exact field is affine in x, so Euler maps noise to a * noise + b."""
    sig = euler_sigmas(num_steps, shift)
    a, b = 1.0, 0.0
    for s, sn in zip(sig[:-1], sig[1:]):
        k = (s - (1 - s) * tau**2) / ((1 - s) ** 2 * tau**2 + s**2)
        a, b = a + (sn - s) * k * a, b + (sn - s) * (-mu + k * (b - (1 - s) * mu))
    return a, b


def test_euler_with_exact_field_reaches_the_data_distribution():
    """Euler steps equal a float64 twin, and converge to N(mu, tau^2) as the steps grow."""
    mu, tau = -1.5, 0.3
    v = exact_velocity(mu, tau)
    noise = jax.random.normal(jax.random.PRNGKey(0), (1000, 1))
    errors = []
    for n in (50, 200, 1000):
        x = np.asarray(euler_sample(lambda xs, t: v(xs, t[:, None] / 1000.0), noise, num_steps=n, shift=3.0))
        a, b = euler_affine_twin(mu, tau, n, 3.0)
        np.testing.assert_allclose(x, a * np.asarray(noise, np.float64) + b, rtol=1e-4, atol=1e-4)
        assert b == pytest.approx(mu, abs=1e-9)
        errors.append(abs(a - tau))
    assert errors[0] > errors[1] > errors[2] and errors[2] < 0.005 * tau  # first order: ~1/n


def test_guidance_mixes_conditional_and_unconditional():
    """Constant fields: x(0) = noise - (v_u + s (v_c - v_u)), whatever the steps and shift."""
    noise = jnp.zeros((2, 3))
    vc, vu = 2.0, -1.0
    x = euler_sample(lambda x, t: jnp.full_like(x, vc), noise, num_steps=7, shift=5.0, cfg_scale=3.0,
                     predict_uncond=lambda x, t: jnp.full_like(x, vu))
    np.testing.assert_allclose(np.asarray(x), -(vu + 3.0 * (vc - vu)), rtol=1e-5)


def test_condition_dropout():
    keep = drop_mask(jax.random.PRNGKey(0), 100_000, 0.1)
    np.testing.assert_allclose(float(jnp.mean(keep)), 0.1, atol=4e-3)
    x = jnp.arange(1, 13, dtype=jnp.float32).reshape(4, 3)
    d = jnp.array([True, False, True, False])
    y = np.asarray(drop_condition(x, d))
    np.testing.assert_array_equal(y[[0, 2]], 0.0)
    np.testing.assert_array_equal(y[[1, 3]], np.asarray(x)[[1, 3]])


@pytest.mark.parametrize("kwargs", [dict(shift=0.0), dict(min_sigma=0.5, max_sigma=0.2), dict(text_dropout=1.5)])
def test_bad_settings_are_input_errors(kwargs):
    with pytest.raises(InputError, match="flow matching"):
        FlowMatchingConfig(**kwargs)
