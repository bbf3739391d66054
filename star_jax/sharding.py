"""Logical axis names (the only place they are spelled) and helpers that turn them into
mesh shardings. Model code annotates with these names; configs choose the rules.

Mesh axes: ("data", "fsdp", "tensor"). Default rules: batch over data x fsdp, parameters'
embed dim over fsdp (ZeRO-3 style), MLP / attention-head dims over tensor.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh

# logical names -------------------------------------------------------------------------------
BATCH = "batch"
LENGTH = "length"  # token sequence
EMBED = "embed"  # model width
MLP = "mlp"  # FFN hidden
HEADS = "heads"  # flattened attention heads x head_dim (q/k/v/o inner dim)
TEXT = "text"  # text embedding input width
PATCH = "patch"  # flattened patch input (pt * ph * pw * in_dim)
LAYERS = "layers"  # stacked (scanned) layer axis
MOD = "mod"  # adaLN modulation slots (6 / 2)
NORM = "norm"

MESH_AXES = ("data", "fsdp", "tensor")

DEFAULT_RULES: tuple[tuple[str, str | Sequence[str] | None], ...] = (
    (BATCH, ("data", "fsdp")),
    (LENGTH, None),
    (EMBED, "fsdp"),
    (MLP, "tensor"),
    (HEADS, "tensor"),
    (TEXT, None),
    (PATCH, None),
    (LAYERS, None),
    (MOD, None),
    (NORM, None),
)

# activation rules: activations are not split over fsdp on the embed dim
ACTIVATION_RULES: tuple[tuple[str, str | Sequence[str] | None], ...] = tuple(
    (name, None if name == EMBED else axes) for name, axes in DEFAULT_RULES
)


def make_mesh(shape: Sequence[int], axes: Sequence[str] = MESH_AXES, devices=None) -> Mesh:
    """A mesh of `shape` over `devices` (default: all), e.g. (2, 2, 2) or (1, n, 1)."""
    devices = jax.devices() if devices is None else devices
    n = int(np.prod(shape))
    if n > len(devices):
        raise ValueError(f"mesh {tuple(shape)} needs {n} devices, have {len(devices)}")
    return Mesh(np.asarray(devices[:n]).reshape(shape), tuple(axes))


def param_shardings(abstract_params, mesh: Mesh, rules=DEFAULT_RULES):
    """NamedShardings for a params pytree from `jax.eval_shape(model.init, ...)` (boxed with
    logical names by `nn.with_logical_partitioning`)."""
    specs = nn.get_partition_spec(abstract_params)
    return nn.logical_to_mesh_sharding(specs, mesh, rules)
