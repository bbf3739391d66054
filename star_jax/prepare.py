"""Make a scene folder (InSpatio-World 1.5's layout, `star_jax.io.scene_folder`) from one image,
four images or a video.

    python -m star_jax.prepare --source photo.jpg --output scenes/photo --prompt "a kitchen"
    python -m star_jax.prepare --source v0.png v1.png v2.png v3.png --output scenes/room \\
        --depth d0.png d1.png d2.png d3.png --intrinsics K.txt --c2w p0.txt p1.txt p2.txt p3.txt
    python -m star_jax.prepare --source clip.mp4 --output scenes/clip --trajectory orbit.txt

Depth and source cameras: from the user's depth files when `--depth` is given (one file per image,
or one folder for a video, matched to frames by number as manifests are; 16-bit PNG / TIFF in
millimetres, .npy / .npz in metres, unless `--depth_scale`), with `--intrinsics` (one K, or one
per view) and the source poses (`--w2c` or `--c2w` files; identity for one image or a video when
absent); else the planar prior (a fronto-parallel plane at 1 m, a 60-degree pinhole, static
camera). Which one is written in scene.json ("geometry") and printed. Four images need depth and
their poses; with `--geometry_checkpoint` (Depth-Anything-3 weights) the geometry encoder gives the
depth and cameras of every view or frame (`star_jax.geometry.estimate`).

Target cameras: `--target_w2c` (one OpenCV world-to-camera per output frame), else `--trajectory`
(InSpatio keyframes, displacement x the foreground depth of view 0), else a gentle orbit
(DEFAULT_ORBIT). Images make a static clip of `--frames` valid frames (default: the target file's
count, else DEFAULT_IMAGE_FRAMES), padded to whole 3-latent blocks by repeating the last pose; a
video keeps its frames (resampled to `--fps`, snapped to 4k + 1, at most `--frames`).

Everything is read and checked before anything is written; the folder is staged and renamed, so a
failure leaves nothing behind (or the previous scene there).
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Sequence

import numpy as np

from star_jax.errors import InputError
from star_jax.geometry.trajectory import (
    KeyframeTrajectory,
    TrajectoryError,
    load_intrinsics_file,
    load_w2c_file,
    parse_keyframe_file,
    trajectory_target_w2c,
)
from star_jax.io.files import check_output_folder
from star_jax.io.manifest import (
    ManifestEntry,
    check_depth_shape,
    crop_depth,
    index_depth_folder,
    load_scene_geometry,
    planar_prior_geometry,
    read_depth,
)
from star_jax.io.scene_folder import SCENE_ENTRIES, Scene, padded_frame_count, write_scene
from star_jax.io.video import VideoSpec, crop_info, load_video, resize_center_crop

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm", ".m4v")
MILLIMETRE_EXTENSIONS = (".png", ".tif", ".tiff")  # 16-bit depth images: millimetres (7-Scenes, TUM, Kinect)
DEFAULT_IMAGE_FRAMES = 45  # valid frames of an image scene without a target file: 4 blocks
DEFAULT_ORBIT = KeyframeTrajectory(np.zeros(1), np.array([0.0, 15.0]), np.ones(1), source="default gentle orbit")
PLANAR_DEPTH, PLANAR_FOV_X_DEG = 1.0, 60.0


@dataclasses.dataclass(frozen=True)
class PrepareOptions:
    """What `prepare` reads; the command line's flags, one to one."""

    source: tuple[str, ...]  # one video, or 1 or 4 images
    output: str
    prompt: str = ""
    depth: tuple[str, ...] = ()  # one file per image, or one folder for a video
    depth_scale: float | None = None  # None: by extension (MILLIMETRE_EXTENSIONS 0.001, else 1)
    intrinsics: str | None = None
    w2c: tuple[str, ...] = ()  # source world-to-camera files (concatenated in order)
    c2w: tuple[str, ...] = ()  # or camera-to-world files (7-Scenes pose.txt)
    target_w2c: str | None = None
    trajectory: str | None = None
    frames: int | None = None
    fps: float = 15.0
    height: int = 480
    width: int = 832
    output_id: str | None = None
    geometry_checkpoint: str | None = None


def prepare(opts: PrepareOptions, log=print) -> Scene:
    """Reads the sources (module docstring), writes the scene folder `opts.output` and returns it."""
    if opts.geometry_checkpoint:
        if opts.depth or opts.intrinsics or opts.w2c or opts.c2w:
            raise InputError("--geometry_checkpoint: the encoder gives depth, intrinsics and poses; expected it "
                             "instead of --depth / --intrinsics / --w2c / --c2w, found both")
        if not os.path.isfile(opts.geometry_checkpoint):
            raise InputError(f"--geometry_checkpoint {opts.geometry_checkpoint}: no such file (Depth-Anything-3 "
                             f"weights, .safetensors)")
    if opts.target_w2c and opts.trajectory:
        raise InputError("--target_w2c / --trajectory: expected at most one target camera source, found both")
    if opts.w2c and opts.c2w:
        raise InputError("--w2c / --c2w: expected one source pose source, found both")
    if opts.frames is not None and opts.frames < 1:
        raise InputError(f"--frames: expected an integer >= 1, found {opts.frames}")
    check_output_folder(opts.output, SCENE_ENTRIES)
    kind = _source_kind(opts.source)
    spec = VideoSpec(height=opts.height, width=opts.width, fps=opts.fps,
                     max_frames=opts.frames if kind == "video" else None)
    if kind == "video":
        views, depth, K, w2c = _video_sources(opts, spec)
    else:
        views, depth, K, w2c = _image_sources(opts, (spec.height, spec.width))
    geometry = "user-depth" if opts.depth else "planar-prior"
    if opts.geometry_checkpoint:  # depth and cameras of every view / frame from the encoder
        from star_jax.geometry.estimate import geometry_from_checkpoint

        g, _ = geometry_from_checkpoint(views, opts.geometry_checkpoint)
        depth, K, w2c, geometry = g.depth, g.K, g.w2c, "geometry-encoder"
    valid = len(views) if kind == "video" else None
    target, valid, cam_info = _targets(opts, valid, depth[0], w2c)
    if kind == "image":
        pad = padded_frame_count(valid)
        target = np.concatenate([target, np.repeat(target[-1:], pad - valid, axis=0)])
    view0 = "frame_000000" if kind == "video" else "view_00"  # 1.5's label: targets use view 0's K
    scene = Scene(
        kind=kind, views=views, depth=np.asarray(depth, np.float32), source_K=np.asarray(K, np.float32),
        source_w2c=np.asarray(w2c, np.float32), target_w2c=np.asarray(target, np.float32),
        fps=float(spec.fps), output_id=opts.output_id or os.path.basename(os.path.abspath(opts.output)),
        valid_frames=valid, prompt=opts.prompt, geometry=geometry,
        target_intrinsics=f"{geometry.replace('-', '_')}_source_{view0}_fixed",
        provenance={"job": "star_jax.prepare", "sources": [os.path.abspath(p) for p in opts.source],
                    "depth": [os.path.abspath(p) for p in opts.depth], "depth_scale": _depth_scale(opts),
                    "intrinsics": opts.intrinsics and os.path.abspath(opts.intrinsics),
                    "source_poses": [os.path.abspath(p) for p in opts.w2c or opts.c2w],
                    "source_poses_kind": "c2w" if opts.c2w else "w2c", "target_cameras": cam_info},
    )
    write_scene(opts.output, scene)
    log(f"wrote {opts.output}: {kind} scene, {len(views)} view(s) {views.shape[1]}x{views.shape[2]}, "
        f"{scene.frames} frames ({valid} valid) at {scene.fps:g} fps; geometry: {geometry}"
        + (" (a plane at 1 m: renders show camera motion over a plane)" if geometry == "planar-prior" else "")
        + f"; targets: {cam_info['kind']}")
    return scene


def _source_kind(sources: Sequence[str]) -> str:
    if not sources:
        raise InputError("--source: expected one video, or 1 or 4 images, found nothing")
    exts = []
    for p in sources:
        if not os.path.isfile(p):
            raise InputError(f"{p}: --source: no such file")
        ext = os.path.splitext(p)[1].lower()
        if ext not in IMAGE_EXTENSIONS + VIDEO_EXTENSIONS:
            raise InputError(f"{p}: --source: expected an image ({' '.join(IMAGE_EXTENSIONS)}) or a video "
                             f"({' '.join(VIDEO_EXTENSIONS)}), found extension {ext or 'none'!r}")
        exts.append(ext)
    videos = sum(e in VIDEO_EXTENSIONS for e in exts)
    if videos and len(sources) > 1:
        raise InputError(f"--source: expected one video alone, found {videos} video(s) among {len(sources)} files")
    if not videos and len(sources) not in (1, 4):
        raise InputError(f"--source: expected 1 image or 4 images (what InSpatio-World 1.5 runs), found "
                         f"{len(sources)}")
    return "video" if videos else "image"


def _scale(path: str, given: float | None) -> float:
    if given is not None:
        if not (np.isfinite(given) and given > 0):
            raise InputError(f"--depth_scale: expected a positive number, found {given}")
        return float(given)
    return 0.001 if os.path.splitext(path)[1].lower() in MILLIMETRE_EXTENSIONS else 1.0


def _depth_scale(opts: PrepareOptions) -> float | None:
    """Metres per unit of the first depth file (a video's depth folder: its frame 0 file)."""
    if not opts.depth:
        return None
    first = index_depth_folder(opts.depth[0]).paths[0] if os.path.isdir(opts.depth[0]) else opts.depth[0]
    return _scale(first, opts.depth_scale)


def _read_image(path: str) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.mode not in ("RGB", "RGBA", "L", "P", "CMYK", "YCbCr"):
                raise InputError(f"{path}: expected an 8-bit colour or grey image, found mode {im.mode}")
            return np.asarray(im.convert("RGB"))
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - PIL raises many types
        raise InputError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e


def _poses(opts: PrepareOptions, n: int, what: str) -> np.ndarray:
    """(n, 4, 4) source w2c from --w2c / --c2w (identity when neither; then n must be 1 or a video)."""
    files = opts.w2c or opts.c2w
    if not files:
        return np.broadcast_to(np.eye(4), (n, 4, 4)).copy()
    flag = "--w2c" if opts.w2c else "--c2w"
    m = np.concatenate([load_w2c_file(p) for p in files])
    if len(m) != n:
        raise InputError(f"{flag} {' '.join(files)}: expected {n} camera matrices (one per {what}), found {len(m)}")
    # the exact inverse, not [R^T | -R^T t]: real poses (7-Scenes) are orthonormal to ~1e-4 only
    return m if opts.w2c else np.linalg.inv(m)


def _image_sources(opts: PrepareOptions, hw: tuple[int, int]):
    from star_jax.geometry.cameras import resize_intrinsics

    images = [_read_image(p) for p in opts.source]
    for p, im in zip(opts.source, images):
        if im.shape != images[0].shape:
            raise InputError(f"{p}: expected {images[0].shape[0]}x{images[0].shape[1]} (HxW) like {opts.source[0]}, "
                             f"found {im.shape[0]}x{im.shape[1]}")
    V, src_hw = len(images), images[0].shape[:2]
    info = crop_info(src_hw, hw)
    views = np.stack([resize_center_crop(im, hw) for im in images])
    if not opts.depth:
        if V > 1 and opts.geometry_checkpoint:  # the encoder places them (prepare)
            g = planar_prior_geometry(V, *hw, PLANAR_DEPTH, PLANAR_FOV_X_DEG)
            return views, g.depth, g.K, g.w2c
        if V > 1:
            raise InputError(f"--source: {V} images need their depth and poses (--depth, --intrinsics, --w2c or "
                             f"--c2w): the planar prior cannot place several photos (geometry encoder: issue 11)")
        if opts.intrinsics or opts.w2c or opts.c2w:
            raise InputError("--intrinsics / --w2c / --c2w: expected only with --depth (the planar prior sets its "
                             "own camera)")
        g = planar_prior_geometry(1, *hw, PLANAR_DEPTH, PLANAR_FOV_X_DEG)
        return views, g.depth, g.K, g.w2c
    if len(opts.depth) != V:
        raise InputError(f"--depth: expected one depth file per image ({V}), found {len(opts.depth)}")
    if not opts.intrinsics:
        raise InputError("--intrinsics: expected the source intrinsics with --depth (one 3x3 K, or one per image), "
                         "found none")
    depth = []
    for i, p in enumerate(opts.depth):
        if not os.path.isfile(p):
            raise InputError(f"{p}: --depth: no such file")
        d = read_depth(p, _scale(p, opts.depth_scale), frame=i)
        check_depth_shape(p, i, d.shape, src_hw)
        depth.append(crop_depth(d, hw, info if d.shape == src_hw else crop_info(d.shape, hw)))
    K = load_intrinsics_file(opts.intrinsics)
    if len(K) not in (1, V):
        raise InputError(f"{opts.intrinsics}: --intrinsics: expected 1 or {V} matrices, found {len(K)}")
    K = np.broadcast_to(np.asarray(resize_intrinsics(K, info.scale, info.offset)), (V, 3, 3))
    if V > 1 and not (opts.w2c or opts.c2w):
        raise InputError(f"--w2c / --c2w: expected the poses of the {V} images, found none")
    return views, np.stack(depth).astype(np.float32), K.astype(np.float32), _poses(opts, V, "image")


def _video_sources(opts: PrepareOptions, spec: VideoSpec):
    video = opts.source[0]
    if not opts.depth:
        if opts.intrinsics or opts.w2c or opts.c2w:
            raise InputError("--intrinsics / --w2c / --c2w: expected only with --depth (the planar prior sets its "
                             "own camera)")
        clip = load_video(video, spec)
        g = planar_prior_geometry(len(clip.frames), spec.height, spec.width, PLANAR_DEPTH, PLANAR_FOV_X_DEG)
        return clip.frames, g.depth, g.K, g.w2c
    if len(opts.depth) != 1 or not os.path.isdir(opts.depth[0]):
        raise InputError(f"--depth {' '.join(opts.depth)}: expected one folder of depth files for a video (matched "
                         f"to frames by the number in their names)")
    if opts.c2w:
        raise InputError("--c2w: a video's source poses are read as --w2c (one world-to-camera per frame)")
    if not opts.intrinsics:
        raise InputError("--intrinsics: expected the source intrinsics with --depth, found none")
    entry = ManifestEntry(video=video, depth_dir=opts.depth[0], intrinsics=opts.intrinsics,
                          extrinsics=opts.w2c[0] if opts.w2c else None, depth_scale=_depth_scale(opts))
    if len(opts.w2c) > 1:
        raise InputError(f"--w2c: expected one file of per-frame matrices for a video, found {len(opts.w2c)}")
    clip = load_video(video, spec)
    g = load_scene_geometry(entry, clip)
    return clip.frames, g.depth, g.K, g.w2c


def _targets(opts: PrepareOptions, n: int | None, depth0: np.ndarray, source_w2c: np.ndarray):
    """(target w2c (n, 4, 4), n, record): n is the video's frame count, or for images --frames,
    else the target file's count, else DEFAULT_IMAGE_FRAMES."""
    if opts.target_w2c:
        t = load_w2c_file(opts.target_w2c)
        n = n or opts.frames or len(t)
        if len(t) < n:
            raise TrajectoryError(f"{opts.target_w2c}: --target_w2c: expected a camera matrix per output frame "
                                  f"({n}), found {len(t)}")
        return t[:n], n, {"kind": "per-frame w2c", "source": os.path.abspath(opts.target_w2c)}
    n = n or opts.frames or DEFAULT_IMAGE_FRAMES
    traj = parse_keyframe_file(opts.trajectory) if opts.trajectory else DEFAULT_ORBIT
    t, fg = trajectory_target_w2c(traj, depth0, source_w2c, n)
    source = os.path.abspath(opts.trajectory) if opts.trajectory else traj.source
    return t, n, {"kind": "dolly" if traj.is_dolly else "orbit", "source": source, "foreground_depth": fg}


def parse_args(argv: Sequence[str]) -> PrepareOptions:
    from star_jax.cli import ArgumentParser

    p = ArgumentParser(prog="python -m star_jax.prepare", description="one image, four images or a video -> an "
                       "InSpatio-World 1.5 scene folder")
    p.add_argument("--source", nargs="+", required=True, help="one video, or 1 or 4 images of one place")
    p.add_argument("--output", required=True, help="the scene folder to write (a previous scene there is replaced)")
    p.add_argument("--prompt", default="", help="the scene's text prompt (input/prompt.txt)")
    p.add_argument("--depth", nargs="+", default=(), help="depth per image (16-bit PNG mm, .npy m), or a video's "
                   "depth folder")
    p.add_argument("--depth_scale", type=float, default=None, help="metres per depth unit (default: 0.001 for "
                   "PNG / TIFF, 1 for .npy / .npz)")
    p.add_argument("--intrinsics", default=None, help="source K at the source resolution: one, or one per view")
    p.add_argument("--w2c", nargs="+", default=(), help="source world-to-camera matrices (files, in view order)")
    p.add_argument("--c2w", nargs="+", default=(), help="source camera-to-world matrices instead (e.g. 7-Scenes "
                   "pose.txt)")
    p.add_argument("--target_w2c", default=None, help="one OpenCV world-to-camera per output frame")
    p.add_argument("--trajectory", default=None, help="InSpatio keyframes (pitch, yaw, displacement lines)")
    p.add_argument("--frames", type=int, default=None, help="valid output frames (images) or the most frames "
                   "taken from a video")
    p.add_argument("--fps", type=float, default=15.0, help="frame rate (a video is resampled to it)")
    p.add_argument("--height", type=int, default=480, help="scene height (1.5 runs 480 x 832 only)")
    p.add_argument("--width", type=int, default=832, help="scene width")
    p.add_argument("--output_id", default=None, help="scene.json output_id (default: the output folder's name)")
    p.add_argument("--geometry_checkpoint", default=None, help="Depth-Anything-3 weights (.safetensors): depth and cameras from the geometry encoder")
    p.add_argument("--debug", action="store_true", help="print the traceback of user errors too")
    a = p.parse_args(list(argv))
    fields = {f.name for f in dataclasses.fields(PrepareOptions)}
    return PrepareOptions(**{k: tuple(v) if isinstance(v, list) else v for k, v in vars(a).items() if k in fields})


def main(argv: Sequence[str]) -> None:
    prepare(parse_args(argv))


if __name__ == "__main__":
    from star_jax import cli

    cli.main(main, sys.argv[1:])
