"""star_jax.diffusion.guidance, the one CFG convention u + s (c - u): the function against its
closed form in float64, s = 1 / s = 0 exactly the conditional / unconditional prediction, the
older distillation form x_c + g (x_c - x_u) is s = g + 1, guiding x0 equals guiding the velocity,
and bad scales and shapes are clear errors."""

import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.diffusion.guidance import apply_cfg, check_cfg_scale, renamed_guidance
from star_jax.diffusion.schedule import x0_from_flow
from star_jax.errors import InputError


def _pair(seed=0, shape=(3, 2, 4, 5)):
    r = np.random.default_rng(seed)
    return r.normal(size=shape).astype(np.float32), r.normal(size=shape).astype(np.float32)


@pytest.mark.parametrize("scale", [0.0, 0.5, 2.0, 3.0, 4.0, 7.5])
def test_apply_cfg_is_the_closed_form(scale):
    c, u = _pair()
    want = u.astype(np.float64) + scale * (c.astype(np.float64) - u)
    got = apply_cfg(jnp.asarray(c), jnp.asarray(u), scale)
    assert got.dtype == jnp.float32 and got.shape == c.shape
    np.testing.assert_allclose(np.asarray(got, np.float64), want, rtol=1e-6, atol=1e-6 * (1 + scale))


def test_scale_one_is_conditional_and_zero_unconditional_exactly():
    c, u = _pair(1)
    np.testing.assert_array_equal(np.asarray(apply_cfg(c, u, 1.0)), c)
    np.testing.assert_array_equal(np.asarray(apply_cfg(c, u, 0.0)), u)


def test_old_distill_form_is_scale_g_plus_one():
    """x_c + g (x_c - x_u) (the former `cfg_x0`, g = 3 the release's "CFG weight 4") = apply_cfg(s = g + 1):
    bit for bit on small integers (every operation exact), to float32 rounding on normal draws."""
    r = np.random.default_rng(2)
    ci, ui = (r.integers(-50, 50, size=(4, 6)).astype(np.float32) for _ in range(2))
    for g in (0.0, 1.0, 3.0):
        np.testing.assert_array_equal(np.asarray(apply_cfg(ci, ui, g + 1.0)), ci + g * (ci - ui))
    c, u = _pair(3)
    old = c + 3.0 * (c - u)
    np.testing.assert_allclose(np.asarray(apply_cfg(c, u, 4.0)), old, rtol=0, atol=8 * np.finfo(np.float32).eps
                               * float(np.max(np.abs(old))))
    assert not np.allclose(np.asarray(apply_cfg(c, u, 3.0)), old, atol=0.1)  # s = 3 is a different target


def test_guiding_x0_equals_guiding_the_velocity():
    """x0 = x_s - sigma v is affine in v: guided x0 of (v_c, v_u) = x0 of the guided velocity."""
    x_s, _ = _pair(4)
    v_c, v_u = _pair(5)
    sigma = jnp.asarray([0.9, 0.5, 0.1])[:, None, None, None]
    for s in (1.0, 3.0, 4.0):
        a = apply_cfg(x0_from_flow(x_s, v_c, sigma), x0_from_flow(x_s, v_u, sigma), s)
        b = x0_from_flow(x_s, apply_cfg(v_c, v_u, s), sigma)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_bad_scales_and_shapes_are_clear():
    assert check_cfg_scale(4, "x") == 4.0 and isinstance(check_cfg_scale(4, "x"), float)
    for bad in (-1.0, float("nan"), float("inf"), True, "4"):
        with pytest.raises(InputError, match=r"config.distill.cfg_scale: expected a classifier-free guidance scale"):
            check_cfg_scale(bad, "config.distill.cfg_scale")
    with pytest.raises(InputError, match=r"apply_cfg: .*\(3, 2\) and \(3, 1\)"):
        apply_cfg(np.zeros((3, 2)), np.zeros((3, 1)), 4.0)
    msg = renamed_guidance("guidance", "cfg_scale", "config.distill")
    assert msg.startswith("config.distill.guidance: renamed config.distill.cfg_scale") and "\n" not in msg
    assert "cfg_scale = guidance + 1" in msg and "guidance 3" in msg and "is cfg_scale 4" in msg
