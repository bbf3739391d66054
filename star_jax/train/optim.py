"""The optimizer: AdamW with linear warmup then cosine / linear / constant decay, global-norm
clipping, weight decay on kernels only. Gradient accumulation is done by the train step
(`step.py`: the batch is split into `grad_accum` micro-batches inside one jitted step), so one
step is always one optimizer update and the schedule counts updates.

    tx, schedule = make_optimizer(OptimConfig(lr=1e-4, warmup_steps=100), num_steps=10_000)
"""

from __future__ import annotations

import dataclasses

import jax
import optax

from star_jax.errors import InputError

DECAYS = ("cosine", "linear", "constant")


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """lr: peak learning rate, reached after `warmup_steps` (linear from 0); then `decay` to
    lr * end_lr_factor over `decay_steps` updates (0: until the end of training).
    clip_norm: global gradient-norm clip (0: off). grad_accum: micro-batches per step."""

    lr: float = 1e-4
    warmup_steps: int = 0
    decay: str = "cosine"
    decay_steps: int = 0
    end_lr_factor: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    clip_norm: float = 1.0
    grad_accum: int = 1

    def __post_init__(self):
        if self.decay not in DECAYS:
            raise InputError(f"config.optim.decay: expected one of {DECAYS}, got {self.decay!r}")
        if self.lr <= 0 or self.warmup_steps < 0 or self.decay_steps < 0 or self.grad_accum < 1:
            raise InputError(f"config.optim: need lr > 0, warmup_steps >= 0, decay_steps >= 0, grad_accum >= 1; "
                             f"got lr={self.lr}, warmup_steps={self.warmup_steps}, decay_steps={self.decay_steps}, "
                             f"grad_accum={self.grad_accum}")


def lr_schedule(cfg: OptimConfig, num_steps: int) -> optax.Schedule:
    """Learning rate as a function of the update count (0-based)."""
    warm = cfg.warmup_steps
    decay_steps = cfg.decay_steps or max(1, num_steps - warm)
    end = cfg.lr * cfg.end_lr_factor
    if cfg.decay == "cosine":
        after = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.end_lr_factor)
    elif cfg.decay == "linear":
        after = optax.linear_schedule(cfg.lr, end, decay_steps)
    else:
        after = optax.constant_schedule(cfg.lr)
    if warm == 0:
        return after
    return optax.join_schedules([optax.linear_schedule(0.0, cfg.lr, warm), after], [warm])


def _decay_mask(params):
    """True for the leaves named `kernel` (dense weights): biases, norms, adaLN tables decay not."""

    def is_kernel(path, _):
        last = path[-1] if path else None
        key = getattr(last, "key", getattr(last, "name", None))
        if key == "value" and len(path) > 1:  # a LogicallyPartitioned box: look at the name above
            last = path[-2]
            key = getattr(last, "key", getattr(last, "name", None))
        return key == "kernel"

    return jax.tree_util.tree_map_with_path(is_kernel, params)


def make_optimizer(cfg: OptimConfig, num_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    schedule = lr_schedule(cfg, num_steps)
    parts = [optax.clip_by_global_norm(cfg.clip_norm)] if cfg.clip_norm > 0 else []
    parts.append(optax.adamw(schedule, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                             mask=_decay_mask))
    return optax.chain(*parts), schedule
