"""Tiny VAE training: the Wan causal video VAE as an autoencoder on the procedural worlds' pixel
clips (source and target videos), random 9x64x64 crops, L1 + MSE + a small KL
(star_jax/train/vae.py).

Launch (repository root):
    python -m star_jax.train --config experiments/train_vae.py:variant=tiny,data=/work/data/worlds_tiny \
        --workdir /work/runs/vae_tiny
    python -m star_jax.checkpoint.export vae --workdir /work/runs/vae_tiny --out /work/runs/vae_tiny_export
    python -m benchmarks.vae_quality --vae /work/runs/vae_tiny_export --data /work/data/worlds_tiny
Long streams: a VAE trained on 9-frame clips drifts when it runs on (PSNR 23 dB in the first chunks,
~16 dB from frame ~30 on: its causal caches never held real content there in training). The
decoder alone, fine-tuned on whole 45-frame clips, fixes it and keeps every latent (and so the
teacher and student trained on them):
    python -m star_jax.train --config experiments/train_vae.py:data=/work/data/worlds45_tex,clip_frames=45,\
frames=45,crop=32,batch=2,lr=2e-4,decay=constant,steps=100000,init=/work/runs/vae_tiny_export,train_encoder=false \
        --workdir /work/runs/vae45_dec        # stopped by SIGTERM after ~3,500 steps (50 min on 2 CPU cores)

Self-contained (no pixel dataset; e.g. on a lent accelerator): render worlds into a .npy of
videos with this file (JAX on the CPU: 16 processes must not each claim the GPU), then train:
    JAX_PLATFORMS=cpu python experiments/train_vae.py make_clips /tmp/clips.npy --worlds 384 --workers 16
    python -m star_jax.train --config experiments/train_vae.py:data=/tmp/clips.npy,batch=32 --workdir W

Arguments: data (a pixel dataset folder for `star_jax.train.records.open_split`, a .npy of
(N, T, 96, 160, 3) uint8 videos, or empty: synthetic smooth clips), clip_frames (T, the stored
videos' frames: 9), steps, batch, lr, decay (cosine / constant), base_dim (widens the VAE; recorded
in the exported vae.json), crop (square crop side, pixels), frames (crop frames, 1 + 4k), kl, grad
(weights), init (an exported VAE folder to start from), train_encoder (False: the decoder alone,
with init: the latents of the teacher and student trained on that VAE stay exactly the same),
seed, workdir, runlocal (a 20-step smoke run).
Crops keep all 9 frames by default: a VAE trained on 5-frame crops (one continuing chunk) decodes
frames 5-8 of a 9-frame clip badly (14-18 dB against 22-23 dB for frames 0-4), since the state a
second continuing chunk inherits was never trained.
Needs: the pixel clips `star_worlds` (96x160, 9 frames) written by data_pipelines, or the .npy.
Runtime (measured 2026-11-27): H200, two runs sharing the GPU: 0.065 s per step at batch 32 on
5x64x64 crops, 0.13 s at batch 32 on 9x64x64 or batch 16 on 9x96x96; 3327 + 856 such steps gave
the tiny VAE 22.5 dB PSNR on held-out 96x160x9 clips (benchmarks/results/vae_quality.md), rising
about 1 dB per doubling of steps. 2 busy CPU cores: ~2 s per step at batch 4 on 5x32x32 crops
after a ~300 s compile; decoder only, batch 2 of 45x32x32 crops: 0.85 s per step (2026-11-28).
Rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import os
import sys

import ml_collections

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from experiments.common import model_config, parse_arg  # noqa: E402


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, variant="tiny", data="", steps=0, batch=4, lr=1e-3, decay="cosine", base_dim=0, crop=64,
                  kl=1e-6, grad=0.0, frames=9, clip_frames=9, init="", train_encoder=True, seed=0, workdir="",
                  runlocal=False)
    c = ml_collections.ConfigDict()
    c.task = "vae"
    c.model = model_config(a.variant)
    if a.base_dim:
        c.model.vae.base_dim = a.base_dim
    source = "synthetic" if not a.data else ("array" if a.data.endswith(".npy") else "records")
    c.data = dict(source=source, path=a.data, split="train", clip_frames=a.clip_frames, clip_hw=(96, 160),
                  crop_frames=a.frames, crop_hw=(a.crop, a.crop), flip=True, num_examples=256, seed=a.seed)
    c.vae_train = dict(l1=1.0, mse=1.0, grad=a.grad, kl=a.kl, sample=True, init_from=a.init,
                       train_encoder=a.train_encoder)
    steps = 20 if a.runlocal else (a.steps or 4000)
    c.run = dict(num_steps=steps, batch_size=a.batch, seed=a.seed, workdir=a.workdir or f"outputs/train/vae_{a.variant}",
                 shuffle=True, tensorboard=True)
    c.optim = dict(lr=a.lr, warmup_steps=min(200, steps // 10), decay=a.decay, end_lr_factor=0.05, b1=0.9, b2=0.99,
                   eps=1e-8, weight_decay=0.0, clip_norm=1.0, grad_accum=1)
    c.ema = dict(decay=0.999, start_step=min(500, steps // 10))
    c.mesh = dict(shape=(1, -1, 1))  # data parallel: the VAE's params are not annotated, so replicated
    c.checkpoint = dict(every_steps=50 if a.runlocal else 250, max_to_keep=2, async_save=True)
    c.lock()
    return c


def _render(seed: int, frames: int = 9):
    from data_pipelines.worlds import WorldSpec, sample_world

    w = sample_world(seed, WorldSpec(height=96, width=160, num_frames=frames))
    return w.source_rgb, w.target_rgb


def make_clips(out: str, worlds: int, workers: int, first_seed: int, frames: int = 9) -> None:
    """Renders worlds first_seed .. first_seed + worlds - 1 and writes their source and target
    videos as one (2 worlds, frames, 96, 160, 3) uint8 .npy (atomically)."""
    import functools
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np

    from star_jax.io.files import atomic_path

    # spawned, not forked: a fork of a process where JAX's threads run can deadlock (it did under pytest-xdist)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        pairs = list(pool.map(functools.partial(_render, frames=frames), range(first_seed, first_seed + worlds),
                              chunksize=4))
    videos = np.stack([v for pair in pairs for v in pair])
    with atomic_path(out) as tmp:
        np.save(tmp, videos)


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description="render procedural worlds into a .npy of videos for VAE training")
    p.add_argument("command", choices=["make_clips"])
    p.add_argument("out")
    p.add_argument("--worlds", type=int, default=256)
    p.add_argument("--workers", type=int, default=os.cpu_count())
    p.add_argument("--frames", type=int, default=9, help="frames per video (1 + 4k; 45 for long-stream training)")
    # far from the seeds the pixel dataset's test split uses, so held-out clips stay unseen
    p.add_argument("--first_seed", type=int, default=1_000_000)
    args = p.parse_args()
    make_clips(args.out, args.worlds, args.workers, args.first_seed, args.frames)
