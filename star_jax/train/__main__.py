"""python -m star_jax.train --config experiments/<name>.py[:args] [--workdir DIR] [--dry_run]

Trains the task the config names (`config.task`); rerunning the same command resumes from the
newest checkpoint in the workdir. Writes to the workdir (config.run.workdir or --workdir):
checkpoints/<step>/ (train state + data iterator), metrics.jsonl (one record per step),
run.json (devices, mesh, parameter count, FLOPs per step, compile time), tensorboard/ (when a
TensorBoard writer is installed). A progress bar goes to stderr.

Multi-host: one process per host, each with --coordinator HOST:PORT --num_processes N
--process_id I; every process reads only its rows of each batch.

Exit codes (star_jax.cli): 0 done; 2 a user error in one line (a config typo, data that does
not fit the model, a diverged run: the last good checkpoint is kept); 143 SIGTERM: after a
checkpoint of the current step (rerun to resume) or, before the first step, at once.
--dry_run checks the config, the model, the first batch and any checkpoint, trains nothing.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

from absl import flags

from star_jax import cli


def job(argv) -> None:
    del argv
    import jax

    F = flags.FLAGS
    if F.num_processes > 1:
        jax.distributed.initialize(coordinator_address=F.coordinator, num_processes=F.num_processes,
                                   process_id=F.process_id)
    from star_jax.train.loop import dry_run, train

    config = F["config"].value
    if F.workdir:
        with config.unlocked():
            config.run.workdir = F.workdir
    logger = logging.getLogger("star_jax")
    logger.setLevel(logging.INFO)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
    if F.dry_run:
        dry_run(config)
        print("dry run: the config, the model, the first batch and any checkpoint are usable")
        return
    bar = _progress(config.run.num_steps) if F.progress and jax.process_index() == 0 else None

    def on_step(record):
        if bar is not None:
            bar.n = record["step"]
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            bar.refresh()

    try:
        result = train(config, on_step=on_step)
    finally:
        if bar is not None:
            bar.close()
    if result.status == "preempted":
        print(f"preempted by SIGTERM: saved step {result.step} to {result.workdir}/checkpoints; rerun the same "
              f"command to resume", flush=True)
        raise cli.Interrupted(signal.SIGTERM)
    print(f"done: step {result.step}; metrics, checkpoints and run.json in {result.workdir}")


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="train", unit="step", file=sys.stderr)


if __name__ == "__main__":
    from ml_collections import config_flags

    config_flags.DEFINE_config_file("config", "experiments/train_smoke.py", "experiment config", lock_config=True)
    flags.DEFINE_string("workdir", "", "output folder (overrides config.run.workdir)")
    flags.DEFINE_string("coordinator", "", "multi-host: HOST:PORT of process 0's coordinator")
    flags.DEFINE_integer("num_processes", 1, "multi-host: number of processes")
    flags.DEFINE_integer("process_id", 0, "multi-host: this process's index")
    flags.DEFINE_bool("progress", True, "progress bar on stderr")
    cli.define_flags()
    sys.path.insert(0, os.getcwd())
    cli.main(job, parse=cli.absl_parser())
