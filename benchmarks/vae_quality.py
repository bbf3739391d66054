"""Reconstruction quality of a trained VAE on held-out clips at full resolution.

    python -m benchmarks.vae_quality --vae /work/runs/vae_tiny_export --data /work/data/worlds_tiny [--num 64]
    python -m benchmarks.vae_quality --vae ... --data clips.npy        # a .npy of (N, T, H, W, 3) uint8 videos

Every video of the first `num` clips of the split (the pixel dataset's source and target videos,
or the .npy's videos) is encoded (posterior mean) and decoded whole, 1 + 4k frames at once, and
compared with the original: PSNR and SSIM (star_jax.evaluation: RGB in [0, 1], 11x11 Gaussian
SSIM) per video, its frames pooled; then mean and min over videos, and the PSNR of the frames of
each causal chunk (frame 0 alone, frames 1-4, 5-8, ...). The table goes to stdout and to
benchmarks/results/vae_quality.md (--out), with the VAE's facts from its vae.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.checkpoint.export import VAE_JSON, read_vae_json
from star_jax.checkpoint.storage import restore_params
from star_jax.errors import InputError
from star_jax.evaluation import psnr, ssim
from star_jax.io.files import atomic_path
from star_jax.models.vae import WanVAE, decode, encode


def held_out_videos(data: str, split: str, num: int) -> np.ndarray:
    """(V, T, H, W, 3) uint8: the source and target videos of the first `num` clips of `split`
    (a pixel dataset folder), or the first `num` videos of a .npy."""
    if data.endswith(".npy"):
        videos = np.load(data, mmap_mode="r")
        if videos.ndim != 5 or videos.shape[-1] != 3:
            raise InputError(f"{data}: expected (N, T, H, W, 3) uint8 videos, found {videos.shape}")
        return np.asarray(videos[:num])
    from star_jax.train.records import open_split

    source = open_split(data, split)
    clips = [source[i] for i in range(min(num, len(source)))]
    return np.stack([c[k] for c in clips for k in ("source_rgb", "target_rgb")]).astype(np.uint8)


def reconstruct(vae: WanVAE, params, videos: np.ndarray, batch: int = 4) -> np.ndarray:
    """uint8 videos -> uint8 reconstructions (posterior mean, rounded)."""
    run = jax.jit(lambda p, v: decode(vae, p, encode(vae, p, v.astype(jnp.float32) / 127.5 - 1.0).mean))
    out = [np.asarray(run(params, jnp.asarray(videos[i:i + batch]))) for i in range(0, len(videos), batch)]
    return np.clip(np.round((np.concatenate(out) + 1.0) * 127.5), 0, 255).astype(np.uint8)


def chunk_ranges(t: int) -> list[tuple[int, int]]:
    return [(0, 1)] + [(s, s + 4) for s in range(1, t, 4)]


def measure(vae_dir: str, data: str, split: str, num: int) -> dict:
    cfg = read_vae_json(os.path.join(vae_dir, VAE_JSON))
    params = restore_params(vae_dir, what="vae")
    videos = held_out_videos(data, split, num)
    t0 = time.perf_counter()
    recon = reconstruct(WanVAE(cfg), params, videos)
    seconds = time.perf_counter() - t0
    p = np.array([psnr(r, v) for r, v in zip(recon, videos)])
    s = np.array([ssim(r, v) for r, v in zip(recon, videos)])
    chunks = {f"{a}-{b - 1}": float(np.mean([psnr(r[a:b], v[a:b]) for r, v in zip(recon, videos)]))
              for a, b in chunk_ranges(videos.shape[1])}
    meta = json.load(open(os.path.join(vae_dir, VAE_JSON), encoding="utf-8"))
    num_params = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(params))
    return {"vae": os.path.abspath(vae_dir), "data": os.path.abspath(data), "split": split,
            "videos": len(videos), "shape": tuple(videos.shape[1:4]), "psnr_mean": float(p.mean()),
            "psnr_min": float(p.min()), "ssim_mean": float(s.mean()), "ssim_min": float(s.min()),
            "chunks": chunks, "base_dim": cfg.base_dim, "params": num_params, "training": meta.get("training", {}),
            "seconds": seconds, "backend": jax.default_backend()}


def table(r: dict) -> str:
    t, h, w = r["shape"]
    where = "a .npy of held-out videos" if r["data"].endswith(".npy") else f"the {r['split']} split"
    lines = ["# VAE reconstruction quality (held-out clips, full resolution)", "",
             f"Held-out videos: {where}.", "",
             f"VAE `{r['vae']}` (base_dim {r['base_dim']}, {r['params']:,} parameters); data `{r['data']}`: "
             f"{r['videos']} videos of {t}x{h}x{w}, encoded (posterior mean) and decoded whole on "
             f"{r['backend']} in {r['seconds']:.0f} s.", "",
             "| metric | mean | min |", "| --- | --- | --- |",
             f"| PSNR (dB) | {r['psnr_mean']:.2f} | {r['psnr_min']:.2f} |",
             f"| SSIM | {r['ssim_mean']:.4f} | {r['ssim_min']:.4f} |", "",
             "PSNR by causal chunk (frames): " + ", ".join(f"{k}: {v:.2f} dB" for k, v in r["chunks"].items()), "",
             "Training (from vae.json): " + "; ".join(f"{k}: {v}" for k, v in r["training"].items()), ""]
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--vae", required=True, help="an exported VAE folder (orbax params + vae.json)")
    p.add_argument("--data", required=True, help="a pixel dataset folder or a .npy of uint8 videos")
    p.add_argument("--split", default="test")
    p.add_argument("--num", type=int, default=64, help="clips (pixel dataset) or videos (.npy)")
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                                                  "vae_quality.md"))
    a = p.parse_args(argv)
    text = table(measure(a.vae, a.data, a.split, a.num))
    print(text)
    with atomic_path(a.out) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
