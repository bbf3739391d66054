"""Warm start of a fresh run from other DiT weights (`config.run.init_from`), e.g. the STAR
teacher (in_dim 36) from a converted Wan2.1 T2V DiT (in_dim 16).

    params = init_params(path, abstract.params, patch_size=(1, 2, 2))   # host -> sharded arrays
    state = warm_start(state, path, abstract, patch_size)               # what the train loop does

`path` is one of
    an orbax params folder (`python -m star_jax.checkpoint.convert --out`, an exported `dit/`),
    a folder holding `dit/` (an exported bundle),
    a trainer workdir (holding `checkpoints/`): its newest step, EMA params when it kept them.
Every parameter is copied as is, except the patch embedding when the source has fewer input
channels: its kernel (pt * ph * pw * C, dim) gets the source's channels as channels [0, C_src)
of every patch position and zeros for the rest, so the new model computes exactly the source
model's function of its first C_src input channels (for the teacher: of the noisy latent,
whatever the mask and render channels hold). Any other difference (a missing, extra or
differently shaped parameter) is a CheckpointError naming the parameter.
"""

from __future__ import annotations

import os

import jax
import numpy as np

from star_jax.checkpoint.storage import CheckpointError, orbax_shapes, restore_params

PATCH_KERNEL = "patch_embedding/kernel"


def _key(path) -> str:
    return "/".join(str(getattr(p, "key", getattr(p, "name", getattr(p, "idx", p)))) for p in path)


def _source_folder(path: str) -> tuple[str, str | None]:
    """(orbax folder, subtree to take or None) for the kinds of `path` the module docstring lists."""
    if not os.path.isdir(path):
        raise CheckpointError(f"config.run.init_from {path!r}: no such folder (give a converted DiT orbax folder, an "
                              f"exported bundle or a trainer workdir)")
    ckpt = os.path.join(path, "checkpoints")
    if os.path.isdir(ckpt):
        steps = sorted(int(d) for d in os.listdir(ckpt) if d.isdigit() and os.path.isdir(os.path.join(ckpt, d)))
        if not steps:
            raise CheckpointError(f"config.run.init_from {path!r}: a trainer workdir without any finished "
                                  f"checkpoint in {ckpt}")
        folder = os.path.join(ckpt, str(steps[-1]), "state")
        tree = orbax_shapes(folder, "dit")
        return folder, "ema_params" if tree.get("ema_params") else "params"
    if os.path.isdir(os.path.join(path, "dit")):
        return os.path.join(path, "dit"), None
    return path, None


def read_source_params(path: str) -> dict[str, np.ndarray]:
    """The DiT params stored at `path` as {"a/b/kernel": numpy} on the host."""
    folder, subtree = _source_folder(path)
    shapes = orbax_shapes(folder, "dit")
    cpu = jax.sharding.SingleDeviceSharding(jax.local_devices(backend="cpu")[0])
    abstract = jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=cpu), shapes)
    tree = restore_params(folder, abstract)
    if subtree is not None:
        tree = tree[subtree]
    return {_key(p): np.asarray(x) for p, x in jax.tree_util.tree_flatten_with_path(tree)[0]}


def expand_patch_kernel(kernel: np.ndarray, patch_size: tuple[int, int, int], in_dim: int) -> np.ndarray:
    """(P * C_src, dim) -> (P * in_dim, dim), P = pt * ph * pw: the source channels first in every
    patch position (the model flattens a patch as (pt, ph, pw, C)), zeros after them."""
    n = int(np.prod(patch_size))
    rows, dim = kernel.shape
    c_src = rows // n
    out = np.zeros((n, in_dim, dim), kernel.dtype)
    out[:, :c_src] = kernel.reshape(n, c_src, dim)
    return out.reshape(n * in_dim, dim)


def map_params(source: dict[str, np.ndarray], abstract_params, patch_size: tuple[int, int, int], where: str):
    """Source params laid out as `abstract_params` (a tree of ShapeDtypeStructs), host numpy in
    the target dtypes. CheckpointError naming each parameter that does not fit."""
    flat, treedef = jax.tree_util.tree_flatten_with_path(abstract_params)
    want = {_key(p): a for p, a in flat}
    missing, extra = sorted(set(want) - set(source)), sorted(set(source) - set(want))
    if missing or extra:
        raise CheckpointError(f"{where}: parameters differ from this run's model: missing {missing[:3]}"
                              f"{' ...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                              f"{' ...' if len(extra) > 3 else ''}")
    n = int(np.prod(patch_size))
    out, wrong = [], []
    for name, a in want.items():
        x, shape = source[name], tuple(a.shape)
        if name == PATCH_KERNEL and x.shape != shape and x.ndim == 2 and x.shape[1] == shape[1] \
                and x.shape[0] % n == 0 and shape[0] % n == 0 and x.shape[0] < shape[0]:
            x = expand_patch_kernel(x, patch_size, shape[0] // n)
        if x.shape != shape:
            wrong.append(f"{name} is {x.shape}, this run's model needs {shape}")
        out.append(np.asarray(x, a.dtype))
    if wrong:
        raise CheckpointError(f"{where}: {'; '.join(wrong[:4])}{' ...' if len(wrong) > 4 else ''}")
    return jax.tree_util.tree_unflatten(treedef, out)


def init_params(path: str, abstract_params, patch_size: tuple[int, int, int] = (1, 2, 2)):
    """The params at `path` mapped onto `abstract_params` (ShapeDtypeStructs; with shardings the
    arrays are placed there, else on the default device)."""
    host = map_params(read_source_params(path), abstract_params, patch_size, f"config.run.init_from {path}")
    return jax.tree_util.tree_map(lambda x, a: jax.device_put(x, getattr(a, "sharding", None)), host,
                                  abstract_params)


def warm_start(state, path: str, abstract_state, patch_size: tuple[int, int, int] = (1, 2, 2)):
    """A fresh TrainState with its params (and EMA, its own copy) replaced by those at `path`."""
    params = init_params(path, abstract_state.params, patch_size)
    ema = None if state.ema_params is None else jax.tree_util.tree_map(lambda x: x.copy(), params)
    return state.replace(params=params, ema_params=ema)
