"""The conditioning renders alone: ingest a reference video, build the target camera path,
depth-warp the reference into it, and write the renders (no model).

    python -m star_jax.render --config experiments/render.py
    python -m star_jax.render --config experiments/render.py --dry_run   # check the inputs only

Before anything heavy (decoding, compiling) `validate` opens every input: the config's sizes, the
video (header and first frame) or manifest (with its depth folder and camera files), the camera
path (keyframe trajectory or per-frame w2c, interpolation mode) and the output folder. The run is
written into a fresh hidden folder beside `config.output_dir` and swapped in at the end.

A 1.5 scene folder is accepted as the video; a four-image scene is rendered as 1.5 does
(`render_fused`): every view fused into each target, reference.mp4 the views assigned to each
latent by coverage (conditions.npz source_indices), the choice per block in the metadata.

Writes to `config.output_dir`:
  renders.mp4        the reference warped into the target cameras (black = no point)
  masks.mp4          white where a point landed (the validity mask the model is given)
  reference.mp4      the ingested reference clip (resized, cropped, resampled)
  contact_sheet.png  rows of reference | render | mask at a few frames
  conditions.npz     renders (T,H,W,3) uint8, masks (T,H,W) bool, target_w2c (T,4,4), K (T,3,3)
  metadata.json      inputs, the source video's size / frames / fps, depth source, timings
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Any

import jax
import numpy as np

from star_jax.errors import InputError
from star_jax.io import files as io
from star_jax.io.manifest import (
    ManifestEntry,
    check_manifest_entry,
    load_manifest,
    load_scene_geometry,
    planar_prior_geometry,
)
from star_jax.io.video import VideoProbe, VideoSpec, load_video
from star_jax.io.scene_folder import is_scene_folder, load_scene, probe_scene, read_scene_json, scene_clip
from star_jax.geometry import (
    WarpRecipe,
    load_w2c_file,
    parse_key_script_file,
    parse_keyframe_file,
    source_frame_indices,
    trajectory_target_w2c,
    warp_frames,
    warp_recipe,
)
from star_jax.geometry.controller import parse_moves
from star_jax.geometry.trajectory import TrajectoryError, check_interpolation_mode, check_positive_finite

OUTPUTS = ("renders.mp4", "masks.mp4", "reference.mp4", "contact_sheet.png", "conditions.npz", "metadata.json")


@dataclasses.dataclass(frozen=True)
class CameraSource:
    """A camera path as read from the user's file."""

    kind: str  # "trajectory" (KeyframeTrajectory), "w2c" ((N, 4, 4) float64) or "keys" (key sets per frame)
    path: str
    value: Any


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


def video_spec(config) -> VideoSpec:
    """The ingest settings of `config.video_spec` (VideoError for sizes / fps it cannot use)."""
    vs = dict(config.video_spec)
    return VideoSpec(height=vs["height"], width=vs["width"], fps=vs["fps"] or None, max_frames=vs["max_frames"] or None)


def reference_entry(config) -> ManifestEntry:
    """`config.video` (a bare video, with `config.caption`) when set, else `config.manifest`'s first entry."""
    if config.video:
        return ManifestEntry(video=config.video, caption=config.caption)
    if not config.manifest:
        raise InputError("config: expected a reference video: set --video / config.video or config.manifest, "
                         "found neither")
    return load_manifest(config.manifest)[0]


def check_camera_config(config) -> None:
    """Raises InputError for a `config.camera` / `config.warp` field no run could use."""
    cam = config.camera
    try:
        check_interpolation_mode(cam.interpolation)
    except TrajectoryError as e:
        raise InputError(f"config.camera.interpolation: {str(e).removeprefix('interpolation mode: ')}") from e
    for name in ("radius_ratio", "planar_depth"):
        check_positive_finite(cam[name], f"config.camera.{name}")
    if not 0 < cam.planar_fov_x_deg < 180:
        raise InputError(f"config.camera.planar_fov_x_deg: expected degrees in (0, 180), found {cam.planar_fov_x_deg}")
    if int(cam.freeze_frame) != cam.freeze_frame or cam.freeze_frame < -1:
        raise InputError(f"config.camera.freeze_frame: expected -1 (off) or a frame index >= 0, "
                         f"found {cam.freeze_frame}")
    # render names its recipe; navigate's follows the model's conditioning convention (point size only)
    warp_recipe(config.warp.get("mode", "inspatio-release"), config.warp.point_size)  # InputError names the field


def validate_reference(config) -> tuple[ManifestEntry, VideoProbe]:
    """Opens the reference without decoding it: the manifest (and its depth folder and camera
    files), the bare video, header and first frame, or a scene folder (`scene_folder.probe_scene`:
    scene.json, camera files, file headers). Returns (entry, probe)."""
    spec = video_spec(config)
    ckpt = config.get("geometry_checkpoint")
    if ckpt and not os.path.exists(ckpt):
        raise InputError(f"config.geometry_checkpoint: {ckpt}: no such file (Depth-Anything-3 weights, "
                         f".safetensors; empty: the manifest's depth or the planar prior)")
    if config.video and is_scene_folder(config.video):
        return probe_scene(config.video)
    entry = reference_entry(config)
    return entry, check_manifest_entry(entry, spec)


def read_cameras(config, num_frames: int | None = None) -> CameraSource:
    """Reads the camera path the config names, first found of `moves` (scripted moves, per frame
    {controller key: scale}), `keys_file` (a key script), `w2c_file` (per-frame w2c, at least
    `num_frames` when given) and `trajectory` (keyframes)."""
    if config.get("moves", ""):
        return CameraSource("moves", "--moves", parse_moves(config.moves, "--moves"))
    if config.get("keys_file", ""):
        return CameraSource("keys", config.keys_file, parse_key_script_file(config.keys_file))
    if config.w2c_file:
        w2c = load_w2c_file(config.w2c_file)
        check_w2c_count(config.w2c_file, w2c, num_frames)
        return CameraSource("w2c", config.w2c_file, w2c)
    if not config.trajectory:
        raise InputError("config: expected a camera path: set a trajectory, a w2c file or a key script, found none")
    return CameraSource("trajectory", config.trajectory, parse_keyframe_file(config.trajectory))


def check_w2c_count(path: str, w2c: np.ndarray, num_frames: int | None) -> None:
    if num_frames is not None and len(w2c) < num_frames:
        raise TrajectoryError(f"{path}: expected a camera matrix per output frame ({num_frames}), found {len(w2c)}")


def build_target_cameras(config, geometry, num_frames: int, radius_ratio: float = 1.0,
                         cameras: CameraSource | None = None) -> tuple[np.ndarray, dict]:
    """Target w2c (T, 4, 4) from a per-frame w2c file or a keyframe trajectory (`cameras`, as
    `read_cameras` returns; read from `config` when None).

    The orbit radius / dolly scale is foreground depth x config radius_ratio x `radius_ratio`
    (the manifest's own ratio)."""
    cam = config.camera
    cameras = cameras or read_cameras(config)
    if cameras.kind == "w2c":
        check_w2c_count(cameras.path, cameras.value, num_frames)
        return cameras.value[:num_frames].astype(np.float32), {"source": cameras.path, "kind": "per-frame w2c"}
    if cameras.kind != "trajectory":
        raise InputError(f"{cameras.path}: a {cameras.kind} camera source cannot be rendered ahead; use navigate")
    traj = cameras.value
    w2c, fg = trajectory_target_w2c(traj, geometry.depth[0], geometry.w2c, num_frames,
                                    cam.radius_ratio * radius_ratio, cam.rotation_only, cam.interpolation,
                                    cam.relative_to_source)
    info = {"source": cameras.path, "kind": "dolly" if traj.is_dolly else "orbit", "foreground_depth": fg}
    return w2c, info


def render_conditions(config, geometry, frames: np.ndarray, tgt_w2c: np.ndarray, recipe: WarpRecipe, log=print):
    """Warps reference frames into the target cameras by `recipe`, in fixed-size batches (one compile).

    Returns renders (T, H, W, 3) uint8 and masks (T, H, W) bool."""
    T, H, W, _ = frames.shape
    src = source_frame_indices(T, T, None if config.camera.freeze_frame < 0 else config.camera.freeze_frame)
    bs = max(1, min(config.warp.batch_frames, T))
    fn = jax.jit(warp_frames, static_argnames=("out_hw", "recipe"))
    renders, masks = [], []
    for start in range(0, T, bs):
        sel = np.arange(start, start + bs)
        real = sel < T
        sel = np.minimum(sel, T - 1)  # pad the last batch by repetition: same shapes, no recompile
        s = src[sel]
        out = fn(
            frames[s], geometry.depth[s], geometry.K[s], geometry.w2c[s], geometry.K[s], tgt_w2c[sel],
            out_hw=(H, W), recipe=recipe,
        )
        renders.append(np.asarray(out.rgb)[real])
        masks.append(np.asarray(out.mask)[real])
        log(f"  warp frames {start:4d}-{min(start + bs, T) - 1:4d} / {T}")
    return np.concatenate(renders), np.concatenate(masks)


def render_fused(config, geometry, views: np.ndarray, tgt_w2c: np.ndarray, recipe: WarpRecipe, log=print):
    """A four-image scene's conditions as the 1.5 release renders them: every view (V, H, W, 3)
    uint8 into each target (view 0's intrinsics), fused by a z-test, in batches of
    `config.warp.batch_frames`; the source clip's view per frame assigned by coverage, per block of
    3 latents (`multiview.assign_clip`). Returns renders (T, H, W, 3) float, masks (T, H, W) bool,
    the view behind each frame (T,) and one record per block."""
    from star_jax.inference.multiview import assign_clip, render_views

    T = len(tgt_w2c)
    bs = max(1, min(config.warp.batch_frames, T))
    rgb, masks, counts = [], [], []
    for start in range(0, T, bs):
        sel = np.minimum(np.arange(start, start + bs), T - 1)  # the last batch padded: one compile
        real = np.arange(start, start + bs) < T
        fused, c = render_views(views.astype(np.float32) / 255.0, geometry.depth, geometry.K, geometry.w2c,
                                geometry.K[0], tgt_w2c[sel], recipe)
        rgb.append(np.asarray(fused.rgb)[real])
        masks.append(np.asarray(fused.mask)[real])
        counts.append(c[:, real])
        log(f"  fused {len(views)} views into frames {start:4d}-{min(start + bs, T) - 1:4d} / {T}")
    src, records = assign_clip(np.concatenate(counts, axis=1))
    return np.concatenate(rgb), np.concatenate(masks), src, records


def load_reference(entry: ManifestEntry, config, log=print):
    """Ingests `entry.video` per `config.video_spec` and returns (clip, geometry): the entry's
    depth and cameras when it has them, else the planar prior of `config.camera` (logged)."""
    if is_scene_folder(entry.video):
        spec = video_spec(config)
        scene = load_scene(entry.video)
        log(f"scene {entry.video}: {scene.kind}, {len(scene.views)} view(s) {scene.resolution[0]}x"
            f"{scene.resolution[1]}, {scene.frames} frames at {scene.fps:g} fps, geometry {scene.geometry}")
        return scene_clip(scene, entry.video, (spec.height, spec.width))
    clip = load_video(entry.video, video_spec(config))
    T, H, W, _ = clip.frames.shape
    log(f"ingested {entry.video}: {T} frames {H}x{W} at {clip.fps:g} fps "
        f"(source {clip.source_size}, {clip.source_fps:g} fps)")
    if entry.depth_dir:
        return clip, load_scene_geometry(entry, clip)
    if config.get("geometry_checkpoint"):
        from star_jax.geometry.estimate import geometry_from_checkpoint

        log(f"no depth given: estimating depth and cameras with the geometry encoder ({config.geometry_checkpoint})")
        geometry, info = geometry_from_checkpoint(clip.frames, config.geometry_checkpoint)
        n = info["depth_pixels_per_frame"] * len(info["masked_depth_pixels"])
        masked, low = sum(info["masked_depth_pixels"]) / n, sum(info["low_confidence_pixels"]) / n
        log(f"geometry encoder: {info['windows']} window(s), depth masked at {masked:.1%} of pixels ({low:.1%} "
            f"low-confidence, {'masked' if info['confidence']['masked'] else 'kept'}), cameras from the "
            f"{info['cameras']}")
        return clip, geometry  # kind "estimated": one scale for the scene, frame 0's foreground depth 1
    cam = config.camera
    log("no depth given: using a planar depth prior (renders show camera motion over a plane)")
    return clip, planar_prior_geometry(T, H, W, cam.planar_depth, cam.planar_fov_x_deg)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What `validate` opened."""

    entry: ManifestEntry
    probe: VideoProbe
    cameras: CameraSource


def validate(config) -> Inputs:
    """Opens every input and the output folder; raises InputError in seconds, before decoding."""
    check_camera_config(config)
    if config.warp.batch_frames < 1:
        raise InputError(f"config.warp.batch_frames: expected an integer >= 1, found {config.warp.batch_frames}")
    entry, probe = validate_reference(config)
    cameras = read_cameras(config)  # a w2c file's length is checked against the clip after decoding
    if cameras.kind in ("keys", "moves"):
        raise InputError(f"{cameras.path}: key scripts and moves drive navigate, not render; give a trajectory or a "
                         f"w2c file")
    io.check_output_folder(config.output_dir, OUTPUTS)
    return Inputs(entry, probe, cameras)


def run(config, log=print, dry_run: bool = False) -> dict:
    """validate, then ingest, warp and write (see the module docstring); `dry_run` stops after validate."""
    timings = {}
    t0 = time.perf_counter()
    inputs = validate(config)
    entry = inputs.entry
    if dry_run:
        log(f"dry run: inputs usable ({entry.video}: {inputs.probe.size_hw[0]}x{inputs.probe.size_hw[1]}, "
            f"{inputs.cameras.kind} {inputs.cameras.path}); output folder {config.output_dir} writable")
        return {"dry_run": True, "video": entry.video, "camera": inputs.cameras.kind}
    clip, geometry = load_reference(entry, config, log)
    T, H, W, _ = clip.frames.shape
    timings["ingest_s"] = time.perf_counter() - t0
    views = None
    if is_scene_folder(entry.video):
        meta = read_scene_json(os.path.join(entry.video, "scene.json"))
        if meta["kind"] == "image" and meta["views"] > 1:  # four images: fused, T = the scene's frames
            views, T = clip.frames, meta["frames"]

    t1 = time.perf_counter()
    tgt_w2c, cam_info = build_target_cameras(config, geometry, T, entry.radius_ratio, inputs.cameras)
    recipe = warp_recipe(config.warp.mode, config.warp.point_size)
    view_records = None
    if views is None:
        renders, masks = render_conditions(config, geometry, clip.frames.astype(np.float32) / 255.0, tgt_w2c, recipe,
                                           log)
        reference, source_indices, target_K = clip.frames, clip.source_indices, geometry.K
    else:
        renders, masks, src, view_records = render_fused(config, geometry, views, tgt_w2c, recipe, log)
        reference, source_indices = views[src], src
        target_K = np.broadcast_to(geometry.K[0], (T, 3, 3))
    renders = io.to_uint8(renders)
    timings["warp_s"] = time.perf_counter() - t1
    timings["warp_fps"] = T / timings["warp_s"]

    t2 = time.perf_counter()
    with io.staged_folder(config.output_dir, OUTPUTS) as out:
        codec = io.write_mp4(os.path.join(out, "renders.mp4"), renders, clip.fps)
        io.write_mp4(os.path.join(out, "masks.mp4"), masks, clip.fps)
        io.write_mp4(os.path.join(out, "reference.mp4"), reference, clip.fps)
        mask_rgb = np.repeat(io.to_uint8(masks)[..., None], 3, axis=-1)
        io.write_png(os.path.join(out, "contact_sheet.png"), contact_sheet([reference, renders, mask_rgb]))
        io.write_npz(os.path.join(out, "conditions.npz"), renders=renders, masks=masks, target_w2c=tgt_w2c,
                     K=np.asarray(target_K, np.float32), source_indices=source_indices)
        timings["write_s"] = time.perf_counter() - t2
        timings["total_s"] = time.perf_counter() - t0
        meta = {
            "video": entry.video,
            "caption": entry.caption,
            "frames": T,
            "size_hw": [H, W],
            "fps": clip.fps,
            "reference": clip.provenance(),
            "depth": geometry.kind,
            "camera": cam_info,
            "valid_fraction_mean": float(masks.mean()),
            "warp": recipe.metadata(),
            "views_per_block": view_records,
            "codec": codec,
            "jax_backend": jax.default_backend(),
            "timings": timings,
        }
        io.write_json(os.path.join(out, "metadata.json"), meta)
    log(f"wrote {config.output_dir}/: {' '.join(OUTPUTS)} (valid {meta['valid_fraction_mean']:.1%}, "
        f"warp {timings['warp_fps']:.1f} frames/s, total {timings['total_s']:.1f}s)")
    return meta


def main(argv):
    del argv
    from absl import flags

    run(_CONFIG.value, dry_run=flags.FLAGS.dry_run)


if __name__ == "__main__":
    from ml_collections import config_flags

    from star_jax import cli

    _CONFIG = config_flags.DEFINE_config_file("config", "experiments/render.py", "experiment config", lock_config=True)
    cli.define_flags()
    sys.path.insert(0, os.getcwd())
    cli.main(main, parse=cli.absl_parser())
