"""ODE initialisation of the block-causal STAR student (star_jax/train/ode.py): each block of each
example at its own random level of the teacher's ODE trajectory regresses the trajectory's
endpoint, teacher-forced on the previous block's endpoint, through the same cache code as
inference (`inference.rollout.causal_block_x0`).

Launch (repository root):
    python -m data_pipelines.ode_pairs --latents /work/data/latents21_tex \\
        --teacher /work/runs/s21/teacher_flat_export --out /work/data/ode21
    python -m star_jax.train --config experiments/train_ode.py:variant=tiny,data=/work/data/ode21,init=/work/runs/s21/teacher_flat_export,steps=400 \\
        --workdir /work/runs/s21/student_ode

Needs: an ODE pairs dataset (`data=DIR`, split "train", `frames` latent frames per example,
default 6 = 2 blocks; its levels must be the config's, `few_step_schedule((1000, 750, 500, 250), 5)`).
`init=DIR` is the generator's start (`config.run.init_from`), the conditional teacher (an export
or a workdir): the student has the teacher's parameter tree; "" starts from a random init.
Hyperparameters: AdamW, clip 10 (REFERENCE.md); tiny: lr 3e-4 constant after a short warmup.
Runtime (tiny, 6 latent frames of 12x20, batch 8, shared 2-core CPU): 23 s compile, ~1.05 s per
step; /work/runs/s21/student_ode (init T_c, 108 pairs of latents21_tex) took 300 steps in 363 s,
loss 0.106 (first 10 steps) -> 0.0176 (last 50), still falling slowly.
Rerunning the same command resumes from the newest checkpoint (a larger steps= continues it).
"""

from __future__ import annotations

import ml_collections

from experiments.common import model_config, parse_arg
from star_jax import sharding as sh

# per variant: pixels, batch, learning rate, EMA decay, text rows
_SIZES = {
    "tiny": dict(height=96, width=160, batch=8, lr=3e-4, ema=0.99, text_len=16),
    "1.3B": dict(height=480, width=832, batch=8, lr=2e-6, ema=0.99, text_len=512),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, variant="tiny", steps=0, batch=0, lr=0.0, frames=6, height=0, width=0, mesh="1x-1x1",
                  seed=0, workdir="", dtype="", data="", init="", attention="", remat="", every=0, ema=-1.0,
                  warmup=-1, fast_compile=False, runlocal=False)
    if a.variant not in _SIZES:
        raise ValueError(f"experiments/train_ode.py: variant must be one of {sorted(_SIZES)}, got {a.variant!r}")
    size = _SIZES[a.variant]
    height, width = a.height or size["height"], a.width or size["width"]
    c = ml_collections.ConfigDict()
    c.task = "ode"
    c.model = model_config(a.variant)
    big = a.variant != "tiny"  # attention / remat change memory and speed, never the function
    c.model.dit.update(in_dim=36, dtype=a.dtype or ("bfloat16" if big else "float32"), param_dtype="float32",
                       attention=a.attention or ("blockwise" if big else "xla"),
                       remat=a.remat or ("nothing_saveable" if big else "none"))
    c.data = dict(path=a.data, split="train", latent_frames=a.frames, latent_hw=(height // 8, width // 8),
                  text_len=size["text_len"], conditioning="inspatio-release")
    c.ode = dict(steps=(1000, 750, 500, 250), shift=5.0)  # the student's levels (few_step_schedule)
    steps = 20 if a.runlocal else (a.steps or 600)
    c.run = dict(num_steps=steps, batch_size=a.batch or size["batch"], seed=a.seed,
                 workdir=a.workdir or f"outputs/train/ode_{a.variant}", shuffle=True, tensorboard=True,
                 init_from=a.init,  # the conditional teacher T_c (star_jax/train/init.py)
                 compiler_options={"xla_backend_optimization_level": 0} if a.fast_compile else {})
    warmup = a.warmup if a.warmup >= 0 else min(50, steps // 10)
    c.optim = dict(lr=a.lr or size["lr"], warmup_steps=warmup, decay="constant", end_lr_factor=1.0,
                   b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=10.0, grad_accum=1)
    c.ema = dict(decay=size["ema"] if a.ema < 0 else a.ema, start_step=min(100, steps // 5))
    c.mesh = dict(shape=tuple(int(v) for v in a.mesh.split("x")),  # (data, fsdp, tensor); -1: the rest
                  param_rules=sh.DEFAULT_RULES, activation_rules=sh.ACTIVATION_RULES)
    c.checkpoint = dict(every_steps=a.every or (50 if a.runlocal else 100), max_to_keep=3, async_save=True)
    c.lock()
    return c
