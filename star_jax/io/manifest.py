"""InSpatio manifests and per-frame depth + camera import, aligned to an ingested clip.

Manifest: a JSON list (or one object) of entries, paths relative to the manifest's folder:
    [{"video": "clip.mp4", "caption": "...", "depth_dir": "depth/", "extrinsics": "extrinsic.txt",
      "intrinsics": "intrinsic.txt", "depth_scale": 1.0}]
Only "video" is required. `extrinsics` holds world-to-camera matrices per source frame (any
format `geometry.load_w2c_file` reads, e.g. Depth-Anything-3's stacked 3x4 rows); `intrinsics`
a 3x3 K (or one per frame, stacked) for the source resolution; `depth_dir` one file per source
frame, sorted by name: .npy / .npz ("depth") float z-depth, or 16-bit PNG scaled by
`depth_scale` (7-Scenes / TUM PNGs are millimetres: 0.001).
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os

import numpy as np

from star_jax.errors import InputError
from star_jax.geometry.trajectory import TrajectoryError, load_w2c_file
from star_jax.io.video import CropInfo, VideoClip, VideoError, crop_info

_ALIASES = {
    "video": ("video", "video_path", "path"),
    "caption": ("caption", "prompt", "text"),
    "depth_dir": ("depth_dir", "depth", "depth_folder"),
    "extrinsics": ("extrinsics", "extrinsic", "w2c", "poses"),
    "intrinsics": ("intrinsics", "intrinsic", "K"),
}


class ManifestError(InputError):
    """A manifest, depth folder or camera file that cannot be used; names the file."""


@dataclasses.dataclass(frozen=True)
class ManifestEntry:
    video: str
    caption: str = ""
    depth_dir: str | None = None
    extrinsics: str | None = None
    intrinsics: str | None = None
    depth_scale: float = 1.0
    radius_ratio: float = 1.0


def load_manifest(path: str | os.PathLike) -> list[ManifestEntry]:
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot read manifest JSON: {e}") from e
    items = obj if isinstance(obj, list) else [obj]
    if not items:
        raise ManifestError(f"{path}: manifest is empty")
    root = os.path.dirname(os.path.abspath(path))
    entries = []
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise ManifestError(f"{path}: entry {n} is not an object")
        fields = {}
        for key, names in _ALIASES.items():
            hit = next((item[k] for k in names if k in item and item[k] not in (None, "")), None)
            if hit is not None and key != "caption":
                hit = os.path.normpath(os.path.join(root, hit))
            fields[key] = hit
        if fields["video"] is None:
            raise ManifestError(f"{path}: entry {n} has no video path (keys: {sorted(item)})")
        fields["caption"] = fields["caption"] or ""
        entries.append(
            ManifestEntry(
                **fields,
                depth_scale=float(item.get("depth_scale", 1.0)),
                radius_ratio=float(item.get("radius_ratio", 1.0)),
            )
        )
    return entries


@dataclasses.dataclass(frozen=True)
class SceneGeometry:
    """Per-frame geometry aligned with a clip's frames (all at the clip's resolution)."""

    depth: np.ndarray  # (T, H, W) float32 z-depth, 0 = unknown
    K: np.ndarray  # (T, 3, 3) float32
    w2c: np.ndarray  # (T, 4, 4) float32
    kind: str  # "measured" or "planar-prior"


def load_depth_folder(folder: str) -> list[str]:
    files = sorted(
        f for ext in ("*.npy", "*.npz", "*.png") for f in glob.glob(os.path.join(folder, ext))
    )
    if not files:
        raise ManifestError(f"{folder}: no depth files (.npy, .npz, .png) found")
    return files


def read_depth(path: str, depth_scale: float = 1.0) -> np.ndarray:
    """One depth map (h, w) float32 in scene units; invalid -> 0."""
    try:
        if path.endswith(".npy"):
            d = np.load(path)
        elif path.endswith(".npz"):
            with np.load(path) as z:
                d = z["depth"] if "depth" in z else z[z.files[0]]
        else:
            from PIL import Image

            with Image.open(path) as im:
                d = np.asarray(im)
                if d.dtype == np.uint16:
                    d = np.where(d == 65535, 0, d)  # Kinect "no reading" sentinel
    except Exception as e:  # noqa: BLE001
        raise ManifestError(f"{path}: cannot read depth map: {e}") from e
    d = np.squeeze(np.asarray(d, np.float32))
    if d.ndim != 2:
        raise ManifestError(f"{path}: depth map must be 2-D, got shape {d.shape}")
    d = d * np.float32(depth_scale)
    return np.where(np.isfinite(d) & (d > 0), d, 0.0).astype(np.float32)


def crop_depth(depth: np.ndarray, dst_hw: tuple[int, int], info: CropInfo | None = None) -> np.ndarray:
    """Nearest-neighbour resize-to-cover + centre crop of (h, w) depth (no mixing across edges)."""
    h, w = depth.shape
    H, W = dst_hw
    info = info or crop_info((h, w), dst_hw)
    (sx, sy), (ox, oy) = info.scale, info.offset
    rows = np.clip(np.floor((np.arange(H) + oy + 0.5) / sy).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(W) + ox + 0.5) / sx).astype(int), 0, w - 1)
    return depth[rows[:, None], cols[None, :]]


def load_scene_geometry(entry: ManifestEntry, clip: VideoClip) -> SceneGeometry:
    """Depth, K and w2c of `entry`, picked at the clip's source frames and cropped like it."""
    from star_jax.geometry.cameras import resize_intrinsics

    T, H, W = clip.frames.shape[:3]
    idx = clip.source_indices
    if entry.depth_dir is None:
        raise ManifestError(f"{entry.video}: manifest entry has no depth_dir")
    files = load_depth_folder(entry.depth_dir)
    if len(files) <= idx.max():
        raise ManifestError(f"{entry.depth_dir}: {len(files)} depth maps, clip needs source frame {idx.max()}")
    depths = []
    for i in idx:
        d = read_depth(files[i], entry.depth_scale)
        h, w = clip.source_size
        if d.shape != (h, w):  # depth predicted at another resolution: same crop, own scale
            info = crop_info(d.shape, (H, W))
        else:
            info = clip.crop
        depths.append(crop_depth(d, (H, W), info))
    depth = np.stack(depths)

    if entry.extrinsics is None:
        w2c = np.broadcast_to(np.eye(4), (T, 4, 4))
    else:
        try:
            all_w2c = load_w2c_file(entry.extrinsics)
        except TrajectoryError as e:
            raise ManifestError(str(e)) from e
        if len(all_w2c) <= idx.max():
            raise ManifestError(f"{entry.extrinsics}: {len(all_w2c)} poses, clip needs source frame {idx.max()}")
        w2c = all_w2c[idx]

    if entry.intrinsics is None:
        raise ManifestError(f"{entry.video}: manifest entry has depth but no intrinsics")
    try:
        K = np.loadtxt(entry.intrinsics, dtype=np.float64).reshape(-1, 3, 3)
    except Exception as e:  # noqa: BLE001
        raise ManifestError(f"{entry.intrinsics}: cannot read 3x3 intrinsics: {e}") from e
    K = K[np.minimum(idx, len(K) - 1)] if len(K) > 1 else np.broadcast_to(K[0], (T, 3, 3))
    K = np.asarray(resize_intrinsics(K, clip.crop.scale, clip.crop.offset))
    return SceneGeometry(depth.astype(np.float32), K.astype(np.float32), np.asarray(w2c, np.float32), "measured")


def planar_prior_geometry(T: int, H: int, W: int, depth: float = 1.0, fov_x_deg: float = 60.0) -> SceneGeometry:
    """Geometry for a video with no depth: a fronto-parallel plane at `depth`, a static camera
    and a pinhole of horizontal field of view `fov_x_deg`. Renders then show pure camera-motion
    parallax of a plane; callers must say so in their outputs."""
    if T < 1 or H < 1 or W < 1:
        raise VideoError(f"planar prior needs a positive shape, got {(T, H, W)}")
    f = 0.5 * W / np.tan(np.deg2rad(fov_x_deg) / 2)
    K = np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]], np.float32)
    return SceneGeometry(
        depth=np.full((T, H, W), depth, np.float32),
        K=np.broadcast_to(K, (T, 3, 3)).copy(),
        w2c=np.broadcast_to(np.eye(4, dtype=np.float32), (T, 4, 4)).copy(),
        kind="planar-prior",
    )
