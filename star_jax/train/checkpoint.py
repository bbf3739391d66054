"""Train checkpoints: an orbax CheckpointManager (async) holding the whole train state (params,
optimizer state, EMA, step, rng) and the grain iterator state of every process, one folder per
step under `<workdir>/checkpoints/`.

    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), CheckpointConfig(every_steps=500))
    step = ckpt.latest_step()                              # None on a fresh run
    state = ckpt.restore(step, abstract_state, data_iter)  # the iterator continues where it was
    ckpt.save(step, state, data_iter)                      # returns at once; written in background
    ckpt.wait(); ckpt.close()

A step folder appears under its final name only once it is complete (orbax writes to a temporary
folder and renames it), so a run killed mid-save keeps its previous checkpoint. The loop never
calls `save` with a state that has non-finite values.
"""

from __future__ import annotations

import dataclasses
import os

import grain
import jax
import numpy as np
import orbax.checkpoint as ocp

from star_jax.checkpoint import CheckpointError
from star_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    """every_steps: save period in updates (the last step is always saved; 0: only the last).
    max_to_keep: newest checkpoints kept. async_save: write in a background thread."""

    every_steps: int = 1000
    max_to_keep: int = 2
    async_save: bool = True

    def __post_init__(self):
        if self.every_steps < 0 or self.max_to_keep < 1:
            raise InputError(f"config.checkpoint: need every_steps >= 0 and max_to_keep >= 1, got "
                             f"{self.every_steps}, {self.max_to_keep}")


def _key(path) -> str:
    parts = []
    for p in path:
        for attr in ("key", "name", "idx"):
            if hasattr(p, attr):
                parts.append(str(getattr(p, attr)))
                break
    return "/".join(parts)


class Checkpointer:
    def __init__(self, directory: str, cfg: CheckpointConfig):
        self.directory = os.path.abspath(directory)
        self.cfg = cfg
        options = ocp.CheckpointManagerOptions(max_to_keep=cfg.max_to_keep, enable_async_checkpointing=cfg.async_save,
                                               create=True)
        self.manager = ocp.CheckpointManager(
            self.directory, options=options,
            item_handlers={"state": ocp.StandardCheckpointHandler(), "data": grain.checkpoint.CheckpointHandler()})

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(self, step: int, state, data_iter) -> None:
        self.manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                                        data=grain.checkpoint.CheckpointSave(data_iter)), force=True)

    def check_shapes(self, step: int, abstract_state) -> None:
        """Every array of `abstract_state` is in checkpoint `step` with the same shape and dtype."""
        meta = self.manager.item_metadata(step)["state"]
        tree = getattr(meta, "tree", meta)
        saved = {_key(p): m for p, m in jax.tree_util.tree_flatten_with_path(tree)[0]}
        want = {_key(p): a for p, a in jax.tree_util.tree_flatten_with_path(abstract_state)[0]}
        where = f"checkpoint {self.directory}/{step}"
        missing = sorted(set(want) - set(saved))
        extra = sorted(set(saved) - set(want))
        if missing or extra:
            raise CheckpointError(f"{where} does not fit this run's model/optimizer: missing {missing[:3]}"
                                  f"{' ...' if len(missing) > 3 else ''}, unexpected {extra[:3]}"
                                  f"{' ...' if len(extra) > 3 else ''} (start a new workdir for a new model)")
        for k, a in want.items():
            m = saved[k]
            if tuple(m.shape) != tuple(a.shape) or np.dtype(m.dtype) != np.dtype(a.dtype):
                raise CheckpointError(f"{where}: {k} is {tuple(m.shape)} {np.dtype(m.dtype)}, this run's model needs "
                                      f"{tuple(a.shape)} {np.dtype(a.dtype)} (start a new workdir for a new model)")

    def restore(self, step: int, abstract_state, data_iter):
        """The state at `step` laid out as `abstract_state` (ShapeDtypeStructs with shardings);
        `data_iter` is moved to where it was when the step was saved."""
        self.check_shapes(step, abstract_state)
        out = self.manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract_state), data=grain.checkpoint.CheckpointRestore(data_iter)))
        return out["state"]

    def restore_state(self, step: int, abstract_state):
        """Only the train state (e.g. to evaluate or export a checkpoint)."""
        self.check_shapes(step, abstract_state)
        args = ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
        return self.manager.restore(step, args=args)["state"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
