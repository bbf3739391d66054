"""Classifier-free guidance (CFG): ONE convention for every sampler and loss in the codebase.

    out = u + cfg_scale * (c - u)      c, u: the conditional and unconditional (zero-text) predictions

`cfg_scale` s = 1 is the conditional model alone (callers then skip the unconditional forward),
s = 0 the unconditional one, s > 1 pushes away from u. The release's "CFG weight 4" (REFERENCE.md:
Self-Forcing writes it x_c + 3 (x_c - x_u)) is s = 4. The same s guides velocities (the Euler and
ODE samplers: `flow_matching.euler_sample`, `train.ode.teacher_ode`, `train.teacher.sample_teacher`)
and x0 predictions (the DMD teacher, `train.distill`) alike: x0 = x_s - s_noise v is affine in v, so
guiding v then converting gives the guided x0.

    v = apply_cfg(v_c, v_u, cfg_scale)      # (B, ...) float32
"""

from __future__ import annotations

import math
import numbers

import jax.numpy as jnp

from star_jax.errors import InputError


def apply_cfg(cond, uncond, cfg_scale: float):
    """u + cfg_scale * (c - u) for cond c and uncond u (B, ...), the same shape; float32 out.
    cfg_scale 1 returns c itself (as float32)."""
    cond, uncond = jnp.asarray(cond, jnp.float32), jnp.asarray(uncond, jnp.float32)
    if cond.shape != uncond.shape:
        raise InputError(f"apply_cfg: the conditional and unconditional predictions must share one (B, ...) shape, "
                         f"got {cond.shape} and {uncond.shape}")
    if isinstance(cfg_scale, numbers.Real) and float(cfg_scale) == 1.0:
        return cond
    return uncond + cfg_scale * (cond - uncond)


def check_cfg_scale(value, where: str) -> float:
    """`value` as a float if it is a finite number >= 0, else an InputError naming `where`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise InputError(f"{where}: expected a classifier-free guidance scale >= 0 (u + s (c - u); 1: the "
                         f"conditional model alone), got {value!r}")
    return float(value)


def renamed_guidance(old: str, new: str, where: str = "") -> str:
    """The one-line error for a key `old` of the older x_c + g (x_c - x_u) convention (g = 0: no
    CFG) at `where` (e.g. "config.distill"), naming its new key `new` and the conversion."""
    at = f"{where}." if where else ""
    return (f"{at}{old}: renamed {at}{new}, the standard CFG scale u + s (c - u) (1: no guidance); "
            f"{new} = {old} + 1 (the old form was x_c + g (x_c - x_u): {old} 3, the release's CFG weight 4, "
            f"is {new} 4)")
