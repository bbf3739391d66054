"""Depth warp: throughput at 480x832 for both warp recipes (jitted JAX, batched over frames, vs
each recipe's float64 NumPy twin, same process), and accuracy on real Kinect RGB-D frames
(7-Scenes redkitchen: warp frame i into frame j's camera, RGB error to the real frame j on the
warp's mask). Prints markdown tables; numbers go to benchmarks/RESULTS.md.

    python -m benchmarks.warp_bench [--frames 4] [--repeats 3] [--point-size 2] [--skip-speed]
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import jax
import numpy as np

from benchmarks.common import best_time
from star_jax.geometry import intrinsics_matrix, warp_frames
from star_jax.geometry.warp import warp_recipe
from tests.geometry.reference_warp import warp_reference, warp_reference_release

SEVEN_SCENES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                             "rgbd_7scenes_redkitchen"))
PAIRS = [(150, 151), (150, 155), (150, 160), (170, 180), (185, 195)]


def scene(T, H, W, seed=0):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(size=(T, H, W, 3)).astype(np.float32)
    depth = rng.uniform(1.0, 3.0, size=(T, H, W)).astype(np.float32)
    K = np.asarray(intrinsics_matrix(0.8 * W, 0.8 * W, (W - 1) / 2, (H - 1) / 2))
    w2c_t = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    w2c_t[:, 0, 3] = np.linspace(0.0, 0.2, T)
    return rgb, depth, K, np.eye(4, dtype=np.float32), w2c_t


def speed_rows(T, H, W, point_size, repeats):
    rgb, depth, K, eye, w2c_t = scene(T, H, W)
    fn = jax.jit(warp_frames, static_argnames=("out_hw", "point_size", "recipe"))
    args = (rgb, depth, K, eye, K, w2c_t)
    twins = {"star-jax-v0": lambda: warp_reference(rgb[0], depth[0], K, eye, K, w2c_t[0], point_size=point_size),
             "inspatio-release": lambda: warp_reference_release(rgb[0], depth[0], K, eye, K, w2c_t[0],
                                                                point_size=point_size)}
    rows = []
    for mode, twin in twins.items():
        recipe = warp_recipe(mode, point_size)
        jax_s = best_time(lambda: jax.block_until_ready(fn(*args, recipe=recipe)), repeats) / T
        ref_s = best_time(twin, 1)
        rows.append((mode, "jax warp_frames (jit, batched)", jax_s, ref_s / jax_s))
        rows.append((mode, "numpy float64 twin", ref_s, 1.0))
    return rows


def seven_scenes_rows(point_size):
    from tests.geometry.test_warp import seven_scenes_errors

    release = warp_recipe("inspatio-release", point_size)
    recipes = {"star-jax-v0": warp_recipe("star-jax-v0", point_size), "inspatio-release": release,
               "release, ties to first index": dataclasses.replace(release, last_wins=False)}
    rows = []
    for i, j in PAIRS:
        for name, recipe in recipes.items():
            rows.append((f"{i} -> {j}", name, *seven_scenes_errors(SEVEN_SCENES, i, j, recipe)))
    return rows


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--frames", type=int, default=4)
    p.add_argument("--height", type=int, default=480)
    p.add_argument("--width", type=int, default=832)
    p.add_argument("--point-size", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-speed", action="store_true")
    a = p.parse_args()
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), point_size {a.point_size}")
    if not a.skip_speed:
        print(f"\n{a.height}x{a.width}, batch {a.frames}\n")
        print(f"| {'recipe':18s} | {'implementation':32s} | {'ms / frame':>10s} | {'frames / s':>10s} | "
              f"{'vs twin':>7s} |")
        print(f"|{'-' * 20}|{'-' * 34}|{'-' * 12}|{'-' * 12}|{'-' * 9}|")
        for mode, name, s, speedup in speed_rows(a.frames, a.height, a.width, a.point_size, a.repeats):
            print(f"| {mode:18s} | {name:32s} | {s * 1e3:10.1f} | {1.0 / s:10.2f} | {speedup:6.1f}x |")
    if os.path.isdir(SEVEN_SCENES):
        print("\n7-Scenes redkitchen, 640x480, MAE of RGB (0..1) to the real target frame on the warp's mask\n")
        print(f"| {'source -> target':16s} | {'recipe':28s} | {'warped':>6s} | {'unwarped':>8s} | "
              f"{'valid (of Kinect coverage)':26s} |")
        print(f"|{'-' * 18}|{'-' * 30}|{'-' * 8}|{'-' * 10}|{'-' * 28}|")
        for pair, name, err_w, err_s, valid, covered in seven_scenes_rows(a.point_size):
            print(f"| {pair:16s} | {name:28s} | {err_w:6.4f} | {err_s:8.4f} | {valid:.3f} ({covered:.3f}){'':13s} |")
    else:
        print(f"\n(no {SEVEN_SCENES}: 7-Scenes table skipped)")


if __name__ == "__main__":
    main()
