"""Distribution matching distillation (DMD, as Self-Forcing trains it) and our JDMD.

Notation (REFERENCE.md): x_s = (1 - s) x + s eps, s in [0, 1], the DiT sees t = 1000 s and
predicts the flow v = eps - x, so its clean-sample estimate is x0_hat = x_s - s v.

**DMD.** The student's samples X ~ p_g are pulled toward the teacher's distribution p by
minimising the reverse KL, averaged over noise levels s: KL(p_g,s || p_s). Its gradient w.r.t. a
sample is the difference of the two scores at the re-noised sample,
    score_g(x_s) - score_p(x_s) = (1 - s) / s^2 * (x_fake - x_real),
where x_real = E_p[x | x_s] is the teacher's x0 prediction (with classifier-free guidance,
`diffusion.guidance.apply_cfg`) and x_fake = E_g[x | x_s] that of the critic, a second network trained by flow
matching on the student's own samples (it tracks p_g). Self-Forcing drops the s-dependent factor
and normalises per sample instead:
    D = (x_fake - x_real) / mean|X - x_real|            (`dmd_direction`)
    loss = 0.5 * mean((X - sg(X - D))^2),  dloss/dX = D / N   (`dmd_loss`)
so a gradient step moves X against D, toward the teacher's prediction.

**JDMD** (the paper's loss is not public; this design is ours). Two DMD streams act on the same
student sample X:
  - the conditional stream: the teacher T_c trained on synthetic (flat-shaded) pairs, and its
    critic, both see the student's condition (render + mask) and the text. It keeps the camera
    control that only synthetic pairs (with ground-truth targets) can teach.
  - the real-appearance stream: the teacher T_m trained on real (textured) videos, and its
    critic, both see the render dropped (zeros, all-hole mask). It pulls the appearance toward
    real videos, which have no paired render to learn control from.
Each stream has its own critic because a direction compares a fake and a real prediction of the
SAME conditioning: a critic that saw the render does not model p_g without it. Either teacher's
x_real may be guided (`apply_cfg`). With w the JDMD weight (a config value; 0 is plain DMD):
    D = ((1 - w) (x_fake_c - x_real_c) + w (x_fake_m - x_real_m)) / mean|X - x_real_w|,
    x_real_w = (1 - w) x_real_c + w x_real_m                       (`jdmd_direction`)
is, up to one positive factor per sample, the gradient of (1 - w) KL(p_g || p_c) +
w KL(p_g || p_m), minimised by the normalised geometric mixture p_c^(1-w) p_m^w / Z (for
Gaussians of equal covariance S: N((1 - w) mu_c + w mu_m, S), since noising then commutes with
the product; otherwise the noise levels compromise). One normaliser, not one per stream: mixing
separately normalised directions re-weights the streams sample by sample and moves the fixed
point (measured on two Gaussians: the student's variance x2-34, at w = 0.75 its mean at 0.96
of the way to T_m).
tests/distill/test_gmm.py proves these facts on 2-D mixtures with analytic denoisers;
benchmarks/results/dmd_gmm.md tabulates them.

All functions are pure jnp, float32, with a leading batch axis B on every array.
"""

from __future__ import annotations

import numbers

import jax
import jax.numpy as jnp

from star_jax.diffusion.flow_matching import FlowMatchingConfig, sample_sigmas
from star_jax.errors import InputError


def _non_batch_axes(x) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def dmd_direction(x, x_real, x_fake):
    """The normalised DMD direction, per sample, without gradient.

    x: (B, ...) the student's clean sample X; x_real, x_fake: (B, ...) the teacher's and the
    critic's x0 predictions at the re-noised X. Returns (B, ...) float32
    D = (x_fake - x_real) / mean(|x - x_real|) (mean over the non-batch axes); NaN, +-inf and a
    zero normaliser give 0 (the sample then gets no gradient)."""
    x, x_real, x_fake = (jnp.asarray(a, jnp.float32) for a in (x, x_real, x_fake))
    if not x.shape == x_real.shape == x_fake.shape or x.ndim < 1:
        raise InputError(f"dmd_direction: x, x_real, x_fake must share one (B, ...) shape, got "
                         f"{x.shape}, {x_real.shape}, {x_fake.shape}")
    norm = jnp.mean(jnp.abs(x - x_real), axis=_non_batch_axes(x), keepdims=True)
    safe = jnp.where(norm > 0, norm, 1.0)
    d = jnp.where(norm > 0, (x_fake - x_real) / safe, 0.0)
    return jax.lax.stop_gradient(jnp.nan_to_num(d, nan=0.0, posinf=0.0, neginf=0.0))


def dmd_loss(x, direction):
    """0.5 * mean((x - sg(x - direction))^2): a scalar whose gradient w.r.t. x (B, ...) is
    direction / x.size. Its value is 0.5 * mean(direction^2) (a magnitude to log, not a
    quantity that decreases as the student improves)."""
    x = jnp.asarray(x, jnp.float32)
    target = jax.lax.stop_gradient(x - jnp.asarray(direction, jnp.float32))
    return 0.5 * jnp.mean(jnp.square(x - target))


def jdmd_direction(x, x_real_c, x_fake_c, x_real_m, x_fake_m, weight: float):
    """The JDMD direction: DMD toward the w-weighted teachers, against the w-weighted critics,

        D = dmd_direction(x, (1 - w) x_real_c + w x_real_m, (1 - w) x_fake_c + w x_fake_m),

    i.e. the gradient of (1 - w) KL(p_g || p_c) + w KL(p_g || p_m) with ONE per-sample
    normaliser. (Normalising each stream by its own mean|x - x_real| and then mixing weights the
    two streams differently for every sample: on two Gaussians that inflates the student's
    covariance several-fold and biases its mean toward the nearer teacher; see
    benchmarks/results/dmd_gmm.md.)

    x: (B, ...) the student's sample; x_real_c / x_fake_c: the conditional teacher's (CFG) and its
    critic's x0 predictions; x_real_m / x_fake_m: the real-appearance teacher's and its critic's
    (render dropped), all (B, ...). weight: a Python float in [0, 1] (static): 0 is plain DMD
    (x_real_m, x_fake_m are then not used and may be None), 1 uses only the real stream."""
    if isinstance(weight, bool) or not isinstance(weight, numbers.Real) or not 0.0 <= float(weight) <= 1.0:
        raise InputError(f"jdmd_direction: weight must be a number in [0, 1] (0: plain DMD), got {weight!r}")
    weight = float(weight)
    if weight == 0.0:
        return dmd_direction(x, x_real_c, x_fake_c)
    if weight == 1.0:
        return dmd_direction(x, x_real_m, x_fake_m)
    mix = lambda c, m: (1.0 - weight) * jnp.asarray(c, jnp.float32) + weight * jnp.asarray(m, jnp.float32)
    shapes = [jnp.shape(a) for a in (x_real_c, x_fake_c, x_real_m, x_fake_m)]
    if len(set(shapes)) != 1:
        raise InputError(f"jdmd_direction: the four x0 predictions must share one (B, ...) shape, got {shapes}")
    return dmd_direction(x, mix(x_real_c, x_real_m), mix(x_fake_c, x_fake_m))


def sample_dmd_sigmas(rng, batch: int, shift: float = 5.0, lo: float = 0.02, hi: float = 0.98):
    """(batch,) float32 re-noising levels of the generator step: s = clip(shift_k(u), lo, hi),
    u ~ U(0, 1) (the flow-matching sampler with the DMD clamp)."""
    return sample_sigmas(rng, batch, FlowMatchingConfig(shift=shift, min_sigma=lo, max_sigma=hi))

