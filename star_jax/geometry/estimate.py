"""Depth and cameras of a video from the geometry encoder, written as the manifest navigate/render read.

    python -m star_jax.geometry.estimate --video clip.mp4 --checkpoint DA3-SMALL/model.safetensors --out scene/
    navigate --manifest scene/manifest.json ...

    geometry, info = geometry_from_checkpoint(frames, "model.safetensors")   # in-process (navigate, prepare)

What it does, per source frame of the video (every frame, at the source resolution):
1. Frames are resized as Depth-Anything-3's own input processor does (`da3_input_frame`: longer
   side to `process_res`, then each side to the nearest multiple of 14) and ImageNet-normalised.
2. The network sees `window` frames at a time; consecutive windows share one frame (the last
   window is moved back to end at the last frame, so every window is full). Each window's
   depth and cameras are in its own frame and scale; a window is brought into the first one's by
   the median depth ratio over the shared frames (one scale for its depth and translations) and
   the rigid motion that puts its first shared camera onto the chained one.
3. Scale as the rollout expects: cameras are re-based so source frame 0 is the identity w2c, and
   depth and translations are divided by the foreground depth of frame 0 (`foreground_depth`:
   median of the central third), so a trajectory's displacement is in units of that depth and
   frame 0's foreground sits at depth 1.
4. Depth is resized to the source resolution by nearest neighbour (no invented depths across
   edges); K is rescaled to source pixels (DA3's principal point is the image centre, pixel
   corners at integers; here pixel centres are integers).

Cameras come from the camera decoder (the package's default), or with `ray_pose` from the ray maps
(`encoder/ray_pose.py`, the package's `use_ray_pose`). Depth is masked (set to 0, which the warp
reads as no depth) where it is not finite and positive; depth whose confidence is below the
threshold DA3's own point-cloud export uses (`confidence_threshold`: the larger of 1.05 and the
40th percentile of the window's confidences, capped at their 90th percentile: about 40% of the
pixels) is counted, and masked too only with `confidence_mask`; both counts are in metadata.json,
per frame. The any-view small/base networks have no sky head, so the package's sky
handling (which needs a `sky` map) does not apply. Non-finite cameras, a frame left with no depth,
or a ray map with no camera in it raise InputError: the output folder is staged and appears only
complete. A video shorter than the window is estimated in one window of all its frames
(`views_per_window` in metadata.json says so); one frame gives monocular depth and the identity camera.

Output folder: manifest.json (video, depth_dir, extrinsics, intrinsics), depth/depth_00000.npy ...
(float32 z-depth, source resolution), extrinsics.npy (T, 4, 4) OpenCV w2c, intrinsics.npy
(T, 3, 3), metadata.json (checkpoint, variant, settings, where the cameras came from, scale, the
confidence thresholds, masked-depth counts per frame, timing).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from typing import Callable

import numpy as np

from star_jax.errors import InputError

OUTPUT_NAMES = ("manifest.json", "metadata.json", "depth", "extrinsics.npy", "intrinsics.npy")
GEOMETRY_KIND = "estimated"


@dataclasses.dataclass(frozen=True)
class EstimateSettings:
    window: int = 16  # frames the network sees at once (consecutive windows share one)
    process_res: int = 504  # the network input's longer side before rounding to multiples of 14
    ray_pose: bool = False  # cameras from the ray maps instead of the camera decoder (the package's default: False)
    conf_thresh: float = 1.05  # depth confidence threshold before the percentile clamp (DA3's GLB export)
    conf_percentile: float = 40.0  # ... raised to at least this percentile of the window's confidences
    conf_ensure_percentile: float = 90.0  # ... and lowered to at most this one
    # mask depth under that threshold (DA3's rule for its point-cloud export, which always drops >= 40 % of a
    # window); off by default: every finite positive depth conditions the warp, the counts are recorded either way
    confidence_mask: bool = False

    def __post_init__(self):
        if self.window < 2:
            raise InputError(f"--window: expected at least 2 frames (windows share one), found {self.window}")
        if self.process_res < 14:
            raise InputError(f"--process_res: expected at least 14 pixels, found {self.process_res}")
        if not 0 <= self.conf_percentile <= self.conf_ensure_percentile <= 100:
            raise InputError(f"--conf_percentile / --conf_ensure_percentile: expected 0 <= {self.conf_percentile} <= "
                             f"{self.conf_ensure_percentile} <= 100")
        if not np.isfinite(self.conf_thresh):
            raise InputError(f"--conf_thresh: expected a finite number, found {self.conf_thresh}")


def confidence_threshold(conf: np.ndarray, settings: EstimateSettings) -> float:
    """The depth-confidence threshold of one window's (V, h, w) confidences, as DA3's GLB export
    (`get_conf_thresh`, no sky mask): clamp(conf_thresh, P_conf_percentile, P_conf_ensure_percentile).
    Depth with confidence below it is masked. Non-finite confidences are left out."""
    c = np.asarray(conf, np.float64)
    c = c[np.isfinite(c)]
    if c.size == 0:
        return float("inf")
    lower, upper = np.percentile(c, [settings.conf_percentile, settings.conf_ensure_percentile])
    return float(min(max(settings.conf_thresh, lower), upper))


def processing_size(hw: tuple[int, int], process_res: int, patch: int = 14) -> tuple[int, int]:
    """(h, w) the network sees for a (H, W) frame: longer side -> process_res, then each side to
    the nearest multiple of `patch` (ties up), as DA3's upper_bound_resize."""
    H, W = hw
    s = process_res / max(H, W)
    h, w = max(1, int(round(H * s))), max(1, int(round(W * s)))

    def nearest(x):
        down = (x // patch) * patch
        return max(patch, down + patch if x - down >= patch - (x - down) else down)

    return nearest(h), nearest(w)


def da3_input_frame(frame: np.ndarray, process_res: int, patch: int = 14) -> np.ndarray:
    """(H, W, 3) uint8 -> the (h, w, 3) uint8 frame DA3's input processor feeds its network: the
    longer side resized to process_res, then each side to the nearest multiple of 14, two OpenCV
    resizes (INTER_AREA down, INTER_CUBIC up), as `upper_bound_resize` does."""
    H, W = frame.shape[:2]
    s = process_res / max(H, W)
    hw = (max(1, int(round(H * s))), max(1, int(round(W * s))))
    if max(H, W) != process_res:
        frame = _resize(frame, hw, up=s > 1.0)
    h, w = processing_size((H, W), process_res, patch)
    if (h, w) != frame.shape[:2]:
        frame = _resize(frame, (h, w), up=h > frame.shape[0] or w > frame.shape[1])
    return frame


def window_starts(num_frames: int, window: int) -> list[int]:
    """First frame of each window: windows of `window` frames, consecutive ones sharing one frame,
    the last one ending at the last frame (a video shorter than a window is one window)."""
    if num_frames <= window:
        return [0]
    starts = list(range(0, num_frames - window, window - 1))
    return starts + [num_frames - window]


def chain_windows(num_frames: int, windows: list[tuple[int, np.ndarray, np.ndarray]]):
    """[(start, depth (V, h, w), w2c (V, 4, 4))] in per-window frames and scales -> (depth (T, h, w),
    w2c (T, 4, 4)) in the first window's. Each later window is scaled by the median depth ratio
    over the frames it shares with those before, then moved rigidly so its first shared camera
    equals the chained one."""
    depth = [None] * num_frames
    w2c = [None] * num_frames
    for n, (start, d, m) in enumerate(windows):
        d, m = np.asarray(d, np.float64), np.array(m, np.float64)
        shared = [k for k in range(len(d)) if depth[start + k] is not None]
        if n and not shared:
            raise InputError(f"window starting at frame {start} shares no frame with the ones before")
        if shared:
            both = [(k, (d[k] > 0) & (depth[start + k] > 0)) for k in shared]  # masked depth is 0
            ratios = np.concatenate([depth[start + k][m] / d[k][m] for k, m in both])
            if ratios.size == 0:
                raise InputError(f"frames {[start + k for k in shared]}: no valid depth to align windows on")
            s = float(np.median(ratios))
            d = d * s
            m[:, :3, 3] *= s
            k0 = shared[0]
            m = m @ (np.linalg.inv(m[k0]) @ w2c[start + k0])  # a general inverse: exact for near-rigid input too
        for k in range(len(d)):
            if depth[start + k] is None:
                depth[start + k], w2c[start + k] = d[k], m[k]
    return np.stack(depth), np.stack(w2c)


def normalise_scene(depth: np.ndarray, w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Frame 0 -> identity w2c; depth and translations / foreground depth of frame 0. Returns
    (depth, w2c, the foreground depth divided out)."""
    from star_jax.geometry.trajectory import foreground_depth

    fg = foreground_depth(depth[0])
    w2c = w2c @ np.linalg.inv(w2c[0])
    w2c[:, :3, 3] /= fg
    return depth / fg, w2c, fg


def _resize(img: np.ndarray, hw: tuple[int, int], up: bool = False, nearest: bool = False) -> np.ndarray:
    import cv2

    h, w = hw
    mode = cv2.INTER_NEAREST if nearest else (cv2.INTER_CUBIC if up else cv2.INTER_AREA)
    return cv2.resize(img, (w, h), interpolation=mode)


@functools.lru_cache(maxsize=4)
def _runner(cfg):
    """The jitted network on uint8-valued frames (B, S, h, w, 3), one per config (compiled once per shape)."""
    import jax

    from star_jax.geometry.encoder.model import GeometryEncoder, normalize_images

    return jax.jit(lambda p, x: GeometryEncoder(cfg).apply({"params": p}, normalize_images(x / 255.0)))


def estimate_geometry(frames: np.ndarray, params, cfg, settings: EstimateSettings = EstimateSettings(),
                      progress: Callable[[int], None] | None = None):
    """frames (T, H, W, 3) uint8 -> (SceneGeometry (depth (T, H, W), K (T, 3, 3), w2c (T, 4, 4),
    kind "estimated"), info dict). `progress(n)` is called after each window with its frame count."""
    import jax
    import jax.numpy as jnp

    from star_jax.io.manifest import SceneGeometry
    from star_jax.io.video import VideoError

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) == 0:
        raise VideoError(f"geometry estimate: expected frames (T >= 1, H, W, 3), found {frames.shape}")
    T, H, W, _ = frames.shape
    h, w = processing_size((H, W), settings.process_res, cfg.patch_size)
    small = np.stack([da3_input_frame(f, settings.process_res, cfg.patch_size) for f in frames])
    run = _runner(cfg)
    V = min(settings.window, T)
    windows, Ks, thresholds = [], np.zeros((T, 3, 3)), []
    invalid, low = np.full(T, -1, np.int64), np.full(T, -1, np.int64)  # counted once, from the window used
    for start in window_starts(T, settings.window):
        out = jax.device_get(run(params, jnp.asarray(small[None, start:start + V], jnp.float32)))
        depth, conf = np.array(out.depth[0], np.float64), np.asarray(out.depth_conf[0], np.float64)
        w2c, K = _window_cameras(out, settings, (h, w), start)
        thr = confidence_threshold(conf, settings)
        thresholds.append(thr)
        for k in range(V):
            f = start + k
            if not (np.all(np.isfinite(w2c[k])) and np.all(np.isfinite(K[k])) and K[k][0, 0] > 0 and K[k][1, 1] > 0):
                raise InputError(f"source frame {f}: the geometry network gave non-finite or non-positive "
                                 f"cameras (is the checkpoint damaged?)")
            bad = ~(np.isfinite(depth[k]) & (depth[k] > 0))
            if bad.all():
                raise InputError(f"source frame {f}: the geometry network gave no finite positive depth "
                                 f"(is the checkpoint damaged?)")
            unsure = ~bad & ~(conf[k] >= thr)
            drop = (bad | unsure) if settings.confidence_mask else bad
            if drop.all():
                raise InputError(f"source frame {f}: no depth pixel has confidence >= {thr:.4g}, expected some "
                                 f"(lower --conf_percentile / --conf_thresh to keep them)")
            depth[k][drop] = 0.0
            if invalid[f] < 0:
                invalid[f], low[f] = int(bad.sum()), int(unsure.sum())
                Ks[f] = K[k]
        windows.append((start, depth, np.concatenate([w2c, np.tile([[[0, 0, 0, 1.0]]], (V, 1, 1))], 1)))
        if progress is not None:
            progress(V)
    depth, w2c = chain_windows(T, windows)
    depth = np.stack([_resize(d.astype(np.float32), (H, W), nearest=True) for d in depth])
    depth, w2c, fg0 = normalise_scene(depth, w2c)
    sx, sy = W / w, H / h
    Ks[:, 0, 0] *= sx
    Ks[:, 1, 1] *= sy
    Ks[:, 0, 2] = Ks[:, 0, 2] * sx - 0.5
    Ks[:, 1, 2] = Ks[:, 1, 2] * sy - 0.5
    info = {"process_hw": [h, w], "window": settings.window, "views_per_window": V, "windows": len(windows),
            "foreground_depth_divided_out": fg0, "kind": GEOMETRY_KIND, "network": f"depth-anything-3 {cfg.name}",
            "cameras": "ray_pose" if settings.ray_pose else "camera_decoder",
            "confidence": {"masked": settings.confidence_mask, "thresh": settings.conf_thresh,
                           "percentile": settings.conf_percentile,
                           "ensure_percentile": settings.conf_ensure_percentile, "per_window": thresholds},
            "depth_pixels_per_frame": h * w,
            "masked_depth_pixels": (invalid + (low if settings.confidence_mask else 0)).tolist(),
            "invalid_depth_pixels": invalid.tolist(), "low_confidence_pixels": low.tolist()}
    return SceneGeometry(depth.astype(np.float32), Ks.astype(np.float32), w2c.astype(np.float32), GEOMETRY_KIND), info


def _window_cameras(out, settings: EstimateSettings, hw: tuple[int, int], start: int):
    """(w2c (V, 3, 4), K (V, 3, 3)) of one window's network output, from the camera decoder or the rays."""
    if not settings.ray_pose:
        return np.asarray(out.w2c[0], np.float64), np.asarray(out.K[0], np.float64)
    from star_jax.geometry.encoder.ray_pose import cameras_from_rays

    try:  # one fixed RANSAC seed per window: the same video gives the same cameras
        return cameras_from_rays(out.ray[0], out.ray_conf[0], hw, rng=np.random.default_rng(start))
    except InputError as e:
        raise InputError(f"window from source frame {start}: {e}") from None


def load_encoder(checkpoint: str, variant: str | None = None):
    """(params, cfg, variant name) of a DA3 weights file; the size is read from the file unless given."""
    from star_jax.checkpoint.storage import read_weight_shapes
    from star_jax.geometry.encoder import checkpoint_variant, encoder_variant, load_da3_checkpoint

    name = variant or checkpoint_variant(read_weight_shapes(checkpoint), checkpoint)
    cfg = encoder_variant(name)
    return load_da3_checkpoint(checkpoint, cfg), cfg, name


def geometry_from_checkpoint(frames: np.ndarray, checkpoint: str, settings: EstimateSettings = EstimateSettings(),
                             progress: Callable[[int], None] | None = None):
    """In-process use (navigate / prepare): frames (T, H, W, 3) uint8 + a DA3 weights file ->
    (SceneGeometry of kind "estimated", info with the checkpoint and variant)."""
    params, cfg, name = load_encoder(checkpoint)
    geometry, info = estimate_geometry(frames, params, cfg, settings, progress)
    return geometry, {**info, "checkpoint": os.path.abspath(checkpoint), "variant": name}


def write_scene(folder: str, video: str, geometry, meta: dict) -> None:
    """Writes the manifest folder's files (module docstring) into an existing empty `folder`."""
    from star_jax.io.files import write_json

    os.mkdir(os.path.join(folder, "depth"))
    for k, d in enumerate(geometry.depth):
        np.save(os.path.join(folder, "depth", f"depth_{k:05d}.npy"), d)
    np.save(os.path.join(folder, "extrinsics.npy"), geometry.w2c)
    np.save(os.path.join(folder, "intrinsics.npy"), geometry.K)
    write_json(os.path.join(folder, "manifest.json"),
               [{"video": os.path.abspath(video), "depth_dir": "depth", "extrinsics": "extrinsics.npy",
                 "intrinsics": "intrinsics.npy", "depth_scale": 1.0}])
    write_json(os.path.join(folder, "metadata.json"), meta)


def main(argv=None) -> dict:
    """The command (module docstring). Returns the metadata it wrote."""
    import argparse

    from star_jax.cli import ArgumentParser
    from star_jax.io.files import check_output_folder, staged_folder
    from star_jax.io.video import iter_video, probe_video

    ap = ArgumentParser(prog="python -m star_jax.geometry.estimate", description=__doc__,
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--video", required=True, help="the reference video")
    ap.add_argument("--checkpoint", required=True, help="DA3 weights: model.safetensors (or a torch state dict)")
    ap.add_argument("--out", required=True, help="output folder (new, or a previous run of this command)")
    ap.add_argument("--variant", default=None, help="encoder size (default: read from the checkpoint)")
    ap.add_argument("--window", type=int, default=EstimateSettings.window)
    ap.add_argument("--process_res", type=int, default=EstimateSettings.process_res)
    ap.add_argument("--ray_pose", action="store_true",
                    help="cameras from the predicted ray maps (DA3's use_ray_pose) instead of the camera decoder")
    ap.add_argument("--conf_thresh", type=float, default=EstimateSettings.conf_thresh,
                    help="depth confidence threshold, clamped to the window's percentiles below")
    ap.add_argument("--conf_percentile", type=float, default=EstimateSettings.conf_percentile,
                    help="the threshold is at least this percentile of the window's depth confidences")
    ap.add_argument("--conf_ensure_percentile", type=float, default=EstimateSettings.conf_ensure_percentile,
                    help="... and at most this one")
    ap.add_argument("--confidence_mask", action="store_true",
                    help="mask depth under the confidence threshold (DA3's point-cloud rule; default: keep all depth)")
    ap.add_argument("--debug", action="store_true", help="print the traceback of user errors too")
    a = ap.parse_args(argv)
    settings = EstimateSettings(window=a.window, process_res=a.process_res, ray_pose=a.ray_pose,
                                conf_thresh=a.conf_thresh, conf_percentile=a.conf_percentile,
                                conf_ensure_percentile=a.conf_ensure_percentile, confidence_mask=a.confidence_mask)
    check_output_folder(a.out, OUTPUT_NAMES)
    probe = probe_video(a.video)
    params, cfg, name = load_encoder(a.checkpoint, a.variant)
    _, decoded = iter_video(a.video)
    frames = np.stack([f for _, f in decoded])
    from tqdm import tqdm

    t0 = time.perf_counter()
    views = len(window_starts(len(frames), settings.window)) * min(settings.window, len(frames))
    with tqdm(total=views, unit="view", file=sys.stderr, desc="geometry") as bar:
        geometry, info = estimate_geometry(frames, params, cfg, settings, progress=bar.update)
    seconds = time.perf_counter() - t0
    meta = {"video": os.path.abspath(a.video), "checkpoint": os.path.abspath(a.checkpoint), "variant": name,
            "frames": len(frames), "source_hw": list(frames.shape[1:3]), "fps": probe.fps,
            "seconds": round(seconds, 3), **info}
    with staged_folder(a.out, OUTPUT_NAMES) as folder:
        write_scene(folder, a.video, geometry, meta)
    return meta


if __name__ == "__main__":
    from star_jax import cli

    cli.main(main, sys.argv[1:])
