"""Renders the embedded default world, `star_jax/assets/default_world/` (package data).

    python -m data_pipelines.make_default_world           # regenerate it (~3 min on 2 CPU cores)
    python -m data_pipelines.make_default_world --check   # re-render a few frames and compare

One short dynamic scene made by the project's own generator (`data_pipelines.worlds`): a walled
courtyard with boxes and spheres, a sphere circling and a box sliding, 45 frames (3 s at 15 fps,
the frames of the default 4-block navigation run) at 240x416. It is written as an InSpatio
manifest, so the jobs' default input goes through the same ingest as any user's:

    manifest.json      video + depth_dir + extrinsics + intrinsics + depth_scale + caption
    source.mp4         the reference video (H.264)
    depth/             one 16-bit PNG per source frame, z-depth in millimetres (0 = sky)
    source_w2c.txt     OpenCV world-to-camera per source frame (16 numbers a line)
    K.txt              intrinsics (3 rows of 3), the same for every frame and both cameras
    trajectory.txt     the default camera path (InSpatio keyframes: pitch, yaw, displacement)
    target.mp4         ground truth: the same scene at the same times seen along trajectory.txt
                       read against this clip as the jobs read it (45 frames)
    target_w2c.txt     those target cameras
    world.json         what made it: the scene, the settings, the command

The scene, the cameras and the settings are the constants below; the script is deterministic,
and `--check` (run by tests/test_default_world.py) re-renders frames and compares them with the
stored files, so the asset cannot drift from the generator unnoticed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from data_pipelines.worlds import (
    Box,
    CameraPath,
    Motion,
    Scene,
    Sphere,
    Texture,
    WorldSample,
    WorldSpec,
    courtyard,
    keyframes,
    look_at,
    quantize_depth,
    render_depth,
    render_pair,
    render_view,
    source_cameras,
    target_cameras,
    trajectory_text,
)
from star_jax.io import files as io

ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "star_jax", "assets",
                         "default_world")
DEPTH_SCALE = 0.001  # metres per PNG code
CRF = 12  # H.264 quality of both videos

SPEC = WorldSpec(height=240, width=416, num_frames=45, fps=15.0, fov_x_deg=70.0, supersample=2,
                 depth_quantum=DEPTH_SCALE)
SCENE = Scene(
    courtyard(6.0, 3.0, Texture("tiles", "sand", "white", 0.8, seed=11), (
        Texture("stripes", "white", "teal", 0.35, seed=12),  # north: ahead of the source camera
        Texture("noise", "brown", "sand", 0.6, seed=13),
        Texture("tiles", "grey", "white", 0.5, seed=14),
        Texture("checker", "pink", "white", 0.5, seed=15),
    )) + (
        Box((0.0, 0.6, 1.0), (0.6, 0.6, 0.6), Texture("checker", "red", "white", 0.3, seed=21), yaw_deg=30.0),
        Box((-1.9, 0.9, 2.6), (0.4, 0.9, 0.4), Texture("tiles", "blue", "white", 0.25, seed=22), yaw_deg=-15.0),
        Sphere((-1.1, 0.35, -0.6), 0.35, Texture("checker", "purple", "yellow", 0.2, seed=23)),
        Sphere((1.5, 0.45, 0.0), 0.45, Texture("stripes", "yellow", "orange", 0.15, seed=24),
               Motion(circle_radius=0.7, period_s=3.0, spin_dps=120.0)),
        Box((2.0, 0.3, 2.8), (0.3, 0.3, 0.3), Texture("noise", "green", "white", 0.2, seed=25),
            motion=Motion(shift=(-1.0, 0.0, 0.0), period_s=3.0)),
    ),
    sun=(0.45, 0.8, -0.4),
)
BASE_C2W = look_at((0.0, 1.7, -4.0), (0.0, 0.6, 1.2))
SOURCE_PATH = CameraPath("orbit", keyframes([0.0], [0.0, -8.0], [1.0]))  # a slow arc to the right
TRAJECTORY = keyframes([0.0, 6.0, 10.0, 6.0, 0.0], [0.0, 12.0, 25.0, 12.0, 0.0], [1.0], "trajectory.txt")
CHECK_FRAMES = (0, 22, 44)

_FILES = ("manifest.json", "source.mp4", "target.mp4", "source_w2c.txt", "target_w2c.txt", "K.txt",
          "trajectory.txt", "world.json")


def cameras() -> tuple[np.ndarray, np.ndarray]:
    """(source w2c, target w2c), each (45, 4, 4) float32."""
    src = source_cameras(SCENE, SPEC, BASE_C2W, SOURCE_PATH)
    return src, target_cameras(SCENE, SPEC, src, TRAJECTORY)


def build() -> WorldSample:
    src, tgt = cameras()
    return render_pair(SCENE, SPEC, src, tgt, SOURCE_PATH, TRAJECTORY)


def _matrix_lines(mats: np.ndarray, header: str) -> str:
    rows = (" ".join(f"{v:.9g}" for v in m.reshape(-1)) for m in mats)
    return f"# {header}\n" + "\n".join(rows) + "\n"


def _write_text(path: str, text: str) -> None:
    with io.atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


def _write_depth_png(path: str, code: np.ndarray) -> None:
    from PIL import Image

    with io.atomic_path(path) as tmp:
        Image.fromarray(code).save(tmp, format="PNG", optimize=True)


def world_record() -> dict:
    """world.json: what made the asset (compared by --check)."""
    return {
        "generator": "python -m data_pipelines.make_default_world",
        "spec": dataclasses.asdict(SPEC),
        "scene": dataclasses.asdict(SCENE),
        "source_base_c2w": BASE_C2W.tolist(),
        "source_path": {"kind": SOURCE_PATH.kind, "keyframes": trajectory_text(SOURCE_PATH.trajectory)},
        "target": {"video": "target.mp4", "w2c": "target_w2c.txt", "trajectory": "trajectory.txt",
                   "frames": SPEC.num_frames, "navigate_blocks": 4},
        "depth_scale": DEPTH_SCALE,
        "licence": "rendered by star-jax's own procedural generator; no third-party content",
    }


def write(sample: WorldSample, folder: str = ASSET_DIR) -> None:
    """Writes the asset into a fresh hidden folder beside `folder`, then swaps it in
    (`star_jax.io.files.staged_folder`: an interrupted run leaves the old asset as it was)."""
    with io.staged_folder(folder, _FILES + ("depth",)) as tmp:
        manifest = [{"video": "source.mp4", "caption": sample.caption, "depth_dir": "depth",
                     "extrinsics": "source_w2c.txt", "intrinsics": "K.txt", "depth_scale": DEPTH_SCALE}]
        io.write_json(os.path.join(tmp, "manifest.json"), manifest)
        io.write_json(os.path.join(tmp, "world.json"), world_record())
        io.write_mp4(os.path.join(tmp, "source.mp4"), sample.source_rgb, SPEC.fps, crf=CRF)
        io.write_mp4(os.path.join(tmp, "target.mp4"), sample.target_rgb, SPEC.fps, crf=CRF)
        code, _ = quantize_depth(sample.source_depth, DEPTH_SCALE)
        for t, c in enumerate(code):
            _write_depth_png(os.path.join(tmp, "depth", f"depth_{t:04d}.png"), c)
        _write_text(os.path.join(tmp, "source_w2c.txt"),
                    _matrix_lines(sample.source_w2c, "OpenCV world-to-camera, one 4x4 per line (row-major), per source frame"))
        _write_text(os.path.join(tmp, "target_w2c.txt"),
                    _matrix_lines(sample.target_w2c, "OpenCV world-to-camera of target.mp4, one 4x4 per line (row-major)"))
        _write_text(os.path.join(tmp, "K.txt"), "".join(" ".join(f"{v:.9g}" for v in row) + "\n" for row in sample.K))
        _write_text(os.path.join(tmp, "trajectory.txt"), trajectory_text(TRAJECTORY))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def check(folder: str = ASSET_DIR, frames=CHECK_FRAMES, min_psnr: float = 30.0) -> list[str]:
    """Re-renders `frames` of both videos and the source depth and compares them with the stored
    asset; also the cameras, K, trajectory and world.json. Returns the problems found (none: []).

    The videos are H.264 (4:2:0 chroma), which keeps them ~34 dB from the exact renders; any change
    of texture, motion or camera drops that far below `min_psnr`."""
    from star_jax.geometry import load_w2c_file, parse_keyframe_file
    from star_jax.io.manifest import read_depth
    from star_jax.io.video import VideoSpec, load_video

    problems = []
    missing = [f for f in _FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return [f"{folder}: missing {', '.join(missing)}"]
    with open(os.path.join(folder, "world.json"), encoding="utf-8") as f:
        if json.load(f) != json.loads(json.dumps(world_record())):
            problems.append("world.json differs from the generator's scene / settings")
    src, tgt = cameras()
    for name, want in (("source_w2c.txt", src), ("target_w2c.txt", tgt)):
        got = load_w2c_file(os.path.join(folder, name))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
            problems.append(f"{name}: cameras differ from the generator's")
    if not np.allclose(np.loadtxt(os.path.join(folder, "K.txt")), SPEC.intrinsics(), atol=1e-4):
        problems.append("K.txt differs from the generator's intrinsics")
    traj = parse_keyframe_file(os.path.join(folder, "trajectory.txt"))
    if trajectory_text(traj) != trajectory_text(TRAJECTORY):
        problems.append("trajectory.txt differs from the generator's")
    spec = VideoSpec(height=SPEC.height, width=SPEC.width, fps=SPEC.fps)
    videos = {n: load_video(os.path.join(folder, f"{n}.mp4"), spec).frames for n in ("source", "target")}
    K, hw = SPEC.intrinsics(), (SPEC.height, SPEC.width)
    for t in frames:
        time = float(SPEC.times()[t])
        for name, w2c in (("source", src), ("target", tgt)):
            rgb = io.to_uint8(render_view(SCENE, K, w2c[t], hw, time, SPEC.supersample).rgb)
            p = psnr(videos[name][t], rgb)
            if p < min_psnr:
                problems.append(f"{name}.mp4 frame {t}: PSNR {p:.1f} dB against a re-render (< {min_psnr})")
        code, _ = quantize_depth(render_depth(SCENE, K, src[t], hw, time), DEPTH_SCALE)
        stored = np.round(read_depth(os.path.join(folder, "depth", f"depth_{t:04d}.png"), 1.0)).astype(np.int64)
        diff = np.abs(stored - code.astype(np.int64))
        if diff.max() > 1 or (diff > 0).mean() > 1e-3:
            problems.append(f"depth/depth_{t:04d}.png: differs from a re-render (max {diff.max()} mm)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=ASSET_DIR, help="asset folder (default: the package's)")
    parser.add_argument("--check", action="store_true", help="re-render a few frames and compare, write nothing")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        for p in problems:
            print(p, file=sys.stderr)
        print(f"{args.out}: {'DRIFTED' if problems else 'matches the generator'}")
        return 1 if problems else 0
    sample = build()
    write(sample, args.out)
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(args.out) for f in fs)
    print(f"wrote {args.out}: {SPEC.num_frames} frames {SPEC.height}x{SPEC.width}, {size / 1e6:.2f} MB; "
          f"caption: {sample.caption}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
