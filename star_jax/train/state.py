"""The train state: everything a run needs to continue bit for bit (with the data iterator's
state, saved next to it by `checkpoint.py`).

    state = init_state(task.init, tx, rng, ema=True)     # params boxed with logical names, if init boxes
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax
from flax import struct


class TrainState(struct.PyTreeNode):
    """step: () int32, optimizer updates done. params: float32 master weights. opt_state: the
    optimizer's state. ema_params: exponential moving average of params (None when off).
    rng: (2,) uint32 base key; step k draws its randomness from fold_in(rng, k)."""

    step: jnp.ndarray
    params: Any
    opt_state: Any
    ema_params: Any
    rng: jnp.ndarray


def init_state(init_fn: Callable[[jax.Array], Any], tx: optax.GradientTransformation, rng,
               ema: bool) -> TrainState:
    """rng (2,) uint32 -> a fresh state (traceable: use under `jax.eval_shape` / `jax.jit`)."""
    k_init, k_train = jax.random.split(rng)
    params = init_fn(k_init)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params),
                      ema_params=params if ema else None, rng=k_train)


def ema_update(ema_params, params, decay):
    """decay * ema + (1 - decay) * params, leaf by leaf, in the params' dtype."""
    return jax.tree_util.tree_map(lambda e, p: (decay * e + (1.0 - decay) * p).astype(p.dtype), ema_params, params)
