"""Flow-matching schedule of Wan / Self-Forcing, and the few-step "warped" schedule STAR samples with.

Conventions: sigma in [0, 1] is the noise level, timestep t = 1000 * sigma is what the DiT's time
embedding sees. x_t = (1 - sigma) x0 + sigma * noise; the model predicts the flow
v = noise - x0, so x0 = x_t - sigma * v.

The few-step schedule: nominal steps (1000, 750, 500, 250) are looked up in the flow-matching
scheduler's own 1000-entry timestep table (shift 5, `extra_one_step`: sigmas
linspace(1, 0, 1001)[:-1], shifted by s * sigma / (1 + (s - 1) sigma)) with a 0 appended:
t_used = table[1000 - t]. With shift 5 that gives t = 1000, 937.5, 833.3, 625.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp
import numpy as np


def shift_sigma(u, shift: float):
    """The timestep shift u -> k u / (1 + (k - 1) u): more time at high noise for k > 1."""
    return shift * u / (1.0 + (shift - 1.0) * u)


def flow_match_timestep_table(shift: float = 5.0, num_train_timesteps: int = 1000) -> np.ndarray:
    """(num_train_timesteps + 1,) float64: the shifted timesteps, descending, then a final 0."""
    sigmas = shift_sigma(np.linspace(1.0, 0.0, num_train_timesteps + 1)[:-1], shift)
    return np.concatenate([sigmas * num_train_timesteps, [0.0]])


class FewStepSchedule(NamedTuple):
    """Per denoising step i: the timestep fed to the model, its sigma, and the sigma x0 is
    re-noised to before step i + 1 (0 after the last step, so the last update is x = x0)."""

    timesteps: np.ndarray  # (S,) float32
    sigmas: np.ndarray  # (S,) float32
    next_sigmas: np.ndarray  # (S,) float32


def few_step_schedule(steps=(1000, 750, 500, 250), shift: float = 5.0,
                      num_train_timesteps: int = 1000) -> FewStepSchedule:
    steps = np.asarray(steps, np.int64)
    if steps.ndim != 1 or len(steps) == 0 or np.any(steps < 1) or np.any(steps > num_train_timesteps) \
            or np.any(np.diff(steps) >= 0):
        raise ValueError(f"denoising steps must be strictly decreasing in [1, {num_train_timesteps}], got {steps}")
    table = flow_match_timestep_table(shift, num_train_timesteps)
    t = table[num_train_timesteps - steps]
    sigmas = t / num_train_timesteps
    return FewStepSchedule(t.astype(np.float32), sigmas.astype(np.float32),
                           np.append(sigmas[1:], 0.0).astype(np.float32))


def x0_from_flow(x_t, flow, sigma):
    """x0 = x_t - sigma * v, in float32."""
    return x_t.astype(jnp.float32) - jnp.asarray(sigma, jnp.float32) * flow.astype(jnp.float32)


def add_noise(x0, noise, sigma):
    """x_sigma = (1 - sigma) x0 + sigma * noise, in float32."""
    sigma = jnp.asarray(sigma, jnp.float32)
    return (1.0 - sigma) * x0.astype(jnp.float32) + sigma * noise.astype(jnp.float32)
