"""Camera control and 3D consistency (`star_jax.evaluation.sfm` + `camera_control`) on videos with
a known camera path, and their time. Prints a markdown table and writes it, with the raw numbers,
under --out.

    nice -n 5 python -m benchmarks.eval_geometry [--out /work/runs/s22/A]

Cases (the commanded path is the true one, so a perfect estimator scores 1 on camera control):
- 7-Scenes redkitchen frames 150-199 (50 real hand-held Kinect frames, 640x480, true poses from
  KinectFusion, the dataset's nominal K fx = 585; skipped when ../shared/data is absent);
- the ray-cast textured room of tests/evaluation/test_sfm.py, 45 frames at 480x832 along its
  slide-and-turn path (a static rigid scene: 3D consistency should be near perfect);
- a procedural world of `data_pipelines.worlds` (seed 0: its target video, 45 frames 240x416, an
  orbit / dolly about the foreground; its objects may move, which SfM treats as inconsistency);
- the same room video with its frames shuffled (camera control must drop), under a growing
  smooth non-rigid warp of up to 3 px (3D consistency must drop), and its first frame repeated
  while the path was commanded (camera control must drop, 3D consistency is degenerate);
- 45 frames of the shared coffee_martini clip at 480x832 (a real static camera, a moving person;
  commanded static, default K): camera control near 1, 3D consistency degenerate.
Each row: rotation error e_R (deg), translation error e_t (fraction of the path's extent),
camera-control score, registered frames, reprojection error after BA (px at 1/8 of a 512^2-area
frame, WorldScore's unit) and 3D-consistency score, wall and CPU seconds for the reconstruction and
both metrics, and the machine's 1-minute load average (the CPU is shared: wall time varies 2x).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import cv2
import numpy as np

from star_jax.evaluation import camera_control as cc
from star_jax.evaluation import sfm
from star_jax.io.files import atomic_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _room(T: int, hw: tuple[int, int]):
    sys.path.insert(0, ROOT)
    from tests.evaluation.test_sfm import render_room, room_path

    H, W = hw
    f = 0.8 * W
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])
    c2w = room_path(T)
    return render_room(c2w, K, hw), np.linalg.inv(c2w), K


def _nonrigid(frames: np.ndarray, amplitude: float = 3.0) -> np.ndarray:
    T, H, W = frames.shape[:3]
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    out = []
    for i, f in enumerate(frames):
        a = amplitude * i / max(T - 1, 1)
        du, dv = a * np.sin(2 * np.pi * v / (0.37 * H) + i), a * np.cos(2 * np.pi * u / (0.26 * W) - i)
        out.append(cv2.remap(f, u + du, v + dv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    return np.stack(out)


def _world(out: str, seed: int = 0):
    """The world's target video, cameras and K (rendering takes a minute: cached under `out`)."""
    cache = os.path.join(out, f"world{seed}.npz")
    if not os.path.exists(cache):
        sys.path.insert(0, ROOT)
        from data_pipelines.worlds.sample import sample_world

        s = sample_world(seed)
        with atomic_path(cache) as p:
            np.savez(p, rgb=s.target_rgb, w2c=s.target_w2c, K=s.K)
    d = np.load(cache)
    return d["rgb"], d["w2c"].astype(np.float64), d["K"].astype(np.float64)


def _coffee():
    """45 frames of the shared coffee_martini clip at 480x832, 15 fps (a static camera), or None."""
    from star_jax.io.video import VideoSpec, load_video

    path = os.path.join(ROOT, "..", "shared", "data", "reference_videos", "coffee_martini.mp4")
    if not os.path.exists(path):
        return None
    return load_video(path, VideoSpec(height=480, width=832, fps=15, max_frames=45)).frames


def _seven_scenes():
    sys.path.insert(0, ROOT)
    from tests.evaluation.test_sfm import load_seven_scenes

    return load_seven_scenes()


def evaluate(name: str, frames, w2c, K) -> dict:
    t0, c0 = time.perf_counter(), time.process_time()
    rec = sfm.reconstruct(frames, K)
    cam = cc.camera_control(frames, w2c, K, rec)
    con = cc.consistency_3d(frames, K, rec)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    row = {"case": name, "frames": f"{len(frames)} x {frames.shape[1]}x{frames.shape[2]}", "seconds": seconds,
           "cpu_seconds": cpu, "load_average": os.getloadavg()[0],
           "registered": int(rec.registered.sum()), "model": rec.model,
           "camera_control": cam.to_json(), "3d_consistency": con.to_json()}
    return row


def _fmt(row: dict) -> str:
    cam, con = row["camera_control"], row["3d_consistency"]
    if cam["ok"]:
        c = f"{cam['raw']['rotation_deg']:.2f} | {cam['raw']['translation']:.3f} | {cam['score']:.3f}"
    else:
        c = f"failed: {cam['reason']} | | "
    d = f"{con['raw']:.3f} | {con['score']:.3f}" if con["ok"] else f"failed: {con['reason'][:60]} |"
    t = f"{row['seconds']:.1f} | {row['cpu_seconds']:.1f} | {row['load_average']:.1f}"
    return f"| {row['case']} | {row['frames']} | {c} | {row['registered']} | {d} | {t} |"


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="/work/runs/s22/A", help="folder for eval_geometry.md / .json")
    args = ap.parse_args(argv)
    rows = []
    data = _seven_scenes()
    if data is not None:
        frames, w2c, K = data
        rows.append(evaluate("7-Scenes redkitchen 150-199 (true poses)", frames, w2c, K))
        print(_fmt(rows[-1]), flush=True)
    frames, w2c, K = _room(45, (480, 832))
    rows.append(evaluate("ray-cast room, slide + turn", frames, w2c, K))
    print(_fmt(rows[-1]), flush=True)
    rng = np.random.default_rng(0)
    rows.append(evaluate("ray-cast room, frames shuffled", frames[rng.permutation(len(frames))], w2c, K))
    print(_fmt(rows[-1]), flush=True)
    rows.append(evaluate("ray-cast room, non-rigid warp <= 3 px", _nonrigid(frames), w2c, K))
    print(_fmt(rows[-1]), flush=True)
    rows.append(evaluate("ray-cast room, static camera (motion commanded)", np.repeat(frames[:1], 45, 0), w2c, K))
    print(_fmt(rows[-1]), flush=True)
    frames, w2c, K = _world(args.out, 0)
    rows.append(evaluate("procedural world seed 0 (target path)", frames, w2c, K))
    print(_fmt(rows[-1]), flush=True)
    frames = _coffee()
    if frames is not None:
        still = np.tile(np.eye(4), (len(frames), 1, 1))
        rows.append(evaluate("coffee_martini (real, static camera, commanded static)", frames, still, None))
        print(_fmt(rows[-1]), flush=True)
    head = ("| case | frames | e_R deg | e_t | camera score | registered | reprojection (1/8 px) | 3D score "
            "| s | cpu s | load |\n"
            "|---|---|---|---|---|---|---|---|---|---|---|")
    table = head + "\n" + "\n".join(_fmt(r) for r in rows)
    print(table)
    os.makedirs(args.out, exist_ok=True)
    with atomic_path(os.path.join(args.out, "eval_geometry.md")) as p, open(p, "w") as f:
        f.write(table + "\n")
    with atomic_path(os.path.join(args.out, "eval_geometry.json")) as p, open(p, "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
