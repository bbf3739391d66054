"""Smoke training run: the STAR teacher task with a tiny DiT on a synthetic in-memory source
(random latents shaped like StarConditions, see star_jax/train/synthetic.py), or with `task=toy`
the trainer's smallest task (an MLP, star_jax/train/toy.py). For tests and for checking the
trainer end to end on a CPU.

Launch (repository root):
    python -m star_jax.train --config experiments/train_smoke.py
    python -m star_jax.train --config experiments/train_smoke.py:steps=200,batch=16 --workdir /tmp/smoke
    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python -m star_jax.train --config experiments/train_smoke.py:task=toy,mesh=2x2x2   # 8 CPU devices

Needs: nothing (no data, no weights). Runtime on 2 CPU cores: teacher ~15 s for the 40-step
default (8 s compiling the step, then ~50 steps/s), toy ~8 s. Rerunning the same command resumes
from the newest checkpoint in the workdir.
"""

from __future__ import annotations

import ml_collections

from experiments.common import model_config, parse_arg
from star_jax import sharding as sh


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, task="teacher", steps=40, batch=8, lr=3e-3, accum=1, mesh="1x-1x1", examples=64, seed=0,
                  ema=0.9, every=10, decay="cosine", noise=0.01, fast_compile=True,
                  workdir="outputs/train/smoke")
    c = ml_collections.ConfigDict()
    c.task = a.task
    if a.task == "toy":
        c.toy = dict(dim=16, hidden=32, num_examples=a.examples, seed=a.seed, input_noise=a.noise)
    else:
        c.model = model_config("tiny")
        # smaller than `tiny`, still divisible by a (2, 2, 2) mesh: heads over tensor, dim over fsdp
        c.model.dit.update(dim=32, ffn_dim=64, num_heads=2, num_layers=1, freq_dim=16, text_dim=16, text_len=4)
        c.flow = dict(shift=3.0, text_dropout=0.1, render_dropout=0.0)
        c.data = dict(source="synthetic", num_examples=a.examples, latent_frames=3, latent_hw=(4, 4), text_len=4,
                      seed=a.seed, max_shift=1)
    c.run = dict(num_steps=a.steps, batch_size=a.batch, seed=a.seed, workdir=a.workdir, shuffle=True,
                 tensorboard=True,
                 # LLVM optimisation off: the step compiles ~3x faster on a CPU and these steps are tiny
                 compiler_options={"xla_backend_optimization_level": 0} if a.fast_compile else {})
    c.optim = dict(lr=a.lr, warmup_steps=5, decay=a.decay, end_lr_factor=0.1, b1=0.9, b2=0.99, eps=1e-8,
                   weight_decay=0.01, clip_norm=1.0, grad_accum=a.accum)
    c.ema = dict(decay=a.ema, start_step=0)
    c.mesh = dict(shape=tuple(int(v) for v in a.mesh.split("x")),  # (data, fsdp, tensor); -1: the rest
                  param_rules=sh.DEFAULT_RULES, activation_rules=sh.ACTIVATION_RULES)
    c.checkpoint = dict(every_steps=a.every, max_to_keep=2, async_save=True)
    c.lock()
    return c
