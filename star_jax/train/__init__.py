"""The trainer shared by every training task (the teacher here; the VAE and the DMD / JDMD
student add their tasks): a task supplies `init`, `loss_fn(params, batch, rng) -> (loss, aux)`
and its data; the trainer owns state, optimizer, sharding, jit, checkpoints and metrics.

    python -m star_jax.train --config experiments/train_smoke.py
    result = train(config, on_step=print_record)      # in Python

Modules: `task` (the Task contract, registry), `state` (TrainState), `optim` (AdamW, schedule,
clipping), `step` (mesh, shardings, the jitted step with gradient accumulation), `data` (grain
batches per process), `checkpoint` (orbax, with the iterator state), `metrics` (JSONL,
TensorBoard), `loop` (train, dry_run), `teacher` (the STAR teacher task), `synthetic` (a
synthetic source).
"""

from star_jax.train.checkpoint import CheckpointConfig, Checkpointer
from star_jax.train.loop import RunConfig, TrainingDiverged, TrainResult, dry_run, setup, train
from star_jax.train.metrics import read_metrics
from star_jax.train.optim import OptimConfig, make_optimizer
from star_jax.train.state import TrainState
from star_jax.train.step import EMAConfig, MeshConfig
from star_jax.train.task import TASKS, Task, make_task

__all__ = ["CheckpointConfig", "Checkpointer", "EMAConfig", "MeshConfig", "OptimConfig", "RunConfig", "TASKS", "Task",
           "TrainResult", "TrainState", "TrainingDiverged", "dry_run", "make_optimizer", "make_task", "read_metrics",
           "setup", "train"]
