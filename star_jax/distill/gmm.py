"""DMD / JDMD on a known answer: 2-D Gaussian mixtures whose denoisers are analytic.

A mixture p = sum_k pi_k N(mu_k, S_k) noised as x_s = (1 - s) x + s eps is the mixture of
N(a mu_k, C_k), a = 1 - s, C_k = a^2 S_k + s^2 I, and its ideal x0 prediction is closed form:

    E[x | x_s] = sum_k r_k(x_s) (mu_k + a S_k C_k^-1 (x_s - a mu_k)),   r_k ∝ pi_k N(x_s; a mu_k, C_k)

(`mixture_x0`). The teachers are such mixtures. The student is `AffineMixtureGenerator`: a
latent categorical with the target's weights picks a component, whose affine map turns
N(0, I) noise into a sample, so its own distribution is again a mixture and its fake x0 can be
analytic (`critic="analytic"`) or learned (`critic="learned"`: a small MLP trained by flow
matching on the student's samples, `critic_ratio` critic updates per generator update, as
Self-Forcing does). Training (`train_dmd`) uses the production `jdmd_direction` (weight 0:
`dmd_direction`), `dmd_loss`, `sample_dmd_sigmas` and optax. `sliced_w2` (float64 NumPy)
measures how far samples are from the target. tests/distill/test_gmm.py asserts on it;
benchmarks/dmd_gmm.py tabulates it.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from star_jax.diffusion.flow_matching import FlowMatchingConfig, flow_matching_loss, noise_and_target
from star_jax.diffusion.schedule import x0_from_flow
from star_jax.distill.dmd import dmd_loss, jdmd_direction, sample_dmd_sigmas
from star_jax.errors import InputError


class GaussianMixture(NamedTuple):
    """weights (K,) summing to 1, means (K, 2), covs (K, 2, 2) symmetric positive definite (2-D only)."""

    weights: jnp.ndarray
    means: jnp.ndarray
    covs: jnp.ndarray


def mixture(weights, means, covs) -> GaussianMixture:
    """A float32 2-D GaussianMixture, checked: weights (K,) positive (normalised here), means (K, 2),
    covs (K, 2, 2)."""
    w, m, c = (np.asarray(a, np.float64) for a in (weights, means, covs))
    k = m.shape[0] if m.ndim == 2 else 0
    if w.shape != (k,) or m.shape != (k, 2) or c.shape != (k, 2, 2) or k == 0 or np.any(w <= 0):
        raise InputError(f"mixture: expected weights (K,) > 0, means (K, 2), covs (K, 2, 2), got "
                         f"{w.shape}, {m.shape}, {c.shape}")
    if np.any(np.linalg.eigvalsh(0.5 * (c + np.swapaxes(c, -1, -2))) <= 0):
        raise InputError("mixture: every covariance must be symmetric positive definite")
    return GaussianMixture(*(jnp.asarray(a, jnp.float32) for a in (w / w.sum(), m, c)))


def _affine_sample(rng, weights, means, factors, n: int) -> jnp.ndarray:
    """(n, 2): k ~ Cat(weights), z ~ N(0, I), x = means[k] + factors[k] z (differentiable in
    means and factors)."""
    k_cat, k_z = jax.random.split(rng)
    comp = jax.random.categorical(k_cat, jnp.log(weights), shape=(n,))
    z = jax.random.normal(k_z, (n, means.shape[1]), jnp.float32)
    return means[comp] + jnp.einsum("nij,nj->ni", factors[comp], z)


def sample_mixture(rng, gmm: GaussianMixture, n: int) -> jnp.ndarray:
    """(n, 2) float32 samples of the mixture."""
    return _affine_sample(rng, gmm.weights, gmm.means, jnp.linalg.cholesky(gmm.covs), n)


def mixture_x0(gmm: GaussianMixture, x_s, s) -> jnp.ndarray:
    """E[x | x_s] for x ~ gmm, x_s = (1 - s) x + s eps: x_s (B, 2), s (B,) -> (B, 2) float32
    (2x2 covariances inverted in closed form)."""
    x_s = jnp.asarray(x_s, jnp.float32)
    s = jnp.asarray(s, jnp.float32)[:, None, None, None]  # (B, 1, 1, 1) against (B, K, 2, 2)
    a = 1.0 - s
    eye = jnp.eye(gmm.means.shape[1], dtype=jnp.float32)
    cov_s = a ** 2 * gmm.covs[None] + s ** 2 * eye  # (B, K, 2, 2)
    resid = x_s[:, None, :] - a[..., 0] * gmm.means[None]  # (B, K, 2)
    det = cov_s[..., 0, 0] * cov_s[..., 1, 1] - cov_s[..., 0, 1] * cov_s[..., 1, 0]  # (B, K)
    adj = jnp.stack([jnp.stack([cov_s[..., 1, 1], -cov_s[..., 0, 1]], -1),
                     jnp.stack([-cov_s[..., 1, 0], cov_s[..., 0, 0]], -1)], -2)  # the 2x2 inverse * det
    sol = jnp.einsum("bkij,bkj->bki", adj, resid) / det[..., None]  # C_k^-1 (x_s - a mu_k)
    logdet = jnp.log(det)
    logits = jnp.log(gmm.weights)[None] - 0.5 * jnp.sum(resid * sol, -1) - 0.5 * logdet  # (B, K)
    post = jax.nn.softmax(logits, axis=-1)
    x0_k = gmm.means[None] + a[..., 0] * jnp.einsum("kij,bkj->bki", gmm.covs, sol)
    return jnp.sum(post[..., None] * x0_k, axis=1)


class AffineMixtureGenerator(NamedTuple):
    """The student: x = means[k] + scales[k] z, k ~ Cat(weights) (fixed), z ~ N(0, I).
    weights (K,); params: means (K, 2), scales (K, 2, 2)."""

    weights: jnp.ndarray

    def init(self, rng, dim: int = 2, mean_std: float = 1.0, scale: float = 1.0) -> dict:
        """Means ~ N(0, mean_std^2 I), scales = scale * I: the untrained student."""
        k = self.weights.shape[0]
        return {"means": mean_std * jax.random.normal(rng, (k, dim), jnp.float32),
                "scales": scale * jnp.broadcast_to(jnp.eye(dim, dtype=jnp.float32), (k, dim, dim))}

    def sample(self, params, rng, n: int) -> jnp.ndarray:
        """(n, 2) samples, differentiable in params."""
        return _affine_sample(rng, self.weights, params["means"], params["scales"], n)

    def distribution(self, params) -> GaussianMixture:
        """The student's distribution: the mixture (weights, means, scales scales^T)."""
        scales = params["scales"]
        return GaussianMixture(self.weights, params["means"], scales @ jnp.swapaxes(scales, -1, -2))


class FlowCritic(nn.Module):
    """The learned fake score: an MLP (x_s (B, 2), t (B,) in [0, 1000]) -> flow v (B, 2)."""

    hidden: int = 128
    depth: int = 3

    @nn.compact
    def __call__(self, x_s, t):
        s = (jnp.asarray(t, jnp.float32) / 1000.0)[:, None]
        freqs = jnp.pi * jnp.arange(1, 5, dtype=jnp.float32)
        h = jnp.concatenate([x_s.astype(jnp.float32), s, jnp.sin(s * freqs), jnp.cos(s * freqs)], axis=-1)
        for _ in range(self.depth):
            h = nn.silu(nn.Dense(self.hidden, dtype=jnp.float32)(h))
        return nn.Dense(x_s.shape[-1], dtype=jnp.float32)(h)


@dataclasses.dataclass(frozen=True)
class DMDToyConfig:
    """steps: generator updates of `batch` samples, Adam (betas b1, 0.999) with lr cosine-decayed
    to lr * lr_floor. shift / lo / hi: the DMD re-noising levels (`sample_dmd_sigmas`).
    jdmd_weight: w of `jdmd_direction` (needs a second teacher when > 0). critic: "analytic"
    (the student's own mixture, exact) or "learned" (`FlowCritic`, `critic_ratio` flow-matching
    updates per generator update at critic_lr, after `critic_warmup` updates on the untrained
    student's samples)."""

    steps: int = 1500
    batch: int = 512
    lr: float = 0.02
    lr_floor: float = 0.01
    b1: float = 0.0
    shift: float = 5.0
    lo: float = 0.02
    hi: float = 0.98
    jdmd_weight: float = 0.0
    critic: str = "analytic"
    critic_ratio: int = 5
    critic_lr: float = 1e-3
    critic_warmup: int = 1000
    critic_hidden: int = 128
    seed: int = 0

    def __post_init__(self):
        if self.critic not in ("analytic", "learned"):
            raise InputError(f"DMDToyConfig.critic: expected 'analytic' or 'learned', got {self.critic!r}")
        if min(self.steps, self.batch, self.critic_ratio) < 1 or self.critic_warmup < 0:
            raise InputError(f"DMDToyConfig: steps, batch, critic_ratio must be >= 1, warmup >= 0, got {self}")
        if not 0.0 <= self.jdmd_weight <= 1.0:
            raise InputError(f"DMDToyConfig.jdmd_weight: expected a value in [0, 1], got {self.jdmd_weight}")


class DMDToyResult(NamedTuple):
    """params: the student's final parameters; history: its parameters before the first and after
    every generator update (means (steps + 1, K, 2), scales (steps + 1, K, 2, 2));
    losses: (steps,) dmd_loss values."""

    params: dict
    history: dict
    losses: jnp.ndarray


def train_dmd(generator: AffineMixtureGenerator, params: dict, teacher: GaussianMixture, cfg: DMDToyConfig,
              teacher_m: GaussianMixture | None = None, direction=jdmd_direction) -> DMDToyResult:
    """Distils the analytic `teacher` (and, for JDMD, `teacher_m`) into the student by DMD.

    Each generator update: X = student samples; s = sample_dmd_sigmas; x_s = renoised sg(X);
    D = jdmd_direction(X, teacher x0, fake x0, teacher_m x0, fake x0, w) (w = 0: dmd_direction;
    one fake x0 serves both streams since the toy has no condition to drop); Adam on
    dmd_loss(X, D). `direction` (default `jdmd_direction`, same signature) lets a benchmark try
    another combination rule. Deterministic given cfg.seed."""
    if cfg.jdmd_weight > 0 and teacher_m is None:
        raise InputError("train_dmd: jdmd_weight > 0 needs teacher_m")
    n = cfg.batch
    critic = FlowCritic(cfg.critic_hidden)
    fm_cfg = FlowMatchingConfig(shift=cfg.shift, min_sigma=cfg.lo, max_sigma=cfg.hi, text_dropout=0.0)
    rng_init, rng_warm, rng_train = jax.random.split(jax.random.PRNGKey(cfg.seed), 3)
    sched = optax.cosine_decay_schedule(cfg.lr, cfg.steps, alpha=cfg.lr_floor)
    g_tx = optax.adam(sched, b1=cfg.b1, b2=0.999)
    c_tx = optax.adam(cfg.critic_lr, b1=0.9, b2=0.999)

    def fake_x0(gparams, cparams, x_s, s):
        if cfg.critic == "analytic":
            return mixture_x0(jax.lax.stop_gradient(generator.distribution(gparams)), x_s, s)
        return x0_from_flow(x_s, critic.apply(cparams, x_s, 1000.0 * s), s[:, None])

    def gen_loss(gparams, cparams, rng):
        k_x, k_s, k_e = jax.random.split(rng, 3)
        x = generator.sample(gparams, k_x, n)
        s = sample_dmd_sigmas(k_s, n, cfg.shift, cfg.lo, cfg.hi)
        x_s, _ = noise_and_target(jax.lax.stop_gradient(x), jax.random.normal(k_e, x.shape), s)
        x_fake = fake_x0(gparams, cparams, x_s, s)
        x_real_m = None if teacher_m is None else mixture_x0(teacher_m, x_s, s)
        d = direction(x, mixture_x0(teacher, x_s, s), x_fake, x_real_m, x_fake, cfg.jdmd_weight)
        return dmd_loss(x, d)

    def critic_update(carry, rng):
        gparams, cparams, c_opt = carry
        k_x, k_fm = jax.random.split(rng)
        x = jax.lax.stop_gradient(generator.sample(gparams, k_x, n))
        loss, grads = jax.value_and_grad(
            lambda cp: flow_matching_loss(lambda xs, t: critic.apply(cp, xs, t), x, k_fm, fm_cfg)[0])(cparams)
        updates, c_opt = c_tx.update(grads, c_opt, cparams)
        return (gparams, optax.apply_updates(cparams, updates), c_opt), loss

    def iteration(carry, rng):
        gparams, g_opt, cparams, c_opt = carry
        k_c, k_g = jax.random.split(rng)
        if cfg.critic == "learned":
            (_, cparams, c_opt), _ = jax.lax.scan(critic_update, (gparams, cparams, c_opt),
                                                  jax.random.split(k_c, cfg.critic_ratio))
        loss, grads = jax.value_and_grad(gen_loss)(gparams, cparams, k_g)
        updates, g_opt = g_tx.update(grads, g_opt, gparams)
        gparams = optax.apply_updates(gparams, updates)
        return (gparams, g_opt, cparams, c_opt), (gparams, loss)

    @jax.jit
    def run(gparams):
        dim = gparams["means"].shape[1]
        cparams = critic.init(rng_init, jnp.zeros((1, dim)), jnp.zeros((1,)))
        c_opt = c_tx.init(cparams)
        if cfg.critic == "learned" and cfg.critic_warmup:
            (_, cparams, c_opt), _ = jax.lax.scan(critic_update, (gparams, cparams, c_opt),
                                                  jax.random.split(rng_warm, cfg.critic_warmup))
        carry = (gparams, g_tx.init(gparams), cparams, c_opt)
        (gparams, *_), (history, losses) = jax.lax.scan(iteration, carry, jax.random.split(rng_train, cfg.steps))
        return gparams, history, losses

    final, history, losses = run(params)
    history = jax.tree.map(lambda first, rest: jnp.concatenate([first[None], rest]), params, history)
    return DMDToyResult(final, history, losses)


def sliced_w2(x, y, num_angles: int = 64) -> float:
    """Sliced 2-Wasserstein distance between equal-size 2-D sample sets x, y (N, 2), float64:
    sqrt of the mean over `num_angles` evenly spaced directions of the 1-D W2^2 of the projections."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 2 or x.shape[1] != 2:
        raise InputError(f"sliced_w2: expected two (N, 2) sample sets, got {x.shape} and {y.shape}")
    angles = np.pi * np.arange(num_angles) / num_angles
    dirs = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (A, 2)
    px, py = np.sort(x @ dirs.T, axis=0), np.sort(y @ dirs.T, axis=0)
    return float(np.sqrt(np.mean((px - py) ** 2)))
