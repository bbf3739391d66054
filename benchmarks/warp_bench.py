"""Depth-warp throughput at 480x832: jitted JAX warp (batched over frames) vs the float64 NumPy
reference twin, in the same process. Prints a table; numbers go to benchmarks/RESULTS.md.

    python -m benchmarks.warp_bench [--frames 8] [--repeats 3] [--point-size 2]
"""

from __future__ import annotations

import argparse

import jax
import numpy as np

from benchmarks.common import best_time
from star_jax.geometry import intrinsics_matrix, warp_frames
from tests.geometry.reference_warp import warp_reference


def scene(T, H, W, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(size=(T, H, W, 3)).astype(np.float32)
    depth = rng.uniform(1.0, 3.0, size=(T, H, W)).astype(np.float32)
    K = np.asarray(intrinsics_matrix(0.8 * W, 0.8 * W, (W - 1) / 2, (H - 1) / 2))
    w2c_t = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    w2c_t[:, 0, 3] = np.linspace(0.0, 0.2, T)
    return rgb, depth, K, np.eye(4, dtype=np.float32), w2c_t


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--point-size", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    T, H, W = a.frames, a.height, a.width
    rgb, depth, K, eye, w2c_t = scene(T, H, W)
    fn = jax.jit(warp_frames, static_argnames=("out_hw", "point_size"))
    args = (rgb, depth, K, eye, K, w2c_t)
    jax_s = best_time(lambda: jax.block_until_ready(fn(*args, point_size=a.point_size)), a.repeats)
    ref_s = best_time(lambda: warp_reference(rgb[0], depth[0], K, eye, K, w2c_t[0], point_size=a.point_size), 1)
    rows = [
        ("jax warp_frames (jit, batched)", jax_s / T, T / jax_s),
        ("numpy float64 twin (reference)", ref_s, 1.0 / ref_s),
    ]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), {H}x{W}, point_size {a.point_size}, "
          f"batch {T}")
    print(f"| {'implementation':34s} | {'ms / frame':>10s} | {'frames / s':>10s} | {'speed-up':>8s} |")
    print(f"|{'-' * 36}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    for name, s, fps in rows:
        print(f"| {name:34s} | {s * 1e3:10.1f} | {fps:10.2f} | {rows[1][1] / s:7.1f}x |")


if __name__ == "__main__":
    main()
