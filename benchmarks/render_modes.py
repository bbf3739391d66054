"""The four warp modes side by side (issues 11 and 15): real 7-Scenes pairs, a zoom that shows
cracks, and speed on this machine. Prints markdown tables; numbers go to benchmarks/RESULTS.md.

  real pairs  7-Scenes redkitchen (640x480): frame i warped into frame j with the true Kinect depth
              and poses, compared with the real frame j. coverage = mask fraction; PSNR (RGB in
              0..1) inside the mask; holes = the fraction of the pixels that should be rendered
              which the mask misses, where "should" = frame j's own depth reprojects into frame i
              on a valid depth within 5 % (frame j sees a surface that frame i also sees);
              cracks = 1-px holes (a hole pixel whose left and right, or upper and lower,
              neighbours are rendered), per 1000 pixels.
  zoom        a textured fronto-parallel plane filling the view, the camera moved forward to
              1 / zoom of its distance: every target pixel should be rendered (holes = cracks);
              and 7-Scenes frame 150 with the camera moved forward by half its median depth.
  speed       ms per frame, jitted `warp_frames` batched over frames, at 96x160 and 480x832.

    python -m benchmarks.render_modes [--repeats 3] [--skip-speed] [--out /work/runs/s22/D]
"""

from __future__ import annotations

import argparse
import os

import jax
import numpy as np

from benchmarks.common import best_time
from star_jax.geometry import intrinsics_matrix, warp_frames
from star_jax.geometry.warp import warp_recipe

SEVEN_SCENES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data",
                                             "rgbd_7scenes_redkitchen"))
MODES = ("inspatio-release", "star-jax-v0", "star-jax-v1", "inspatio-1.5")
PAIRS = [(150, 151), (150, 155), (150, 160), (150, 170), (170, 190)]
WARP = jax.jit(warp_frames, static_argnames=("out_hw", "recipe"))


def render(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, mode, out_hw=None):
    out = WARP(rgb[None], depth[None], K_src, w2c_src, K_tgt, w2c_tgt[None], out_hw=out_hw,
               recipe=warp_recipe(mode, 2))
    return np.asarray(out.rgb[0]), np.asarray(out.mask[0])


def crack_rate(mask, region):
    """1-px holes inside `region` per 1000 region pixels."""
    hole = ~mask
    h = hole[:, 1:-1] & mask[:, :-2] & mask[:, 2:]
    v = hole[1:-1] & mask[:-2] & mask[2:]
    crack = np.zeros_like(mask)
    crack[:, 1:-1] |= h
    crack[1:-1] |= v
    return 1000.0 * (crack & region).sum() / max(region.sum(), 1)


def load(folder, i):
    from tests.geometry.test_warp import load_7scenes

    return load_7scenes(folder, i)


def should_render(depth_j, w2c_j, depth_i, w2c_i, K, tol=0.05):
    """Pixels of frame j whose surface frame i also sees (reprojection onto a consistent depth)."""
    H, W = depth_j.shape
    v, u = np.mgrid[:H, :W].astype(np.float64)
    Kinv = np.linalg.inv(K.astype(np.float64))
    cam = (Kinv @ np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3).T).T * depth_j.reshape(-1, 1)
    rel = w2c_i.astype(np.float64) @ np.linalg.inv(w2c_j.astype(np.float64))
    q = cam @ rel[:3, :3].T + rel[:3, 3]
    z = q[:, 2]
    ok = (depth_j.reshape(-1) > 0) & (z > 1e-3)
    uv = (K.astype(np.float64) @ q.T).T[:, :2] / np.where(ok, z, 1.0)[:, None]
    ui, vi = np.round(uv[:, 0]).astype(np.int64), np.round(uv[:, 1]).astype(np.int64)
    ok &= (ui >= 0) & (ui < W) & (vi >= 0) & (vi < H)
    d_i = np.where(ok, depth_i[np.clip(vi, 0, H - 1), np.clip(ui, 0, W - 1)], 0.0)
    ok &= (d_i > 0) & (np.abs(d_i - z) < tol * z)
    return ok.reshape(H, W)


def psnr(a, b):
    mse = float(np.mean((a - b) ** 2)) if a.size else float("nan")
    return 10 * np.log10(1.0 / mse) if mse > 0 else float("inf")


def real_rows(folder):
    K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")).astype(np.float32)
    rows = []
    for i, j in PAIRS:
        rgb_i, depth_i, w2c_i = load(folder, i)
        rgb_j, depth_j, w2c_j = load(folder, j)
        region = should_render(depth_j, w2c_j, depth_i, w2c_i, K)
        for mode in MODES:
            out, mask = render(rgb_i, depth_i, K, w2c_i, K, w2c_j, mode)
            rows.append({"pair": f"{i} -> {j}", "mode": mode, "coverage": float(mask.mean()),
                         "psnr": psnr(out[mask], rgb_j[mask]), "holes": float((~mask & region).sum() / region.sum()),
                         "cracks_per_1000": crack_rate(mask, region)})
    return rows


def zoom_rows(folder):
    rows = []
    H, W, f, Z = 96, 160, 120.0, 4.0
    K = np.asarray(intrinsics_matrix(f, f, W / 2 - 0.5, H / 2 - 0.5))
    rgb = np.random.default_rng(0).uniform(size=(H, W, 3)).astype(np.float32)
    eye = np.eye(4, dtype=np.float32)
    for zoom in (1.5, 2.0, 3.0):
        t = eye.copy()
        t[2, 3] = -Z * (1 - 1 / zoom)
        for mode in MODES:
            _, mask = render(rgb, np.full((H, W), Z, np.float32), K, eye, K, t, mode)
            rows.append({"case": f"plane, zoom {zoom:g}x", "mode": mode, "holes": float((~mask).mean()),
                         "cracks_per_1000": crack_rate(mask, np.ones_like(mask))})
    if folder:
        K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")).astype(np.float32)
        rgb_i, depth_i, w2c_i = load(folder, 150)
        t = w2c_i.copy()
        t[2, 3] -= 0.5 * float(np.median(depth_i[depth_i > 0]))  # forward along the camera's own z
        for mode in MODES:
            _, mask = render(rgb_i, depth_i, K, w2c_i, K, t, mode)
            full = np.ones_like(mask)
            rows.append({"case": "7-Scenes 150, forward 0.5 median depth", "mode": mode,
                         "holes": float((~mask).mean()), "cracks_per_1000": crack_rate(mask, full)})
    return rows


def speed_rows(repeats):
    rows = []
    for (H, W), T in (((96, 160), 8), ((480, 832), 1)):
        rng = np.random.default_rng(0)
        rgb = rng.uniform(size=(T, H, W, 3)).astype(np.float32)
        depth = 2.0 + 0.5 * np.sin(np.arange(W) / 7.0)[None, None] + rng.uniform(0, 0.02, (T, H, W))
        depth = depth.astype(np.float32)
        K = np.asarray(intrinsics_matrix(0.8 * W, 0.8 * W, (W - 1) / 2, (H - 1) / 2))
        w2c_t = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
        w2c_t[:, 0, 3] = np.linspace(0.0, 0.2, T)
        w2c_t[:, 2, 3] = -0.5
        for mode in MODES:
            recipe = warp_recipe(mode, 2)
            fn = lambda: jax.block_until_ready(WARP(rgb, depth, K, np.eye(4, dtype=np.float32), K, w2c_t,
                                                    recipe=recipe))
            ms = 1e3 * best_time(fn, repeats) / T
            rows.append({"size": f"{H}x{W}", "batch": T, "mode": mode, "ms_per_frame": ms})
    return rows


def table(rows, cols, fmt):
    print("| " + " | ".join(cols) + " |")
    print("|" + "|".join("-" * (len(c) + 2) for c in cols) + "|")
    for r in rows:
        print("| " + " | ".join(fmt[c](r[c]) if c in fmt else str(r[c]) for c in cols) + " |")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--skip-speed", action="store_true")
    p.add_argument("--out", default="", help="folder for results.json (optional)")
    a = p.parse_args()
    folder = SEVEN_SCENES if os.path.isdir(SEVEN_SCENES) else ""
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), point_size 2")
    f3, f1 = (lambda x: f"{x:.3f}"), (lambda x: f"{x:.1f}")
    results = {}
    if folder:
        print("\n7-Scenes redkitchen 640x480, frame i warped into frame j (true depth and poses)\n")
        results["real"] = real_rows(folder)
        table(results["real"], ["pair", "mode", "coverage", "psnr", "holes", "cracks_per_1000"],
              {"coverage": f3, "psnr": lambda x: f"{x:.2f}", "holes": f3, "cracks_per_1000": f1})
    else:
        print(f"\n(no {SEVEN_SCENES}: real-frame tables skipped)")
    print("\nzoom: holes where every pixel should be rendered\n")
    results["zoom"] = zoom_rows(folder)
    table(results["zoom"], ["case", "mode", "holes", "cracks_per_1000"], {"holes": f3, "cracks_per_1000": f1})
    if not a.skip_speed:
        print("\nspeed: jitted warp_frames, best of --repeats after a warm-up\n")
        results["speed"] = speed_rows(a.repeats)
        table(results["speed"], ["size", "batch", "mode", "ms_per_frame"], {"ms_per_frame": f1})
    if a.out:
        from star_jax.io.files import write_json

        os.makedirs(a.out, exist_ok=True)
        write_json(os.path.join(a.out, "render_modes.json"), results)


if __name__ == "__main__":
    main()
