"""Main job (for now): ingest a reference video, build the target camera path, depth-warp the
reference into it, and write the conditioning renders.

    python -m star_jax.render --config experiments/render.py

Writes to `config.output_dir`:
  renders.mp4        the reference warped into the target cameras (black = no point)
  masks.mp4          white where a point landed (the validity mask the model is given)
  reference.mp4      the ingested reference clip (resized, cropped, resampled)
  contact_sheet.png  rows of reference | render | mask at a few frames
  conditions.npz     renders (T,H,W,3) uint8, masks (T,H,W) bool, target_w2c (T,4,4), K (T,3,3)
  metadata.json      inputs, depth source (measured / planar prior), timings
"""

from __future__ import annotations

import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.io import files as io
from star_jax.io.manifest import ManifestEntry, load_manifest, load_scene_geometry, planar_prior_geometry
from star_jax.io.video import VideoSpec, load_video
from star_jax.geometry import (
    foreground_depth,
    invert_rigid,
    keyframes_to_rel_c2w,
    load_w2c_file,
    parse_keyframe_file,
    source_frame_indices,
    target_w2c,
    warp_frames,
)
from star_jax.geometry.trajectory import TrajectoryError


def contact_sheet(columns: list[np.ndarray], num_rows: int = 4, stride: int = 2) -> np.ndarray:
    """Side-by-side rows of (T, H, W, 3) uint8 videos at `num_rows` evenly spaced frames,
    subsampled spatially by `stride`, with a 4-pixel white gutter."""
    T = columns[0].shape[0]
    rows = []
    for t in np.linspace(0, T - 1, min(num_rows, T)).round().astype(int):
        cells = [c[t, ::stride, ::stride] for c in columns]
        gutter = np.full((cells[0].shape[0], 4, 3), 255, np.uint8)
        rows.append(np.concatenate([x for cell in cells for x in (cell, gutter)][:-1], axis=1))
        rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1], axis=0)


def build_target_cameras(config, geometry, num_frames: int, radius_ratio: float = 1.0) -> tuple[np.ndarray, dict]:
    """Target w2c (T, 4, 4) from a per-frame w2c file or a keyframe trajectory.

    The orbit radius / dolly scale is foreground depth x config radius_ratio x `radius_ratio`
    (the manifest's own ratio)."""
    cam = config.camera
    if config.w2c_file:
        w2c = load_w2c_file(config.w2c_file)
        if len(w2c) < num_frames:
            raise TrajectoryError(f"{config.w2c_file}: {len(w2c)} matrices for {num_frames} frames")
        return w2c[:num_frames].astype(np.float32), {"source": config.w2c_file, "kind": "per-frame w2c"}
    traj = parse_keyframe_file(config.trajectory)
    fg = foreground_depth(geometry.depth[0]) * cam.radius_ratio * radius_ratio
    rel = keyframes_to_rel_c2w(traj, num_frames, fg, cam.rotation_only, cam.interpolation)
    src_c2w = invert_rigid(jnp.asarray(geometry.w2c))
    w2c = target_w2c(rel, src_c2w, cam.relative_to_source)
    info = {"source": config.trajectory, "kind": "dolly" if traj.is_dolly else "orbit", "foreground_depth": fg}
    return np.asarray(w2c), info


def render_conditions(config, geometry, frames: np.ndarray, tgt_w2c: np.ndarray, log=print):
    """Warps reference frames into the target cameras in fixed-size batches (one compile).

    Returns renders (T, H, W, 3) uint8 and masks (T, H, W) bool."""
    T, H, W, _ = frames.shape
    src = source_frame_indices(T, T, None if config.camera.freeze_frame < 0 else config.camera.freeze_frame)
    bs = max(1, min(config.warp.batch_frames, T))
    fn = jax.jit(warp_frames, static_argnames=("out_hw", "point_size"))
    renders, masks = [], []
    for start in range(0, T, bs):
        sel = np.arange(start, start + bs)
        real = sel < T
        sel = np.minimum(sel, T - 1)  # pad the last batch by repetition: same shapes, no recompile
        s = src[sel]
        out = fn(
            frames[s], geometry.depth[s], geometry.K[s], geometry.w2c[s], geometry.K[s], tgt_w2c[sel],
            out_hw=(H, W), point_size=config.warp.point_size,
        )
        renders.append(np.asarray(out.rgb)[real])
        masks.append(np.asarray(out.mask)[real])
        log(f"  warp frames {start:4d}-{min(start + bs, T) - 1:4d} / {T}")
    return np.concatenate(renders), np.concatenate(masks)


def load_reference(entry: ManifestEntry, config, log=print):
    """Ingests `entry.video` per `config.video_spec` and returns (clip, geometry): the entry's
    depth and cameras when it has them, else the planar prior of `config.camera` (logged)."""
    vs = dict(config.video_spec)
    spec = VideoSpec(height=vs["height"], width=vs["width"], fps=vs["fps"] or None, max_frames=vs["max_frames"] or None)
    clip = load_video(entry.video, spec)
    T, H, W, _ = clip.frames.shape
    log(f"ingested {entry.video}: {T} frames {H}x{W} at {clip.fps:g} fps (source {clip.source_size}, {clip.source_fps:g} fps)")
    if entry.depth_dir:
        return clip, load_scene_geometry(entry, clip)
    cam = config.camera
    log("no depth given: using a planar depth prior (renders show camera motion over a plane)")
    return clip, planar_prior_geometry(T, H, W, cam.planar_depth, cam.planar_fov_x_deg)


def run(config, log=print) -> dict:
    timings = {}
    t0 = time.perf_counter()
    if not (config.manifest or config.video):
        raise ValueError("config: set either `manifest` or `video`")
    entry = load_manifest(config.manifest)[0] if config.manifest else ManifestEntry(video=config.video, caption=config.caption)
    clip, geometry = load_reference(entry, config, log)
    T, H, W, _ = clip.frames.shape
    timings["ingest_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    tgt_w2c, cam_info = build_target_cameras(config, geometry, T, entry.radius_ratio)
    frames_f = clip.frames.astype(np.float32) / 255.0
    renders, masks = render_conditions(config, geometry, frames_f, tgt_w2c, log)
    renders = io.to_uint8(renders)
    timings["warp_s"] = time.perf_counter() - t1
    timings["warp_fps"] = T / timings["warp_s"]

    out = config.output_dir
    t2 = time.perf_counter()
    codec = io.write_mp4(os.path.join(out, "renders.mp4"), renders, clip.fps)
    io.write_mp4(os.path.join(out, "masks.mp4"), masks, clip.fps)
    io.write_mp4(os.path.join(out, "reference.mp4"), clip.frames, clip.fps)
    mask_rgb = np.repeat(io.to_uint8(masks)[..., None], 3, axis=-1)
    io.write_png(os.path.join(out, "contact_sheet.png"), contact_sheet([clip.frames, renders, mask_rgb]))
    io.write_npz(os.path.join(out, "conditions.npz"), renders=renders, masks=masks, target_w2c=tgt_w2c, K=geometry.K,
                 source_indices=clip.source_indices)
    timings["write_s"] = time.perf_counter() - t2
    timings["total_s"] = time.perf_counter() - t0
    meta = {
        "video": entry.video,
        "caption": entry.caption,
        "frames": T,
        "size_hw": [H, W],
        "fps": clip.fps,
        "depth": geometry.kind,
        "camera": cam_info,
        "valid_fraction_mean": float(masks.mean()),
        "codec": codec,
        "jax_backend": jax.default_backend(),
        "timings": timings,
    }
    io.write_json(os.path.join(out, "metadata.json"), meta)
    log(f"wrote {out}/: renders.mp4 masks.mp4 reference.mp4 contact_sheet.png conditions.npz metadata.json "
        f"(valid {meta['valid_fraction_mean']:.1%}, warp {timings['warp_fps']:.1f} frames/s, total {timings['total_s']:.1f}s)")
    return meta


def main(argv):
    del argv
    run(_CONFIG.value)


if __name__ == "__main__":
    from absl import app
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", "experiments/render.py", "experiment config", lock_config=True)
    sys.path.insert(0, os.getcwd())
    app.run(main)
