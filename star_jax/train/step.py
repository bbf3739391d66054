"""The jitted train step and its shardings over a (data, fsdp, tensor) mesh.

    mesh = build_mesh(MeshConfig(shape=(1, -1, 1)))
    abstract = jax.eval_shape(lambda r: init_state(task.init, tx, r, ema=True), rng)   # boxed
    shardings = state_shardings(abstract, mesh, cfg.param_rules)
    step = compile_train_step(make_train_step(...), nn.meta.unbox(abstract), shardings, batch_spec, mesh, cfg)
    state, metrics = step(state, batch)       # the state is donated

Shardings come from the logical names the model gives its parameters: `jax.eval_shape` of the
init, `nn.get_partition_spec`, `nn.logical_to_mesh_sharding` with the config's rules; the batch is
split over the mesh axes the BATCH name maps to; metrics are replicated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from star_jax import sharding as sh
from star_jax.errors import InputError
from star_jax.train.state import TrainState, ema_update

LossFn = Callable[[Any, Mapping[str, jnp.ndarray], jax.Array], tuple[jnp.ndarray, Mapping[str, jnp.ndarray]]]


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """shape: devices per mesh axis (data, fsdp, tensor); one entry may be -1 (the rest).
    param_rules / activation_rules: logical name -> mesh axes (see `star_jax.sharding`)."""

    shape: tuple[int, ...] = (1, -1, 1)
    axes: tuple[str, ...] = sh.MESH_AXES
    param_rules: tuple = sh.DEFAULT_RULES
    activation_rules: tuple = sh.ACTIVATION_RULES


@dataclasses.dataclass(frozen=True)
class EMAConfig:
    """decay: EMA decay per update (0: no EMA kept). Before `start_step` the EMA copies params."""

    decay: float = 0.0
    start_step: int = 0

    def __post_init__(self):
        if not 0.0 <= self.decay < 1.0:
            raise InputError(f"config.ema.decay: expected a value in [0, 1), got {self.decay}")


def build_mesh(cfg: MeshConfig, devices=None) -> Mesh:
    devices = jax.devices() if devices is None else devices
    shape = list(cfg.shape)
    if len(shape) != len(cfg.axes) or shape.count(-1) > 1 or any(s == 0 or s < -1 for s in shape):
        raise InputError(f"config.mesh.shape: expected {len(cfg.axes)} sizes for {cfg.axes} (positive, at most "
                         f"one -1), got {tuple(cfg.shape)}")
    known = int(np.prod([s for s in shape if s != -1]))
    if -1 in shape:
        if len(devices) % known:
            raise InputError(f"config.mesh.shape {tuple(cfg.shape)}: {len(devices)} devices are not divisible "
                             f"by {known}")
        shape[shape.index(-1)] = len(devices) // known
    if int(np.prod(shape)) != len(devices):
        raise InputError(f"config.mesh.shape {tuple(cfg.shape)} needs {int(np.prod(shape))} devices; this run has "
                         f"{len(devices)} (use -1 on one axis to take the rest)")
    return sh.make_mesh(shape, cfg.axes, devices)


def state_shardings(abstract_state, mesh: Mesh, rules) -> Any:
    """NamedShardings for a state whose params (and optimizer moments) are boxed with logical
    names; unboxed leaves (step, rng, counters) are replicated. The result has the structure of
    the unboxed state."""
    specs = nn.get_partition_spec(abstract_state)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules) -> NamedSharding:
    """Batch arrays (B, ...): the leading axis over the mesh axes BATCH maps to."""
    return nn.logical_to_mesh_sharding(P(sh.BATCH), mesh, rules)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def batch_divisor(mesh: Mesh, rules) -> int:
    """How many ways the batch axis is split (the product of BATCH's mesh axes)."""
    axes = batch_sharding(mesh, rules).spec[0]
    axes = () if axes is None else (axes,) if isinstance(axes, str) else tuple(axes)
    return int(np.prod([mesh.shape[a] for a in axes]))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation, schedule: optax.Schedule,
                    ema: EMAConfig, grad_accum: int = 1, micro_sharding: NamedSharding | None = None):
    """step(state, batch) -> (state, metrics), one optimizer update on the whole batch.

    With `grad_accum` = k the batch (B, ...) is split into k strided micro-batches (examples
    i, i + k, ...: each stays spread over the data shards) whose gradients, losses and aux are
    averaged in a `lax.scan`; micro-batch j draws from fold_in(step key, j). Metrics: loss,
    grad_norm (before clipping), lr (of this update) and the task's scalar aux."""

    def grads_and_aux(params, batch, rng):
        value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)
        if grad_accum == 1:
            (loss, aux), grads = value_and_grad(params, batch, rng)
            return loss, aux, grads

        def split(x):
            b = x.shape[0]
            return jnp.swapaxes(x.reshape((b // grad_accum, grad_accum) + x.shape[1:]), 0, 1)

        micro = jax.tree_util.tree_map(split, batch)

        def body(acc, xs):
            j, mb = xs
            if micro_sharding is not None:
                mb = jax.lax.with_sharding_constraint(mb, jax.tree_util.tree_map(lambda _: micro_sharding, mb))
            (loss, aux), grads = value_and_grad(params, mb, jax.random.fold_in(rng, j))
            return jax.tree_util.tree_map(jnp.add, acc, (loss, aux, grads)), None

        first = jax.tree_util.tree_map(lambda x: x[0], micro)
        shapes = jax.eval_shape(lambda p, b: value_and_grad(p, b, rng), params, first)
        (l_s, aux_s), g_s = shapes
        zeros = jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), (l_s, aux_s, g_s))
        total, _ = jax.lax.scan(body, zeros, (jnp.arange(grad_accum), micro))
        loss, aux, grads = jax.tree_util.tree_map(lambda x: x / grad_accum, total)
        return loss, aux, grads

    def step(state: TrainState, batch) -> tuple[TrainState, dict]:
        rng = jax.random.fold_in(state.rng, state.step)
        loss, aux, grads = grads_and_aux(state.params, batch, rng)
        for name, value in aux.items():
            if jnp.ndim(value) != 0:
                raise InputError(f"task loss aux {name!r}: metrics must be scalars, got shape {jnp.shape(value)}")
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_step = state.step + 1
        ema_params = state.ema_params
        if ema_params is not None:
            decay = jnp.where(new_step <= ema.start_step, 0.0, ema.decay).astype(jnp.float32)
            ema_params = ema_update(ema_params, params, decay)
        metrics = {"loss": loss.astype(jnp.float32), "grad_norm": optax.tree.norm(grads).astype(jnp.float32),
                   "lr": jnp.asarray(schedule(state.step), jnp.float32),
                   **{k: jnp.asarray(v, jnp.float32) for k, v in aux.items()}}
        return state.replace(step=new_step, params=params, opt_state=opt_state, ema_params=ema_params), metrics

    return step


def compile_train_step(step_fn, abstract_state, state_sharding, batch_spec: Mapping[str, jax.ShapeDtypeStruct],
                       mesh: Mesh, activation_rules, batch_shard: NamedSharding, compiler_options=None):
    """AOT-compiles `step_fn` for the (unboxed) abstract state and a global batch spec, with the
    state donated; activations follow `activation_rules` inside the mesh. Returns the compiled
    callable step(state, batch) -> (state, metrics)."""
    batch_sh = {k: batch_shard for k in batch_spec}
    jitted = jax.jit(step_fn, in_shardings=(state_sharding, batch_sh), out_shardings=(state_sharding, replicated(mesh)),
                     donate_argnums=0)
    with jax.set_mesh(mesh), nn.logical_axis_rules(activation_rules):
        lowered = jitted.lower(abstract_state, dict(batch_spec))
    return lowered.compile(compiler_options=dict(compiler_options or {}) or None)


def init_on_mesh(init_fn, state_sharding, mesh: Mesh, rng) -> TrainState:
    """Runs the (boxed) init jitted with the state's out_shardings: every parameter is created
    where it lives, never gathered on one device."""
    unboxed = lambda r: nn.meta.unbox(init_fn(r))
    with jax.set_mesh(mesh):
        return jax.jit(unboxed, out_shardings=state_sharding)(rng)


@jax.jit
def all_finite(tree) -> jnp.ndarray:
    """() bool: every floating leaf of `tree` is finite."""
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(x.dtype, jnp.floating)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)
