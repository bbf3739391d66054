"""The Self-Forcing DMD / JDMD student (star_jax/train/distill.py): the truncated rollout's sample
and its gradient against a hand-written reference (gradient only through each block's exit
forward), the trainer running it (resume bit for bit, 8 devices = 1 device), the teacher's CFG
(default cfg_scale 4 = the former guidance 3), and clear errors for a missing teacher, JDMD without
its real teacher, the CFG keys' old names and a NaN in the DMD step."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.train_student import get_config
from star_jax.checkpoint.storage import CheckpointError
from star_jax.diffusion.schedule import few_step_schedule
from star_jax.errors import InputError
from star_jax.inference.conditions import StarConditions
from star_jax.inference.model import random_star_model
from star_jax.inference.rollout import causal_block_x0, init_rollout_state, star_block_exit
from star_jax.models.dit import WanDiT
from star_jax.models.variants import dit_variant
from star_jax.train import TrainingDiverged, make_task, read_metrics, train
from star_jax.train.distill import (
    DistillConfig,
    _guided_x0,
    _x0,
    distill_flops,
    recorded_cfg_scales,
    rollout_sample,
    self_forcing_sample,
)

HW = (4, 6)
# a one-layer teacher for the CFG checks (quick to compile)
SMALL = dit_variant("tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=1, freq_dim=16, text_dim=16, text_len=4)
ONE = jax.devices()[:1]


def _quick(fn, *args):
    """fn(*args) jitted with LLVM optimisation off: tiny programs compile ~3x faster on a CPU."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def _conditions(blocks, seed=0, batch=2):
    r = np.random.default_rng(seed)
    n = 3 * blocks
    f = lambda c: jnp.asarray(r.normal(size=(batch, n, *HW, c)).astype(np.float32))  # noqa: E731
    return StarConditions(f(16), f(16), jnp.asarray(np.sign(r.normal(size=(batch, n, *HW, 4))).astype(np.float32)))


@pytest.fixture(scope="module")
def student():
    m = random_star_model("tiny", jax.random.PRNGKey(1))
    return m.dit, m.dit_params


def _reference_sample(dit, params, text, cond, rng, exit_step):
    """Self-Forcing's rule written plainly: blocks one after the other; the steps before the exit
    and the context come from a gradient-free rollout; each block's exit forward is the only
    differentiable computation, from the rollout's exit input and previous block."""
    sched = few_step_schedule((1000, 750, 500, 250), 5.0)
    frozen = jax.lax.stop_gradient(params)
    state = init_rollout_state(dit.cfg, cond.ref.shape[0], HW, rng)
    out, prev = [], jnp.zeros_like(cond.ref[:, :3])
    for k in range(cond.ref.shape[1] // 3):
        c = cond.frames(3 * k, 3 * k + 3)
        state, block, x_in = star_block_exit(dit, frozen, state, text, c, exit_step)
        t = jnp.full((cond.ref.shape[0],), sched.timesteps[exit_step])
        out.append(causal_block_x0(dit, params, text, c.ref, jax.lax.stop_gradient(prev), k == 0,
                                   jax.lax.stop_gradient(x_in), t, c.mask, c.render))
        prev = block
    return jnp.concatenate(out, axis=1)


@pytest.mark.parametrize("exit_step", [pytest.param(0, marks=pytest.mark.slow), 2])  # ~50 s each on 2 cores
def test_self_forcing_sample_and_gradient_match_the_rule(student, exit_step):
    dit, params = student
    cond = _conditions(2, seed=exit_step)
    text = jnp.asarray(np.random.default_rng(9).normal(size=(2, 4, dit.cfg.text_dim)).astype(np.float32))
    rng = jax.random.PRNGKey(4)
    weights = jnp.asarray(np.random.default_rng(2).normal(size=(2, 6, *HW, 16)).astype(np.float32))
    levels = (1000, 750, 500, 250)

    def sample_and_grad(fn):
        """(fn(params), d sum(weights * fn) / d params), one compiled program (eager grads of a
        rollout dispatch op by op: minutes on the CPU)."""
        def both(p):
            out, vjp = jax.vjp(fn, p)
            return out, vjp(weights)[0]
        return _quick(both, params)

    got, g_got = sample_and_grad(lambda p: self_forcing_sample(dit, p, text, cond, rng, jnp.int32(exit_step), levels,
                                                               5.0))
    want, g_want = sample_and_grad(lambda p: _reference_sample(dit, p, text, cond, rng, exit_step))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the no-gradient rollout the critic learns from is the same sample
    roll = _quick(lambda p: rollout_sample(dit, p, text, cond, rng, jnp.int32(exit_step), levels, 5.0), params)
    np.testing.assert_allclose(roll, want, rtol=1e-4, atol=1e-4)
    flat_got, flat_want = jax.tree_util.tree_leaves(g_got), jax.tree_util.tree_leaves(g_want)
    scale = max(float(jnp.max(jnp.abs(g))) for g in flat_want)
    assert scale > 0
    for a, b in zip(flat_got, flat_want):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4 * scale)
    # and it is not the gradient through the whole rollout (the truncation is real)
    if exit_step == 2:
        _, full = sample_and_grad(lambda p: rollout_sample_with_grad(dit, p, text, cond, rng, exit_step))
        diff = max(float(jnp.max(jnp.abs(a - b))) for a, b in zip(jax.tree_util.tree_leaves(full), flat_want))
        assert diff > 1e-3 * scale


def rollout_sample_with_grad(dit, params, text, cond, rng, exit_step):
    state = init_rollout_state(dit.cfg, cond.ref.shape[0], HW, rng)
    out = []
    for k in range(cond.ref.shape[1] // 3):
        state, block, _ = star_block_exit(dit, params, state, text, cond.frames(3 * k, 3 * k + 3), exit_step)
        out.append(block)
    return jnp.concatenate(out, axis=1)


def student_config(tmp_path, name="run", **args):
    arg = ",".join(["runlocal", f"workdir={tmp_path / name}"] + [f"{k}={v}" for k, v in args.items()])
    return get_config(arg)


@pytest.mark.slow
def test_distill_resumes_bit_for_bit_and_jdmd_runs(tmp_path):
    """4 iterations straight vs 2 + a restart for 2 more: the same metrics, float for float; the
    generator moves only on its update iterations; JDMD (two streams) runs and logs both."""
    full = student_config(tmp_path, "full", steps=4, every=2)
    with full.unlocked():
        full.run.num_steps = 4
    train(full, devices=ONE)
    cut = student_config(tmp_path, "cut", every=2)
    with cut.unlocked():
        cut.run.num_steps = 2
    train(cut, devices=ONE)
    with cut.unlocked():
        cut.run.num_steps = 4
    train(cut, devices=ONE)
    a, b = read_metrics(str(tmp_path / "full")), read_metrics(str(tmp_path / "cut"))
    assert [r["step"] for r in a] == [1, 2, 3, 4] == [r["step"] for r in b]
    for ra, rb in zip(a, b):
        for k in ("loss", "gen_loss", "gen_grad_norm", "critic_grad_norm"):
            assert ra[k] == rb[k], (k, ra, rb)
    assert [r["gen_updated"] for r in a] == [1.0, 0.0, 1.0, 0.0]
    assert all(np.isfinite(r["loss"]) and r["critic_grad_norm"] > 0 for r in a)
    assert a[0]["gen_grad_norm"] > 0 and a[1]["gen_grad_norm"] == 0.0

    joint = student_config(tmp_path, "joint", real_teacher="random", jdmd=0.5)
    with joint.unlocked():
        joint.run.num_steps = 2
    train(joint, devices=ONE)
    rec = read_metrics(str(tmp_path / "joint"))
    assert {"score_gap_m", "critic_m_loss"} <= set(rec[0]) and np.isfinite(rec[0]["gen_loss"])


@pytest.mark.slow
def test_distill_on_8_devices_equals_one(tmp_path):
    one = student_config(tmp_path, "one", every=0)
    eight = student_config(tmp_path, "eight", every=0, mesh="2x2x2")
    for c in (one, eight):
        with c.unlocked():
            c.run.num_steps = 3
            c.run.batch_size = 4
    train(one, devices=ONE)
    train(eight)
    a, b = read_metrics(str(tmp_path / "one")), read_metrics(str(tmp_path / "eight"))
    np.testing.assert_allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    np.testing.assert_allclose([r["gen_loss"] for r in a], [r["gen_loss"] for r in b], rtol=1e-5)


def test_config_mistakes_are_clear(tmp_path):
    c = student_config(tmp_path)
    with c.unlocked():
        c.distill.teacher = ""
    with pytest.raises(InputError, match="config.distill.teacher"):
        make_task(c)
    c = student_config(tmp_path, jdmd=0.5)
    with pytest.raises(InputError, match="real_teacher"):
        make_task(c)
    c = student_config(tmp_path, jdmd=1.5, real_teacher="random")
    with pytest.raises(InputError, match="jdmd_weight"):
        make_task(c)
    c = student_config(tmp_path, "missing", teacher=str(tmp_path / "no_such_teacher"))
    with pytest.raises(CheckpointError, match="no_such_teacher"):
        train(c, devices=ONE)


def test_default_cfg_scale_reproduces_the_former_guidance_3():
    """T_c's guided x0 at DistillConfig's default cfg_scale (4) is the former default's
    x_c + 3 (x_c - x_u) (to float32 rounding: the two forms round differently), computed on a tiny
    random teacher; real_cfg_scale's default (1, the former real_guidance 0) is x_c itself."""
    bidir, dcfg = WanDiT(SMALL), DistillConfig(teacher="random")
    assert (dcfg.cfg_scale, dcfg.real_cfg_scale) == (4.0, 1.0)
    cond, r = _conditions(1, seed=5), np.random.default_rng(6)
    text = jnp.asarray(r.normal(size=(2, 4, SMALL.text_dim)).astype(np.float32))
    x_s = jnp.asarray(r.normal(size=(2, 3, *HW, 16)).astype(np.float32))
    sigma = jnp.asarray([0.3, 0.8], jnp.float32)
    params = _quick(lambda k: bidir.init(k, jnp.zeros((1, 6, *HW, 36)), jnp.zeros((1, 6)), text[:1])["params"],
                    jax.random.PRNGKey(0))

    def predictions(p):
        return (_guided_x0(bidir, p, x_s, sigma, cond, text, dcfg.cfg_scale),
                _guided_x0(bidir, p, x_s, sigma, cond, text, dcfg.real_cfg_scale),
                _x0(bidir, p, x_s, sigma, cond, text), _x0(bidir, p, x_s, sigma, cond, jnp.zeros_like(text)))

    new_c, new_m, x_c, x_u = (np.asarray(a) for a in _quick(predictions, params))
    assert np.max(np.abs(x_c - x_u)) > 1e-3  # the text matters, so the scale does
    old = x_c + np.float32(3.0) * (x_c - x_u)  # the former `cfg_x0(x_c, x_u, guidance=3)`
    np.testing.assert_allclose(new_c, old, rtol=0, atol=8 * np.finfo(np.float32).eps * np.max(np.abs(old)))
    assert not np.allclose(new_c, x_c + np.float32(2.0) * (x_c - x_u), atol=1e-3)  # one unit of scale is visible
    np.testing.assert_array_equal(new_m, x_c)


def test_old_cfg_keys_name_the_new_key_and_the_conversion(tmp_path):
    for old, new in (("guidance", "cfg_scale"), ("real_guidance", "real_cfg_scale")):
        c = student_config(tmp_path)
        with c.unlocked():
            c.distill[old] = 3.0
        with pytest.raises(InputError, match=rf"^config\.distill\.{old}: renamed config\.distill\.{new}, .*"
                                             rf"{new} = {old} \+ 1 .*{old} 3, the release's CFG weight 4, is {new} 4"):
            make_task(c)
        with pytest.raises(ValueError, match=rf"argument {old}: renamed {new}, .*{new} = {old} \+ 1"):
            student_config(tmp_path, **{old: 3.0})
    with pytest.raises(InputError, match="config.distill.cfg_scale: expected a classifier-free guidance scale"):
        make_task(student_config(tmp_path, cfg_scale=-1.0))
    # run.json records: an older run's guidance g is cfg_scale g + 1; a newer run's as it is
    assert recorded_cfg_scales({"guidance": 3.0, "real_guidance": 0.0}) == (4.0, 1.0)
    assert recorded_cfg_scales({"guidance": 2.0}) == (3.0, 1.0)
    assert recorded_cfg_scales({"cfg_scale": 2.5, "real_cfg_scale": 3.0}) == (2.5, 3.0)
    assert recorded_cfg_scales({}) == (4.0, 1.0)


def test_flops_count_a_second_teacher_forward_per_guided_stream():
    """The generator step runs T_c (and T_m) twice when guided (cfg_scale != 1), once otherwise."""
    def flops(**kw):
        return distill_flops(SMALL, DistillConfig(teacher="random", real_teacher="random", gen_every=1, **kw), 6, 6,
                             SMALL.text_len)

    full = flops(cfg_scale=4.0) - flops(cfg_scale=1.0)
    assert full > 0
    assert flops(jdmd_weight=0.5, real_cfg_scale=3.0) - flops(jdmd_weight=0.5) == pytest.approx(full)
    assert flops(jdmd_weight=0.5, cfg_scale=1.0) == pytest.approx(flops(jdmd_weight=0.5) - full)


@pytest.mark.slow  # ~60 s: compiles a whole distillation step (the trainer's NaN stop: tests/train/test_loop.py)
def test_nan_in_the_dmd_step_stops_with_its_name(tmp_path):
    """A generator whose weights hold a NaN (e.g. a broken init): the first iteration stops the
    run, naming the non-finite DMD metrics; nothing is saved."""
    config = student_config(tmp_path, "nan")
    task = make_task(config)
    warm_start = task.warm_start

    def poisoned(state, abstract, init_from):
        state = warm_start(state, abstract, init_from)
        g = jax.tree_util.tree_map(lambda x: x.at[(0,) * x.ndim].set(jnp.nan), state.params["generator"])
        return state.replace(params={**state.params, "generator": g})

    task = type(task)(**{**task.__dict__, "warm_start": poisoned})
    with pytest.raises(TrainingDiverged, match=r"step 1: .*non-finite: .*gen_loss nan"):
        train(config, task=task, devices=ONE)
    assert not (tmp_path / "nan" / "checkpoints" / "1").exists()
