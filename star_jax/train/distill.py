"""The causal 4-step student by Self-Forcing DMD, and JDMD (star_jax/distill/dmd.py has the maths).

Networks (all the STAR DiT, one params tree; REFERENCE.md "Self-Forcing / DMD"):
    generator  block-causal student, trained; starts from `run.init_from` (the ODE init) or T_c
    teacher_c  T_c, the conditional teacher (bidirectional, sees [ref | x_s, mask, render]); frozen
    critic_c   its fake-score critic, same conditioning as T_c, no guidance; trained
    teacher_m  T_m, the real-appearance teacher, run with the render dropped (zeros, all-hole
               mask): a model of real videos given the reference; frozen (JDMD only)
    critic_m   its critic, render dropped too; trained (JDMD only)

One iteration (`make_distill_step`), as Self-Forcing's trainer orders it:
  1. every `gen_every`-th iteration, the generator step: roll the student out block by block with
     the inference code (`rollout.star_block_exit`, no gradient) to a random exit step e (one per
     iteration, the same for every block), then recompute every block's exit forward with
     gradient (`rollout.causal_block_x0`, blocks folded into the batch): the sample X. Re-noise
     stop_gradient(X) to s ~ shift_5(U) clamped to [0.02, 0.98]; direction
         D = dmd_direction(X, (1 - w) cfg(T_c) + w T_m, (1 - w) critic_c + w critic_m)
     (w = jdmd_weight; `jdmd_direction`: the gradient of (1 - w) KL(p_g||p_c) + w KL(p_g||p_m)
     with one per-sample normaliser; cfg(T_c) = x_u + cfg_scale (x_c - x_u), `diffusion.guidance`)
     and the loss 0.5 mean((X - sg(X - D))^2), so dL/dX = D / N. Gradient flows only through each
     block's exit forward: not through its input, the cache, earlier steps or earlier blocks.
  2. every iteration, the critic step: a fresh no-gradient rollout X', plain flow matching of
     critic_c (conditioned) and, for w > 0, critic_m (render dropped) on X'.
Separate optimizers (generator: config.optim; critics: config.critic_optim), the generator's EMA
(config.ema), every array in one `DistillState` sharded from the logical axis rules, the step one
`jax.jit` through the trainer (`star_jax.train.loop`: checkpoints, resume, metrics, SIGTERM).
The frozen teachers live in the state (so a checkpoint is self-contained and a resume needs no
other folder); at 1.3B scale that is 2 x 5 GB more per checkpoint.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import optax
from flax import struct

from star_jax.diffusion.flow_matching import FlowMatchingConfig, flow_matching_loss
from star_jax.diffusion.guidance import apply_cfg, check_cfg_scale, renamed_guidance
from star_jax.diffusion.schedule import add_noise, few_step_schedule, x0_from_flow
from star_jax.distill import dmd_loss, jdmd_direction, sample_dmd_sigmas
from star_jax.errors import InputError
from star_jax.inference.conditions import StarConditions, get_conditioning
from star_jax.inference.rollout import (
    DEFAULT_SHIFT,
    DEFAULT_STEPS,
    causal_block_x0,
    init_rollout_state,
    star_block_exit,
)
from star_jax.models.dit import WanDiT
from star_jax.models.flops import dit_flops
from star_jax.models.variants import DiTConfig
from star_jax.train.config import section
from star_jax.train.optim import OptimConfig, make_optimizer
from star_jax.train.state import ema_update
from star_jax.train.task import Task
from star_jax.train.teacher import (
    TeacherDataConfig,
    check_shapes,
    conditions_from_batch,
    example_spec,
    init_teacher,
    open_source,
    teacher_velocity,
)


RANDOM = "random"  # a teacher path that keeps the seeded random init (smoke runs and tests only)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """teacher: T_c (a teacher workdir or export). real_teacher: T_m (needed when jdmd_weight > 0).
    "random" keeps a seeded random init (smoke runs, tests). jdmd_weight: w in [0, 1] (0: plain
    DMD). cfg_scale: T_c's classifier-free guidance on the text, x_u + cfg_scale (x_c - x_u)
    (`diffusion.guidance`; 1: T_c alone; 4: the release's "CFG weight 4", the default);
    real_cfg_scale the same for T_m (default 1: no guidance). steps / shift: the student's
    warped few-step schedule. dmd_shift, min_sigma, max_sigma: the re-noising levels of the DMD
    step and of the critic's flow matching. gen_every: critic updates per generator update."""

    teacher: str = ""
    real_teacher: str = ""
    jdmd_weight: float = 0.0
    cfg_scale: float = 4.0
    real_cfg_scale: float = 1.0
    steps: tuple[int, ...] = DEFAULT_STEPS
    shift: float = DEFAULT_SHIFT
    dmd_shift: float = 5.0
    min_sigma: float = 0.02
    max_sigma: float = 0.98
    gen_every: int = 5

    # keys of the older x_c + g (x_c - x_u) convention (g = 0: no CFG); `config.section` names these
    RENAMED: ClassVar[dict[str, str]] = {
        "guidance": renamed_guidance("guidance", "cfg_scale", "config.distill"),
        "real_guidance": renamed_guidance("real_guidance", "real_cfg_scale", "config.distill")}

    def __post_init__(self):
        if not self.teacher:
            raise InputError("config.distill.teacher: the conditional teacher (T_c) is required: a teacher workdir "
                             "or an exported teacher bundle")
        if not 0.0 <= self.jdmd_weight <= 1.0:
            raise InputError(f"config.distill.jdmd_weight: expected a value in [0, 1], got {self.jdmd_weight}")
        if self.jdmd_weight > 0 and not self.real_teacher:
            raise InputError(f"config.distill.real_teacher: JDMD (jdmd_weight {self.jdmd_weight}) needs the "
                             f"real-appearance teacher T_m (a teacher workdir or export), got ''")
        for name in ("cfg_scale", "real_cfg_scale"):
            check_cfg_scale(getattr(self, name), f"config.distill.{name}")
        if self.gen_every < 1:
            raise InputError(f"config.distill.gen_every: expected >= 1, got {self.gen_every}")
        if not 0.0 < self.min_sigma <= self.max_sigma < 1.0:
            raise InputError(f"config.distill: need 0 < min_sigma <= max_sigma < 1, got {self.min_sigma}, "
                             f"{self.max_sigma}")
        few_step_schedule(self.steps, self.shift)  # raises on a bad schedule

    @property
    def joint(self) -> bool:
        return self.jdmd_weight > 0


class DistillState(struct.PyTreeNode):
    """step: () int32 iterations done. params: {"generator", "critic_c"[, "critic_m"]} float32
    master weights (trained). opt_state: {"generator", "critic"}. ema_params: the generator's EMA
    (None when off). frozen: {"teacher_c"[, "teacher_m"]}. rng: (2,) the base key."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any
    frozen: Any
    rng: jnp.ndarray


def drop_render(cond: StarConditions, mask_hole: float) -> StarConditions:
    """The render and its mask removed as the teacher's render dropout removes them."""
    return StarConditions(cond.ref, jnp.zeros_like(cond.render), jnp.full_like(cond.mask, mask_hole))


def _truncated_rollout(gen: WanDiT, params, text, cond: StarConditions, rng, exit_step, steps, shift):
    """The inference rollout stopped at `exit_step` in every block, without gradient. Returns the
    blocks and their exit inputs, each (k, B, F, h, w, 16)."""
    f = gen.cfg.frames_per_block
    b, n, h, w, _ = cond.ref.shape
    params = jax.lax.stop_gradient(params)

    def body(state, i):
        c = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * f, f, axis=1), cond)
        state, x, x_in = star_block_exit(gen, params, state, text, c, exit_step, steps, shift)
        return state, (x, x_in)

    _, (blocks, inputs) = jax.lax.scan(body, init_rollout_state(gen.cfg, b, (h, w), rng), jnp.arange(n // f))
    return jax.lax.stop_gradient(blocks), jax.lax.stop_gradient(inputs)


def self_forcing_sample(gen: WanDiT, params, text, cond: StarConditions, rng, exit_step, steps, shift):
    """The student's sample X (B, n, h, w, 16) of a truncated rollout (module docstring, 1.),
    differentiable in `params` through the exit forwards only. exit_step: () int32."""
    f = gen.cfg.frames_per_block
    b, n = cond.ref.shape[:2]
    k = n // f
    blocks, inputs = _truncated_rollout(gen, params, text, cond, rng, exit_step, steps, shift)
    t_exit = jnp.asarray(few_step_schedule(steps, shift).timesteps)[exit_step]
    fold = lambda a: a.reshape((-1,) + a.shape[2:])  # (k', B, ...) -> (k' B, ...)  # noqa: E731
    by_block = lambda a: jnp.moveaxis(a.reshape((b, k, f) + a.shape[2:]), 1, 0)  # (B, n, ...) -> (k, B, f, ...)  # noqa: E731
    ref, mask, render = by_block(cond.ref), by_block(cond.mask), by_block(cond.render)
    x0 = [causal_block_x0(gen, params, text, ref[0], jnp.zeros_like(ref[0]), True, inputs[0],
                          jnp.full((b,), t_exit), mask[0], render[0])]
    if k > 1:  # the later blocks together, each with the previous rollout block as its context
        rest = causal_block_x0(gen, params, jnp.tile(text, (k - 1, 1, 1)), fold(ref[1:]), fold(blocks[:-1]), False,
                               fold(inputs[1:]), jnp.full(((k - 1) * b,), t_exit), fold(mask[1:]), fold(render[1:]))
        x0 += list(rest.reshape((k - 1, b) + rest.shape[1:]))
    return jnp.concatenate(x0, axis=1)


def rollout_sample(gen: WanDiT, params, text, cond: StarConditions, rng, exit_step, steps, shift):
    """A no-gradient truncated rollout (the critic's samples), (B, n, h, w, 16)."""
    blocks, _ = _truncated_rollout(gen, params, text, cond, rng, exit_step, steps, shift)
    return jnp.moveaxis(blocks, 0, 1).reshape(cond.ref.shape[:-1] + (gen.cfg.out_dim,))


def _x0(bidir: WanDiT, params, x_s, sigma, cond, text):
    v = teacher_velocity(bidir, params, x_s, 1000.0 * sigma, cond, text)
    return x0_from_flow(x_s, v, sigma[:, None, None, None, None])


def _guided_x0(bidir, params, x_s, sigma, cond, text, cfg_scale: float):
    """The teacher's x0 (B, n, h, w, 16) guided on the text (`apply_cfg`; 1: one forward)."""
    x_c = _x0(bidir, params, x_s, sigma, cond, text)
    if cfg_scale == 1.0:
        return x_c
    return apply_cfg(x_c, _x0(bidir, params, x_s, sigma, cond, jnp.zeros_like(text)), cfg_scale)


def generator_loss(gen, bidir, dcfg: DistillConfig, mask_hole: float, g_params, critics, frozen, batch, rng):
    """(loss, aux) of the generator step (module docstring, 1.)."""
    k_exit, k_roll, k_sigma, k_noise = jax.random.split(rng, 4)
    cond, text = conditions_from_batch(batch), batch["text"]
    exit_step = jax.random.randint(k_exit, (), 0, len(dcfg.steps))
    x = self_forcing_sample(gen, g_params, text, cond, k_roll, exit_step, dcfg.steps, dcfg.shift)
    b = x.shape[0]
    sigma = sample_dmd_sigmas(k_sigma, b, dcfg.dmd_shift, dcfg.min_sigma, dcfg.max_sigma)
    x_s = add_noise(jax.lax.stop_gradient(x), jax.random.normal(k_noise, x.shape, jnp.float32),
                    sigma[:, None, None, None, None])
    real_c = _guided_x0(bidir, frozen["teacher_c"], x_s, sigma, cond, text, dcfg.cfg_scale)
    fake_c = _x0(bidir, critics["critic_c"], x_s, sigma, cond, text)
    aux = {"exit_step": exit_step.astype(jnp.float32), "score_gap_c": jnp.mean(jnp.abs(fake_c - real_c))}
    real_m = fake_m = None
    if dcfg.joint:
        cond_m = drop_render(cond, mask_hole)
        real_m = _guided_x0(bidir, frozen["teacher_m"], x_s, sigma, cond_m, text, dcfg.real_cfg_scale)
        fake_m = _x0(bidir, critics["critic_m"], x_s, sigma, cond_m, text)
        aux["score_gap_m"] = jnp.mean(jnp.abs(fake_m - real_m))
    direction = jdmd_direction(x, real_c, fake_c, real_m, fake_m, dcfg.jdmd_weight)
    return dmd_loss(x, jax.lax.stop_gradient(direction)), aux


def critic_loss(gen, bidir, dcfg: DistillConfig, mask_hole: float, critics, g_params, batch, rng):
    """(loss, aux) of the critic step (module docstring, 2.): flow matching on a fresh rollout."""
    k_exit, k_roll, k_c, k_m = jax.random.split(rng, 4)
    cond, text = conditions_from_batch(batch), batch["text"]
    exit_step = jax.random.randint(k_exit, (), 0, len(dcfg.steps))
    x = rollout_sample(gen, g_params, text, cond, k_roll, exit_step, dcfg.steps, dcfg.shift)
    fm = FlowMatchingConfig(shift=dcfg.dmd_shift, min_sigma=dcfg.min_sigma, max_sigma=dcfg.max_sigma)
    loss_c, _ = flow_matching_loss(lambda x_s, t: teacher_velocity(bidir, critics["critic_c"], x_s, t, cond, text),
                                   x, k_c, fm)
    aux = {"critic_c_loss": loss_c}
    loss = loss_c
    if dcfg.joint:
        cond_m = drop_render(cond, mask_hole)
        loss_m, _ = flow_matching_loss(
            lambda x_s, t: teacher_velocity(bidir, critics["critic_m"], x_s, t, cond_m, text), x, k_m, fm)
        aux["critic_m_loss"] = loss_m
        loss = loss + loss_m
    return loss, aux


def make_distill_step(gen, bidir, dcfg: DistillConfig, mask_hole: float, tx, critic_tx, schedule, ema):
    """step(state, batch) -> (state, metrics): one iteration (module docstring). Metrics: loss (the
    critic's), gen_loss (0 when the generator was not updated), grad_norm, gen_grad_norm,
    critic_grad_norm, gen_updated, lr, and the DMD magnitudes."""

    def gen_update(state, batch, rng):
        (loss, aux), grads = jax.value_and_grad(
            lambda g: generator_loss(gen, bidir, dcfg, mask_hole, g, state.params, state.frozen, batch, rng),
            has_aux=True)(state.params["generator"])
        updates, opt = tx.update(grads, state.opt_state["generator"], state.params["generator"])
        g = optax.apply_updates(state.params["generator"], updates)
        ema_params = state.ema_params
        if ema_params is not None:
            n = state.step // dcfg.gen_every + 1  # generator updates so far, this one included
            decay = jnp.where(n <= ema.start_step, 0.0, ema.decay).astype(jnp.float32)
            ema_params = ema_update(ema_params, g, decay)
        norm = optax.tree.norm(grads).astype(jnp.float32)
        return g, opt, ema_params, loss.astype(jnp.float32), norm, aux

    def step(state: DistillState, batch):
        rng = jax.random.fold_in(state.rng, state.step)
        k_gen, k_critic = jax.random.split(rng)
        do_gen = state.step % dcfg.gen_every == 0
        aux_shape = jax.eval_shape(lambda: gen_update(state, batch, k_gen))[-1]
        skip = lambda: (state.params["generator"], state.opt_state["generator"], state.ema_params,  # noqa: E731
                        jnp.float32(0), jnp.float32(0),
                        jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), aux_shape))
        g, g_opt, ema_params, g_loss, g_norm, g_aux = jax.lax.cond(do_gen, lambda: gen_update(state, batch, k_gen),
                                                                   skip)
        critics = {k: v for k, v in state.params.items() if k != "generator"}
        (c_loss, c_aux), c_grads = jax.value_and_grad(
            lambda c: critic_loss(gen, bidir, dcfg, mask_hole, c, g, batch, k_critic), has_aux=True)(critics)
        c_updates, c_opt = critic_tx.update(c_grads, state.opt_state["critic"], critics)
        critics = optax.apply_updates(critics, c_updates)
        c_norm = optax.tree.norm(c_grads).astype(jnp.float32)
        metrics = {"loss": c_loss.astype(jnp.float32), "gen_loss": g_loss, "grad_norm": g_norm + c_norm,
                   "gen_grad_norm": g_norm, "critic_grad_norm": c_norm, "gen_updated": do_gen.astype(jnp.float32),
                   "lr": jnp.asarray(schedule(state.step // dcfg.gen_every), jnp.float32),
                   **{k: jnp.asarray(v, jnp.float32) for k, v in {**g_aux, **c_aux}.items()}}
        new = state.replace(step=state.step + 1, params={"generator": g, **critics},
                            opt_state={"generator": g_opt, "critic": c_opt}, ema_params=ema_params)
        return new, metrics

    return step


def distill_flops(cfg: DiTConfig, dcfg: DistillConfig, n: int, tokens_per_frame: int, text_len: int) -> float:
    """Analytic forward-matmul FLOPs of one iteration for one example (approximate: a block's
    denoising forward is counted as a plain forward of its F frames plus the extra attention to
    the 2F cached frames). Backward = 2x forward."""
    f = cfg.frames_per_block
    k = n // f
    full = dit_flops(cfg, 2 * n, tokens_per_frame, text_len)  # a teacher / critic forward
    ctx = dit_flops(cfg, 2 * f, tokens_per_frame, text_len)
    blk = dit_flops(cfg, 3 * f, tokens_per_frame, text_len) - ctx  # the block's share of a 3F sequence
    mean_steps = (len(dcfg.steps) + 1) / 2
    roll = k * (ctx + mean_steps * blk)
    streams = 2 if dcfg.joint else 1
    critic = roll + streams * 3 * full
    forwards = lambda scale: 2 if scale != 1.0 else 1  # a guided teacher runs twice  # noqa: E731
    teachers = forwards(dcfg.cfg_scale) + (forwards(dcfg.real_cfg_scale) if dcfg.joint else 0)
    gen = roll + k * (ctx + 3 * blk) + teachers * full + streams * full
    return critic + gen / dcfg.gen_every


def make_distill_task(config) -> Task:
    """config.model.dit, config.data (TeacherDataConfig: the conditions of a latent dataset),
    config.distill (DistillConfig), config.critic_optim (OptimConfig) -> the distillation Task;
    the trainer's config.optim and config.ema are the generator's."""
    dit_cfg = section(DiTConfig, config.get("model", {}), "dit", "config.model")
    data = section(TeacherDataConfig, config, "data")
    dcfg = section(DistillConfig, config, "distill")
    critic_optim = section(OptimConfig, config, "critic_optim")
    check_shapes(dit_cfg, data)
    f = dit_cfg.frames_per_block
    if data.latent_frames % f:
        raise InputError(f"config.data.latent_frames {data.latent_frames}: the student generates blocks of {f} "
                         f"latent frames; need a multiple of {f}")
    gen, bidir = WanDiT(dit_cfg, block_causal=True), WanDiT(dit_cfg, block_causal=False)
    conv = get_conditioning(data.conditioning)
    spec = example_spec(dit_cfg, data)
    source = open_source(data, dit_cfg, spec)
    critic_names = ("critic_c", "critic_m") if dcfg.joint else ("critic_c",)
    teacher_names = ("teacher_c", "teacher_m") if dcfg.joint else ("teacher_c",)
    run_steps = int(config.run.num_steps)
    critic_tx, _ = make_optimizer(critic_optim, run_steps)

    def init(rng):  # the generator's params (boxed); the trainer's default init path uses it too
        return init_teacher(bidir, data, rng)

    def make_state(rng, tx, use_ema: bool) -> DistillState:
        keys = jax.random.split(rng, 6)
        g = init(keys[0])
        critics = {name: init(keys[1 + i]) for i, name in enumerate(critic_names)}
        frozen = {name: init(keys[3 + i]) for i, name in enumerate(teacher_names)}
        return DistillState(step=jnp.zeros((), jnp.int32), params={"generator": g, **critics},
                            opt_state={"generator": tx.init(g), "critic": critic_tx.init(critics)},
                            ema_params=g if use_ema else None, frozen=frozen, rng=keys[5])

    def make_step(tx, schedule, ema, grad_accum: int):
        if grad_accum != 1:
            raise InputError(f"config.optim.grad_accum {grad_accum}: the distillation step does not accumulate "
                             f"gradients; use a larger batch")
        return make_distill_step(gen, bidir, dcfg, conv.mask_hole, tx, critic_tx, schedule, ema)

    def warm_start(state: DistillState, abstract: DistillState, init_from: str) -> DistillState:
        """Teachers from their folders; each critic from its teacher; the generator from
        `run.init_from` (the ODE init) or else from T_c; its EMA a copy."""
        from star_jax.train import init as init_lib

        p = dit_cfg.patch_size

        def load(path, current, a):  # "random": keep the seeded init (the machinery's smoke runs)
            return current if path == RANDOM else init_lib.init_params(path, a, p)

        frozen = {"teacher_c": load(dcfg.teacher, state.frozen["teacher_c"], abstract.frozen["teacher_c"])}
        if dcfg.joint:
            frozen["teacher_m"] = load(dcfg.real_teacher, state.frozen["teacher_m"], abstract.frozen["teacher_m"])
        copy = lambda t: jax.tree_util.tree_map(lambda x: x.copy(), t)  # noqa: E731
        generator = (load(init_from, None, abstract.params["generator"]) if init_from
                     else copy(frozen["teacher_c"]))
        params = {"generator": generator, "critic_c": copy(frozen["teacher_c"])}
        if dcfg.joint:
            params["critic_m"] = copy(frozen["teacher_m"])
        ema_params = None if state.ema_params is None else copy(params["generator"])
        return state.replace(params=params, ema_params=ema_params, frozen=frozen)

    n, (h, w) = data.latent_frames, data.latent_hw
    _, ph, pw = dit_cfg.patch_size
    flops = distill_flops(dit_cfg, dcfg, n, (h // ph) * (w // pw), dit_cfg.text_len)
    return Task(name="distill", init=init, loss_fn=None, example_spec=spec, source=source,
                flops_per_example=flops / 3.0, sections=("model", "data", "distill", "critic_optim"),
                make_state=make_state, make_step=make_step, warm_start=warm_start)


def student_model(config) -> WanDiT:
    """The generator network a distillation config trains (block-causal)."""
    return WanDiT(section(DiTConfig, config.get("model", {}), "dit", "config.model"), block_causal=True)


def recorded_cfg_scales(distill: dict) -> tuple[float, float]:
    """(cfg_scale, real_cfg_scale) of a recorded config.distill (a run.json's), in this convention:
    a record with cfg_scale / real_cfg_scale as it is, an older one's guidance / real_guidance
    (x_c + g (x_c - x_u)) converted to g + 1; the DistillConfig defaults where absent."""
    default = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    if "guidance" in distill and "cfg_scale" not in distill:
        return float(distill["guidance"]) + 1.0, float(distill.get("real_guidance", 0.0)) + 1.0
    return (float(distill.get("cfg_scale", default["cfg_scale"])),
            float(distill.get("real_cfg_scale", default["real_cfg_scale"])))


def generator_params(state: DistillState, ema: bool = True):
    """The generator's weights to export: the EMA when kept, else the params."""
    return state.ema_params if ema and state.ema_params is not None else state.params["generator"]


__all__ = ["DistillConfig", "DistillState", "drop_render", "generator_loss", "critic_loss", "make_distill_step",
           "make_distill_task", "self_forcing_sample", "rollout_sample", "student_model", "generator_params",
           "distill_flops", "recorded_cfg_scales"]
