"""The train loop: config -> task, mesh, sharded state, compiled step; then steps with metrics,
checkpoints, resume, preemption and divergence handling.

    result = train(config, on_step=lambda record: ...)   # resumes from <workdir>/checkpoints if present

Per step k (1-based: the k-th optimizer update): read this process's rows of global batch k,
check them against the task, run the compiled step, fetch its metrics, write the JSONL record,
call `on_step(record)`. Then:
  - a non-finite loss or gradient norm stops the run with `TrainingDiverged` (nothing is saved
    after the last good checkpoint, which stays intact);
  - every `checkpoint.every_steps` and at the last step the state and the data iterator are
    saved (asynchronously; a state with a non-finite parameter is never saved);
  - after SIGTERM (on any process) the state is saved at once and the run returns with status
    "preempted": rerunning the same command continues bit for bit.
A restart resumes from the newest checkpoint, drops the JSONL records of steps after it, and
continues with the same batches and random numbers as an uninterrupted run. A fresh run starts
from the task's random init, or from `run.init_from`'s weights (star_jax/train/init.py; a resume
ignores it). A task whose config names `data.conditioning` gets `star_model.json` in its
workdir (star_jax.inference.model), so the workdir says which convention it was trained with.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import signal
import threading
import time
from typing import Any, Callable

import flax.linen as nn
import jax
import numpy as np

from star_jax.errors import InputError
from star_jax.io.files import write_json
from star_jax.models.flops import peak_tflops, training_flops
from star_jax.models.variants import DiTConfig
from star_jax.train import data as data_lib
from star_jax.train import init as init_lib
from star_jax.train.checkpoint import CheckpointConfig, Checkpointer
from star_jax.train.config import check_keys, section
from star_jax.train.metrics import MetricsWriter, step_record
from star_jax.train.optim import OptimConfig, make_optimizer
from star_jax.train.state import TrainState, init_state
from star_jax.train.step import (
    EMAConfig,
    MeshConfig,
    all_finite,
    batch_divisor,
    batch_sharding,
    build_mesh,
    compile_train_step,
    init_on_mesh,
    make_train_step,
    state_shardings,
)
from star_jax.train.task import Task, make_task

log = logging.getLogger(__name__)

TRAINER_SECTIONS = ("task", "run", "optim", "ema", "mesh", "checkpoint")


class TrainingDiverged(InputError):
    """The loss or the gradient became NaN / inf (a learning rate too high, bad data): the run
    stopped, its last good checkpoint is intact."""


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """num_steps: optimizer updates in total. batch_size: global examples per update (split over
    the data shards and, with optim.grad_accum, into micro-batches). seed: the run's randomness
    (init, noise, shuffle). workdir: checkpoints/, metrics.jsonl, run.json, tensorboard/.
    data_threads / data_prefetch: grain reader threads and batches read ahead."""

    num_steps: int = 100
    batch_size: int = 8
    seed: int = 0
    workdir: str = "outputs/train"
    shuffle: bool = True
    data_threads: int = 2
    data_prefetch: int = 2  # batches read ahead
    tensorboard: bool = True
    # XLA options for compiling the step, e.g. {"xla_backend_optimization_level": 0}: on a CPU
    # that makes the tiny smoke step compile ~3x faster (compilation dominates such runs)
    compiler_options: dict = dataclasses.field(default_factory=dict)
    # a fresh run's DiT weights (star_jax/train/init.py: a converted T2V DiT folder, an exported
    # bundle or another trainer workdir; the patch embedding is widened with zero channels);
    # "": the task's random init. A resume ignores it.
    init_from: str = ""

    def __post_init__(self):
        if self.num_steps < 1 or self.batch_size < 1:
            raise InputError(f"config.run: need num_steps >= 1 and batch_size >= 1, got {self.num_steps}, "
                             f"{self.batch_size}")


@dataclasses.dataclass
class TrainResult:
    """status: "done", "preempted" (SIGTERM: saved at `step`) or "checked" (dry run)."""

    status: str
    step: int
    workdir: str
    last_checkpoint: int | None


@dataclasses.dataclass
class Setup:
    """Everything derived from the config before the first step (no files written)."""

    run: RunConfig
    task: Task
    mesh: Any
    mesh_cfg: MeshConfig
    ckpt_cfg: CheckpointConfig
    tx: Any
    step_fn: Callable
    init_fn: Callable
    abstract: TrainState  # unboxed ShapeDtypeStructs carrying their shardings
    shardings: TrainState
    batch_sharding: Any
    rows: tuple[int, int]
    global_spec: dict
    flops_per_step: float
    num_params: int

    def compile(self):
        return compile_train_step(self.step_fn, self.abstract, self.shardings, self.global_spec, self.mesh,
                                  self.mesh_cfg.activation_rules, self.batch_sharding, self.run.compiler_options)


def setup(config, task: Task | None = None, devices=None) -> Setup:
    """Validates the config and builds the run (mesh, optimizer, shardings, step function)."""
    task = task or make_task(config)
    check_keys(config, TRAINER_SECTIONS + tuple(task.sections))
    run = section(RunConfig, config, "run")
    optim = section(OptimConfig, config, "optim")
    ema = section(EMAConfig, config, "ema")
    mesh_cfg = section(MeshConfig, config, "mesh")
    ckpt_cfg = section(CheckpointConfig, config, "checkpoint")
    mesh = build_mesh(mesh_cfg, devices)

    split = batch_divisor(mesh, mesh_cfg.param_rules)
    micro = run.batch_size // optim.grad_accum
    if run.batch_size % optim.grad_accum or micro % split:
        raise InputError(f"config.run.batch_size {run.batch_size}: with optim.grad_accum {optim.grad_accum} each "
                         f"micro-batch must split evenly over the {split} data shards of mesh {dict(mesh.shape)}")

    tx, schedule = make_optimizer(optim, run.num_steps)
    if task.make_step is not None:  # a task with its own state and step (star_jax/train/distill.py)
        init_fn = lambda rng: task.make_state(rng, tx, ema.decay > 0)  # noqa: E731
    else:
        init_fn = lambda rng: init_state(task.init, tx, rng, ema=ema.decay > 0)  # noqa: E731
    rng = jax.random.PRNGKey(run.seed)
    try:
        boxed = jax.eval_shape(init_fn, rng)
    except (TypeError, ValueError) as e:
        raise InputError(f"config: the task's model cannot be built: {e}") from e
    shardings = state_shardings(boxed, mesh, mesh_cfg.param_rules)
    unboxed = nn.meta.unbox(boxed)
    abstract = jax.tree_util.tree_map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                                      unboxed, shardings)
    bsh = batch_sharding(mesh, mesh_cfg.param_rules)
    micro_sh = bsh if optim.grad_accum > 1 else None
    if task.make_step is not None:
        step_fn = task.make_step(tx, schedule, ema, optim.grad_accum)
    else:
        step_fn = make_train_step(task.loss_fn, tx, schedule, ema, optim.grad_accum, micro_sh)
    global_spec = {k: jax.ShapeDtypeStruct((run.batch_size,) + tuple(s.shape), s.dtype, sharding=bsh)
                   for k, s in task.example_spec.items()}
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(unboxed.params))
    return Setup(run=run, task=task, mesh=mesh, mesh_cfg=mesh_cfg, ckpt_cfg=ckpt_cfg, tx=tx, step_fn=step_fn,
                 init_fn=init_fn, abstract=abstract, shardings=shardings, batch_sharding=bsh,
                 rows=data_lib.process_rows(bsh, run.batch_size), global_spec=global_spec,
                 flops_per_step=training_flops(task.flops_per_example) * run.batch_size, num_params=num_params)


class _Preemption:
    """SIGTERM sets a flag (main thread only) for the duration of the loop; the loop saves and
    returns. The previous handler comes back afterwards."""

    def __init__(self):
        self.signum = None
        self._installed, self._previous = False, None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, self._handle)
            self._installed = True
        return self

    def _handle(self, signum, _frame):
        self.signum = signum

    def __exit__(self, *exc):
        if self._installed:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if self._previous is None else self._previous)

    def requested(self) -> bool:
        flag = self.signum is not None
        if jax.process_count() == 1:
            return flag
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def _dataset(s: Setup):
    r = s.run
    return data_lib.batch_dataset(s.task.source, r.batch_size, r.seed, s.rows, r.shuffle, r.data_threads,
                                  r.data_prefetch)


def _first_batch_check(s: Setup, it) -> None:
    local = next(it)
    data_lib.check_batch(local, s.task.example_spec, s.rows[1] - s.rows[0], 1)


def dry_run(config, task: Task | None = None, devices=None) -> TrainResult:
    """Builds the run, traces one step on the abstract state and checks the first batch;
    compiles nothing, writes nothing."""
    s = setup(config, task, devices)
    with jax.set_mesh(s.mesh), nn.logical_axis_rules(s.mesh_cfg.activation_rules):
        jax.eval_shape(s.step_fn, s.abstract, s.global_spec)
    _first_batch_check(s, iter(_dataset(s)))
    ckpt_dir = os.path.join(s.run.workdir, "checkpoints")
    if os.path.isdir(ckpt_dir):
        ckpt = Checkpointer(ckpt_dir, s.ckpt_cfg)
        latest = ckpt.latest_step()
        if latest is not None:
            ckpt.check_shapes(latest, s.abstract)
        ckpt.close()
    return TrainResult("checked", 0, s.run.workdir, None)


def _run_info(s: Setup, config, compile_s: float, resumed_from: int | None, tensorboard: bool) -> dict:
    dev = jax.devices()[0]
    return {"task": s.task.name, "config": config.to_dict() if hasattr(config, "to_dict") else dict(config),
            "devices": len(s.mesh.devices.flat), "processes": jax.process_count(), "device_kind": dev.device_kind,
            "backend": jax.default_backend(), "mesh": dict(s.mesh.shape), "num_params": s.num_params,
            "flops_per_step": s.flops_per_step, "flops_per_example_forward": s.task.flops_per_example,
            "peak_tflops_per_device": peak_tflops(dev.device_kind), "compile_s": compile_s,
            "resumed_from_step": resumed_from, "tensorboard": tensorboard}


def _patch_size(config) -> tuple[int, int, int]:
    model = config.get("model") if hasattr(config, "get") else None
    dit = model.get("dit") if hasattr(model, "get") else None
    return tuple(dit.get("patch_size", DiTConfig.patch_size) if hasattr(dit, "get") else DiTConfig.patch_size)


def _write_conditioning(config, workdir: str) -> None:
    """star_model.json in the workdir: the conditioning convention (config.data.conditioning) the
    checkpoints are trained with; a resume with another convention is a CheckpointError."""
    data = config.get("data") if hasattr(config, "get") else None
    name = data.get("conditioning") if hasattr(data, "get") else None
    if name:
        from star_jax.inference.model import write_star_model_json

        write_star_model_json(workdir, name)


def train(config, *, task: Task | None = None, devices=None,
          on_step: Callable[[dict], None] | None = None) -> TrainResult:
    """Trains (or resumes) the run `config` describes. See the module docstring."""
    s = setup(config, task, devices)
    run = s.run
    is_main = jax.process_index() == 0
    ckpt = Checkpointer(os.path.join(run.workdir, "checkpoints"), s.ckpt_cfg)
    if is_main:
        _write_conditioning(config, run.workdir)
    it = iter(_dataset(s))
    latest = ckpt.latest_step()
    if latest is not None:
        state = ckpt.restore(latest, s.abstract, it)
        log.info("resumed from %s/checkpoints/%d", run.workdir, latest)
    else:
        state = init_on_mesh(s.init_fn, s.shardings, s.mesh, jax.random.PRNGKey(run.seed))
        if s.task.warm_start is not None:
            state = s.task.warm_start(state, s.abstract, run.init_from)
            log.info("initialised the networks (%s)", s.task.name)
        elif run.init_from:
            state = init_lib.warm_start(state, run.init_from, s.abstract, _patch_size(config))
            log.info("initialised the params from %s", run.init_from)
    start = int(jax.device_get(state.step))

    t0 = time.perf_counter()
    step_fn = s.compile()
    compile_s = time.perf_counter() - t0
    writer = MetricsWriter(run.workdir, enabled=is_main, tensorboard=run.tensorboard)
    writer.truncate_after(start)
    if is_main:
        write_json(os.path.join(run.workdir, "run.json"), _run_info(s, config, compile_s, latest, writer.tensorboard))
    log.info("%s: %d params, %d devices, compiled in %.1fs, steps %d..%d", s.task.name, s.num_params,
             len(s.mesh.devices.flat), compile_s, start + 1, run.num_steps)

    num_devices = len(s.mesh.devices.flat)
    peak = peak_tflops(jax.devices()[0].device_kind)
    rows = s.rows[1] - s.rows[0]
    last_saved = latest
    status, step = "done", start
    try:
        with _Preemption() as preemption:
            for step in range(start + 1, run.num_steps + 1):
                t_step = time.perf_counter()
                local = next(it)
                data_lib.check_batch(local, s.task.example_spec, rows, step)
                batch = data_lib.to_global({k: local[k] for k in s.global_spec}, s.batch_sharding, run.batch_size)
                state, metrics = step_fn(state, batch)
                metrics = jax.device_get(metrics)
                record = step_record(step, metrics, time.perf_counter() - t_step, run.batch_size, s.flops_per_step,
                                     num_devices, peak)
                writer.write(record)
                if on_step is not None:
                    on_step(record)
                if not (math.isfinite(record["loss"]) and math.isfinite(record["grad_norm"])):
                    ckpt.wait()
                    bad = ", ".join(f"{k} {v}" for k, v in record.items()
                                    if isinstance(v, float) and not math.isfinite(v))
                    where = (f"step {last_saved} in {ckpt.directory}" if last_saved is not None
                             else f"none was saved ({ckpt.directory})")
                    raise TrainingDiverged(f"step {step}: loss {record['loss']}, gradient norm {record['grad_norm']} "
                                           f"(non-finite: {bad}): training stopped and nothing after it was saved; last good checkpoint: "
                                           f"{where}")
                stop = preemption.requested()
                every = s.ckpt_cfg.every_steps
                if stop or step == run.num_steps or (every and step % every == 0):
                    if not bool(all_finite(state.params)):
                        ckpt.wait()
                        raise TrainingDiverged(f"step {step}: a parameter is NaN / inf although the loss is finite: "
                                               f"not saved; last good checkpoint: step {last_saved} in "
                                               f"{ckpt.directory}")
                    ckpt.save(step, state, it)
                    last_saved = step
                if stop and step < run.num_steps:
                    status = "preempted"
                    log.info("SIGTERM: saved step %d to %s; rerun the same command to resume", step, ckpt.directory)
                    break
    finally:
        ckpt.close()
        writer.close()
    return TrainResult(status, step, run.workdir, last_saved)
