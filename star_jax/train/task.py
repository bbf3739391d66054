"""What a training task gives the trainer, and the registry of tasks a config can name.

    task = make_task(config)          # config.task = "teacher" -> star_jax.train.teacher.make_teacher_task
    params = task.init(rng)           # boxed with logical axis names (nn.with_logical_partitioning)
    loss, aux = task.loss_fn(params, batch, rng)    # batch: {name: (B, *example_spec[name].shape)}

The trainer owns everything else: state, optimizer, sharding, jit, checkpoints, metrics.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Callable, Mapping

import jax

from star_jax.errors import InputError

# name -> "module:factory"; a factory maps the whole config to a Task. The VAE and the
# student (Self-Forcing DMD / JDMD) add their entries here.
TASKS: dict[str, str] = {
    "ode": "star_jax.train.ode:make_ode_task",
    "teacher": "star_jax.train.teacher:make_teacher_task",
    "toy": "star_jax.train.toy:make_toy_task",
    "vae": "star_jax.train.vae:make_vae_task",
    "distill": "star_jax.train.distill:make_distill_task",
}


@dataclasses.dataclass(frozen=True)
class Task:
    """name; init(rng) -> params (boxed); loss_fn(params, batch, rng) -> (loss (), {name: ()});
    example_spec: one example's fields (no batch axis) as ShapeDtypeStructs; source: a grain
    random-access source (`len`, `[i]` -> dict) of such examples; flops_per_example: forward
    matmul FLOPs of one example (the trainer counts 3x per training step); sections: the
    top-level config sections the task reads (besides the trainer's own).

    A task with several networks (the DMD student: generator + critics + frozen teachers) gives
    its own state and step instead of `loss_fn`: make_state(rng, tx, ema: bool) -> a state with
    fields step, params, ema_params, rng (boxed, traceable); make_step(tx, schedule, ema_cfg,
    grad_accum) -> step(state, batch) -> (state, metrics with loss and grad_norm); and
    warm_start(state, abstract_state, run.init_from) -> the fresh state with loaded weights."""

    name: str
    init: Callable[[jax.Array], Any]
    loss_fn: Callable[[Any, Mapping[str, Any], jax.Array], tuple[Any, Mapping[str, Any]]] | None
    example_spec: Mapping[str, jax.ShapeDtypeStruct]
    source: Any
    flops_per_example: float = 0.0
    sections: tuple[str, ...] = ()
    make_state: Callable[..., Any] | None = None
    make_step: Callable[..., Any] | None = None
    warm_start: Callable[..., Any] | None = None


def make_task(config) -> Task:
    name = config.get("task") if hasattr(config, "get") else None
    if not name:
        raise InputError(f"config.task: name the task to train, one of {sorted(TASKS)}")
    if name not in TASKS:
        raise InputError(f"config.task: unknown task {name!r}; known: {', '.join(sorted(TASKS))}")
    module, _, factory = TASKS[name].partition(":")
    return getattr(importlib.import_module(module), factory)(config)
