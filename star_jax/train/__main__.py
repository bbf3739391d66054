"""python -m star_jax.train --config experiments/<name>.py[:args] [--workdir DIR] [--dry_run]

Trains the task the config names; rerunning the same command resumes from the newest checkpoint
in the workdir. Multi-host: start one process per host with --coordinator HOST:PORT
--num_processes N --process_id I (every process reads only its rows of each batch).
Writes to the workdir: checkpoints/<step>/, metrics.jsonl (one record per step), run.json,
tensorboard/ (when a TensorBoard writer is installed). Exit codes: 0 done or preempted by
SIGTERM after saving, 2 a user error (one line on stderr) incl. a diverged run.
"""

from __future__ import annotations

import logging
import sys

from absl import app, flags
from ml_collections import config_flags

from star_jax.errors import InputError

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/train_smoke.py", "experiment config",
                                          lock_config=True)
flags.DEFINE_string("workdir", "", "output folder (overrides config.run.workdir)")
flags.DEFINE_string("coordinator", "", "multi-host: HOST:PORT of process 0's coordinator")
flags.DEFINE_integer("num_processes", 1, "multi-host: number of processes")
flags.DEFINE_integer("process_id", 0, "multi-host: this process's index")
flags.DEFINE_bool("dry_run", False, "check the config, the model, the first batch and any checkpoint; train nothing")
flags.DEFINE_bool("debug", False, "print the traceback of user errors too")
flags.DEFINE_bool("progress", True, "progress bar on stderr")
FLAGS = flags.FLAGS


def job(argv) -> None:
    del argv
    import jax

    if FLAGS.num_processes > 1:
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator, num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    from star_jax.train.loop import dry_run, train

    config = _CONFIG.value
    if FLAGS.workdir:
        with config.unlocked():
            config.run.workdir = FLAGS.workdir
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if FLAGS.dry_run:
        dry_run(config)
        print("dry run: config, model, first batch and checkpoints are usable")
        return
    bar = _progress(config.run.num_steps) if FLAGS.progress and jax.process_index() == 0 else None

    def on_step(record):
        if bar is not None:
            bar.n = record["step"]
            bar.set_postfix(loss=f"{record['loss']:.4f}", refresh=False)
            bar.refresh()

    result = train(config, on_step=on_step)
    if bar is not None:
        bar.close()
    if result.status == "preempted":
        print(f"preempted (SIGTERM): saved step {result.step} to {result.workdir}/checkpoints; rerun to resume")
    else:
        print(f"done: step {result.step}, outputs in {result.workdir}")


def _progress(total: int):
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover
        return None
    return tqdm(total=total, desc="train", unit="step", file=sys.stderr)


def main(argv) -> None:
    try:
        job(argv)
    except InputError as e:
        if FLAGS.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main)
