"""Teacher fine-tuning on real RGB-D pairs: the tiny STAR teacher trained on the procedural worlds
(experiments/train_teacher.py), trained further on 7-Scenes redkitchen source -> target clips.
Same model, loss and conditioning as the world teacher; only the data (real, 96x128 pixels =
12x16 latent cells, 3 latent frames), a lower learning rate and fewer steps differ.

Launch (repository root; the last two commands need the tiny VAE export of experiments/train_vae.py):
    python -m data_pipelines.rgbd_pairs --data ../shared/data/rgbd_7scenes_redkitchen_seq \
        --out /work/data/7scenes_tiny                       # 400 train / 32 test pairs, ~1-4 min
    python -m data_pipelines.precompute --pixels /work/data/7scenes_tiny --vae VAE_EXPORT \
        --out /work/data/latents_7scenes_tiny
    python -m star_jax.train --config experiments/train_teacher_7scenes.py:init=TEACHER \
        --workdir /work/runs/teacher_7scenes
    python -m benchmarks.teacher_quality --data /work/data/latents_7scenes_tiny \
        --pixels /work/data/7scenes_tiny --vae VAE_EXPORT --teacher /work/runs/teacher_7scenes

Arguments (`:key=value,...`): data (the latent dataset folder, split "train" is read; default
/work/data/latents_7scenes_tiny), init (the world teacher to start from: its training workdir or
export; empty = from scratch, the control run), steps (default 1000), lr (default 2e-4, a fifth
of the world teacher's 1e-3), batch (8), seed, workdir, runlocal (20 steps, frequent checkpoints).
The split is by frame range (train: frames 0-399, test: 400-499; data_pipelines/rgbd_pairs.py),
so the quality table on "test" measures frames the model never saw.

Needs: the latent dataset above; for `init`, the trainer's init-from-checkpoint support
(`config.run.init_from`: parameters only, fresh optimizer, EMA = the loaded parameters, step 0).
Runtime (measured on the shared 2-core CPU, batch 8): 0.21 s per step with
`--config.model.dit.attention=blockwise --config.model.dit.attention_chunk=128
--config.model.dit.remat=nothing_saveable` (600 steps from the world teacher: 3.2 min after a 42 s
compile; benchmarks/results/teacher_quality_7scenes.md), 0.74 s per step with the default XLA
attention (1200 steps from scratch: 14.7 min; teacher_quality_7scenes_scratch.md).
"""

from __future__ import annotations

import ml_collections

from experiments import train_teacher
from experiments.common import parse_arg

HEIGHT, WIDTH, LATENT_FRAMES = 96, 128, 3  # data_pipelines.rgbd_pairs.PairSpec defaults: 9 frames


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, data="/work/data/latents_7scenes_tiny", init="", steps=1000, lr=2e-4, batch=8, seed=0,
                  workdir="", runlocal=False)
    for key in ("data", "init", "workdir"):
        if "," in a[key] or ":" in a[key]:
            raise ValueError(f"experiments/train_teacher_7scenes.py: {key}={a[key]!r}: a path without ',' or ':'")
    base = (f"variant=tiny,height={HEIGHT},width={WIDTH},frames={LATENT_FRAMES},data={a.data},steps={a.steps},"
            f"lr={a.lr},batch={a.batch},seed={a.seed},workdir={a.workdir or 'outputs/train/teacher_7scenes_tiny'}"
            + (",runlocal" if a.runlocal else ""))
    c = train_teacher.get_config(base)
    with c.unlocked():
        steps = c.run.num_steps
        c.optim.warmup_steps = min(100, steps // 10)  # the weights are trained: a short warm-up
        c.ema.start_step = 0  # the EMA starts from the loaded weights
        if a.init:
            c.run.init_from = a.init
    c.lock()
    return c
