"""Teacher training: the bidirectional STAR DiT (in_dim 36) by flow matching on source -> target
pairs, conditioned as inference conditions the generator (reference latents as context,
[noisy | mask | render] for the target; star_jax/train/teacher.py).

Launch (repository root):
    python -m star_jax.train --config experiments/train_teacher.py:variant=tiny
    python -m star_jax.train --config experiments/train_teacher.py:variant=tiny,data=/work/data/star_latents_worlds,steps=3000 --workdir /work/runs/teacher_tiny
    python -m star_jax.train --config experiments/train_teacher.py:variant=tiny,steps=20000 --workdir runs/teacher
    python -m star_jax.train --config experiments/train_teacher.py:variant=1.3B     # accelerators, fsdp mesh

Needs: nothing by default (the synthetic latent source, random latents shaped like
StarConditions); `data=DIR` trains on a latent dataset folder (`star_latents_<name>`, written by
`data_pipelines/precompute.py` with a trained VAE; read through `star_jax.train.records`, split
"train"), whose latent shapes must be the config's (height / width / frames arguments, e.g.
`width=128` for the 7-Scenes clips at 96x128). `init=DIR` starts a fresh run from another
teacher's weights (a workdir or an export; `config.run.init_from`). `render_drop=P` (default
0.05): the probability per example that the render is dropped (zeros, all-hole mask), e.g. 0.3
for a teacher that must also be good without its render (the real-appearance teacher of JDMD).
The tiny variant trains at 96x160 pixels (12x20 latent cells), 3 latent frames (9 video frames)
per example; the 1.3B one at 480x832 (60x104), 12 latent frames (45 video frames, the release's
clips), bf16 compute with float32 master weights, parameters and optimizer state sharded over
all devices (fsdp: 2.65 GiB of state per device on 8).
Runtime: tiny ~0.4 s per step on 2 CPU cores after a ~25 s compile; 0.28 s with
`attention=blockwise,remat=nothing_saveable` (the world teacher of benchmarks/RESULTS.md: 2500
steps in 11.2 min). 1.3B: blockwise attention + nothing_saveable remat (its defaults) fit 24.9 GB
per device on 8 devices, 70.8 GB on one device at batch 2 (benchmarks/results/train_bench_cpu.md);
on a GPU add `attention=dot_product` (cuDNN).
Rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import ml_collections

from experiments.common import model_config, parse_arg
from star_jax import sharding as sh

# per variant: pixels, latent frames, batch, learning rate, timestep shift, EMA decay
_SIZES = {
    "tiny": dict(height=96, width=160, frames=3, batch=8, lr=1e-3, shift=3.0, ema=0.99, text_len=16),
    "1.3B": dict(height=480, width=832, frames=12, batch=8, lr=2e-5, shift=5.0, ema=0.999, text_len=512),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, variant="tiny", steps=0, batch=0, lr=0.0, frames=0, height=0, width=0, mesh="1x-1x1",
                  examples=1024, seed=0, workdir="", dtype="", data="", init="", attention="", remat="",
                  render_drop=0.05, runlocal=False)
    if a.variant not in _SIZES:
        raise ValueError(f"experiments/train_teacher.py: variant must be one of {sorted(_SIZES)}, got {a.variant!r}")
    size = _SIZES[a.variant]
    height, width, frames = a.height or size["height"], a.width or size["width"], a.frames or size["frames"]
    c = ml_collections.ConfigDict()
    c.task = "teacher"
    c.model = model_config(a.variant)
    big = a.variant != "tiny"  # attention / remat change memory and speed, never the function
    c.model.dit.update(in_dim=36, dtype=a.dtype or ("bfloat16" if big else "float32"), param_dtype="float32",
                       attention=a.attention or ("blockwise" if big else "xla"),
                       remat=a.remat or ("nothing_saveable" if big else "none"))
    c.flow = dict(shift=size["shift"], min_sigma=0.0, max_sigma=1.0, text_dropout=0.1,
                  render_dropout=a.render_drop)
    c.data = dict(source="records" if a.data else "synthetic", path=a.data, split="train",
                  num_examples=a.examples, latent_frames=frames, latent_hw=(height // 8, width // 8),
                  text_len=size["text_len"], seed=a.seed, max_shift=2,
                  conditioning="inspatio-release")  # mask values: star_jax.inference.conditions
    steps = 20 if a.runlocal else (a.steps or 20_000)
    c.run = dict(num_steps=steps, batch_size=a.batch or size["batch"], seed=a.seed,
                 workdir=a.workdir or f"outputs/train/teacher_{a.variant}", shuffle=True, tensorboard=True,
                 init_from=a.init)  # warm start: a teacher workdir / export (star_jax/train/init.py)
    c.optim = dict(lr=a.lr or size["lr"], warmup_steps=min(500, steps // 10), decay="cosine", end_lr_factor=0.1,
                   b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=1.0, grad_accum=1)
    c.ema = dict(decay=size["ema"], start_step=min(200, steps // 10))
    c.mesh = dict(shape=tuple(int(v) for v in a.mesh.split("x")),  # (data, fsdp, tensor); -1: the rest
                  param_rules=sh.DEFAULT_RULES, activation_rules=sh.ACTIVATION_RULES)
    c.checkpoint = dict(every_steps=50 if a.runlocal else 500, max_to_keep=3, async_save=True)
    c.lock()
    return c
