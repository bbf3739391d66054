"""Renders the embedded default world, `star_jax/assets/default_world/` (package data).

    python -m data_pipelines.make_default_world           # regenerate it (~15 s on 2 CPU cores)
    python -m data_pipelines.make_default_world --check   # re-render it and compare with the stored files

A HELD-OUT procedural world for the embedded tiny model (`star_jax/assets/tiny_model/`): world
seed SEED of `data_pipelines.worlds.sample_world`, textured (the worlds' default appearance), at
the model's training resolution (96x160). Seed SEED % 10 == 9, so `synth_worlds`' held-out rule
(seed % k == k - 1 with k = 10, the default test fraction) puts it in every dataset's "test"
split: no model here was trained on it. 45 frames (3 s at 15 fps) = the 4 blocks of the default
navigation run; the world's own camera paths, drawn from its seed (an orbit out and back, the
target; a gentle pan, the source), stretched over those 45 frames. It is written as an InSpatio
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
    world.json         what made it: the seed, the settings, the scene, the command

The script is deterministic, and `--check` (run by tests/test_default_world.py) re-renders the
world and compares it with the stored files, so the asset cannot drift from the generator
unnoticed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys

import numpy as np

from data_pipelines.worlds import WorldSample, WorldSpec, quantize_depth, sample_world, trajectory_text
from star_jax.io import files as io

ASSET_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "star_jax", "assets",
                         "default_world")
SEED = 69  # a test world: 69 % 10 == 9 (orbit 26 degrees left and back, caption with two moving objects)
TEST_EVERY = 10  # synth_worlds.test_every(0.1): seed % 10 == 9 is held out of every train split
DEPTH_SCALE = 0.001  # metres per PNG code
CRF = 12  # H.264 quality of both videos
SPEC = WorldSpec(height=96, width=160, num_frames=45, fps=15.0, fov_x_deg=70.0, supersample=2,
                 depth_quantum=DEPTH_SCALE)

_FILES = ("manifest.json", "source.mp4", "target.mp4", "source_w2c.txt", "target_w2c.txt", "K.txt",
          "trajectory.txt", "world.json")


def build() -> WorldSample:
    """The world: sample_world(SEED, SPEC) (source and target videos, depth, cameras, caption)."""
    return sample_world(SEED, SPEC)


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


def world_record(sample: WorldSample) -> dict:
    """world.json: what made the asset (compared by --check)."""
    return {
        "generator": "python -m data_pipelines.make_default_world",
        "world": f"data_pipelines.worlds.sample_world(seed={SEED}, spec), textured (the default appearance)",
        "seed": SEED, "held_out": f"seed % {TEST_EVERY} == {TEST_EVERY - 1}: a test world of every synth_worlds "
                                  f"dataset (test_fraction 0.1), never trained on",
        "spec": dataclasses.asdict(SPEC),
        "scene": dataclasses.asdict(sample.scene),
        "source_path": {"kind": sample.source_path.kind,
                        "keyframes": trajectory_text(sample.source_path.trajectory)},
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
        io.write_json(os.path.join(tmp, "world.json"), world_record(sample))
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
        _write_text(os.path.join(tmp, "trajectory.txt"), trajectory_text(sample.target_trajectory))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def check(folder: str = ASSET_DIR, sample: WorldSample | None = None, min_psnr: float = 30.0) -> list[str]:
    """Compares the stored asset with a re-render (`sample`, default `build()`): world.json, the
    caption, cameras, K, trajectory, every frame of both videos and every depth map. Returns the
    problems found (none: []).

    The videos are H.264 (4:2:0 chroma), which keeps them > 30 dB from the exact renders at
    CRF 12; any change of texture, motion or camera drops far below `min_psnr`."""
    from star_jax.geometry import load_w2c_file, parse_keyframe_file
    from star_jax.io.manifest import load_manifest, read_depth
    from star_jax.io.video import VideoSpec, load_video

    missing = [f for f in _FILES if not os.path.isfile(os.path.join(folder, f))]
    if missing:
        return [f"{folder}: missing {', '.join(missing)}"]
    sample = build() if sample is None else sample
    problems = []
    with open(os.path.join(folder, "world.json"), encoding="utf-8") as f:
        if json.load(f) != json.loads(json.dumps(world_record(sample))):
            problems.append("world.json differs from the generator's seed / scene / settings")
    if load_manifest(os.path.join(folder, "manifest.json"))[0].caption != sample.caption:
        problems.append("manifest.json: the caption differs from the generator's")
    for name, want in (("source_w2c.txt", sample.source_w2c), ("target_w2c.txt", sample.target_w2c)):
        got = load_w2c_file(os.path.join(folder, name))
        if got.shape != want.shape or not np.allclose(got, want, atol=1e-5):
            problems.append(f"{name}: cameras differ from the generator's")
    if not np.allclose(np.loadtxt(os.path.join(folder, "K.txt")), SPEC.intrinsics(), atol=1e-4):
        problems.append("K.txt differs from the generator's intrinsics")
    traj = parse_keyframe_file(os.path.join(folder, "trajectory.txt"))
    if trajectory_text(traj) != trajectory_text(sample.target_trajectory):
        problems.append("trajectory.txt differs from the generator's")
    spec = VideoSpec(height=SPEC.height, width=SPEC.width, fps=SPEC.fps)
    for name, want in (("source", sample.source_rgb), ("target", sample.target_rgb)):
        got = load_video(os.path.join(folder, f"{name}.mp4"), spec).frames
        if got.shape != want.shape:
            problems.append(f"{name}.mp4: {got.shape} frames, the generator renders {want.shape}")
            continue
        worst = min(range(len(got)), key=lambda t: psnr(got[t], want[t]))
        p = psnr(got[worst], want[worst])
        if p < min_psnr:
            problems.append(f"{name}.mp4 frame {worst}: PSNR {p:.1f} dB against a re-render (< {min_psnr})")
    code, _ = quantize_depth(sample.source_depth, DEPTH_SCALE)
    for t in range(SPEC.num_frames):
        png = os.path.join(folder, "depth", f"depth_{t:04d}.png")
        if not os.path.isfile(png):
            problems.append(f"depth/depth_{t:04d}.png: missing")
            continue
        stored = np.round(read_depth(png, 1.0)).astype(np.int64)
        diff = np.abs(stored - code[t].astype(np.int64))
        if diff.max() > 1 or (diff > 0).mean() > 1e-3:
            problems.append(f"depth/depth_{t:04d}.png: differs from a re-render (max {diff.max()} mm)")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=ASSET_DIR, help="asset folder (default: the package's)")
    parser.add_argument("--check", action="store_true", help="re-render the world and compare, write nothing")
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
    print(f"wrote {args.out}: world seed {SEED}, {SPEC.num_frames} frames {SPEC.height}x{SPEC.width}, "
          f"{size / 1e6:.2f} MB; caption: {sample.caption}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
