"""Flow-matching training (the Wan / Self-Forcing convention), condition dropout for
classifier-free guidance, and the Euler sampler that goes with it (its CFG: `diffusion.guidance`).

    x_s = (1 - s) x + s eps,   s in [0, 1] the noise level,   t = 1000 s the DiT's time input
    target velocity v = eps - x,   so x = x_s - s v  (`schedule.x0_from_flow`)
    training levels: u ~ U(0, 1), s = k u / (1 + (k - 1) u) (timestep shift k), clamped

    loss, aux = flow_matching_loss(predict, x, rng, FlowMatchingConfig(shift=5.0))
    x = euler_sample(predict, noise, num_steps=50, shift=5.0)       # predict(x_s, t) -> v

`predict(x_s, t)` takes x_s (B, ...) and t (B,) float32 in [0, 1000] and returns v (B, ...).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.diffusion.guidance import apply_cfg
from star_jax.diffusion.schedule import add_noise, shift_sigma
from star_jax.errors import InputError

Predict = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


@dataclasses.dataclass(frozen=True)
class FlowMatchingConfig:
    """shift: the timestep shift k (5 for Wan at 480p). min_sigma / max_sigma clamp the sampled
    noise levels. text_dropout / render_dropout: the probability, per example, that the text
    (for classifier-free guidance) or the rendered view and its mask are replaced by zeros."""

    shift: float = 5.0
    min_sigma: float = 0.0
    max_sigma: float = 1.0
    text_dropout: float = 0.1
    render_dropout: float = 0.0
    num_train_timesteps: int = 1000

    def __post_init__(self):
        if self.shift <= 0:
            raise InputError(f"flow matching: shift must be > 0, got {self.shift}")
        if not 0.0 <= self.min_sigma <= self.max_sigma <= 1.0:
            raise InputError(f"flow matching: need 0 <= min_sigma <= max_sigma <= 1, got "
                             f"{self.min_sigma}, {self.max_sigma}")
        for name in ("text_dropout", "render_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise InputError(f"flow matching: {name} must be in [0, 1], got {getattr(self, name)}")


def sample_sigmas(rng, batch: int, cfg: FlowMatchingConfig) -> jnp.ndarray:
    """(batch,) float32 noise levels: uniform u, shifted, clamped to [min_sigma, max_sigma]."""
    u = jax.random.uniform(rng, (batch,), jnp.float32)
    return jnp.clip(shift_sigma(u, cfg.shift), cfg.min_sigma, cfg.max_sigma)


def _per_example(s, x):
    """(B,) -> (B, 1, ..., 1) to broadcast against x (B, ...)."""
    return s.reshape(s.shape + (1,) * (x.ndim - 1))


def noise_and_target(x, noise, sigma):
    """x, noise (B, ...); sigma (B,) -> (x_s, v) in float32: x_s = (1 - s) x + s eps, v = eps - x."""
    x, noise = x.astype(jnp.float32), noise.astype(jnp.float32)
    return add_noise(x, noise, _per_example(jnp.asarray(sigma, jnp.float32), x)), noise - x


def flow_matching_loss(predict: Predict, x, rng, cfg: FlowMatchingConfig, weight=None):
    """Mean squared error between `predict(x_s, 1000 s)` and the velocity eps - x.

    x (B, ...) clean data; `weight` (B, ...) or broadcastable, optional per-element weights
    (e.g. a validity mask; the mean is then over the weight). Returns (loss () float32, aux) with
    aux["sigma"] (B,) the levels drawn and aux["loss_per_example"] (B,)."""
    k_sigma, k_noise = jax.random.split(rng)
    sigma = sample_sigmas(k_sigma, x.shape[0], cfg)
    noise = jax.random.normal(k_noise, x.shape, jnp.float32)
    x_s, v = noise_and_target(x, noise, sigma)
    pred = predict(x_s, sigma * cfg.num_train_timesteps).astype(jnp.float32)
    err = jnp.square(pred - v)
    axes = tuple(range(1, x.ndim))
    if weight is None:
        per_example = jnp.mean(err, axis=axes)
    else:
        w = jnp.broadcast_to(jnp.asarray(weight, jnp.float32), err.shape)
        per_example = jnp.sum(err * w, axis=axes) / jnp.maximum(jnp.sum(w, axis=axes), 1e-8)
    return jnp.mean(per_example), {"sigma": sigma, "loss_per_example": per_example}


def drop_mask(rng, batch: int, rate: float) -> jnp.ndarray:
    """(batch,) bool: True where the condition is dropped (probability `rate` each)."""
    return jax.random.uniform(rng, (batch,)) < rate


def drop_condition(x, dropped):
    """x (B, ...) with the rows where dropped (B,) is True replaced by zeros (the null condition
    the sampler's unconditional branch sees)."""
    return jnp.where(_per_example(dropped, x), jnp.zeros_like(x), x)


def euler_sigmas(num_steps: int, shift: float) -> np.ndarray:
    """(num_steps + 1,) float64 noise levels from 1 to 0, uniform in u then shifted."""
    if num_steps < 1:
        raise InputError(f"euler sampler: num_steps must be >= 1, got {num_steps}")
    return shift_sigma(np.linspace(1.0, 0.0, num_steps + 1), shift)


def euler_sample(predict: Predict, noise, num_steps: int, shift: float = 5.0, cfg_scale: float = 1.0,
                 predict_uncond: Predict | None = None, num_train_timesteps: int = 1000):
    """Integrates dx/ds = v from s = 1 (x = noise) to s = 0 with `num_steps` Euler steps.

    With `predict_uncond` the velocity is classifier-free guided, v = v_u + cfg_scale (v_c - v_u)
    (`guidance.apply_cfg`; 1 gives the conditional model). Returns x (B, ...) float32."""
    sigmas = jnp.asarray(euler_sigmas(num_steps, shift), jnp.float32)
    b = noise.shape[0]

    def step(x, i):
        s, s_next = sigmas[i], sigmas[i + 1]
        t = jnp.full((b,), s * num_train_timesteps, jnp.float32)
        v = predict(x, t).astype(jnp.float32)
        if predict_uncond is not None:
            v_u = predict_uncond(x, t).astype(jnp.float32)
            v = apply_cfg(v, v_u, cfg_scale)
        return x + (s_next - s) * v, None

    x, _ = jax.lax.scan(step, noise.astype(jnp.float32), jnp.arange(num_steps))
    return x
