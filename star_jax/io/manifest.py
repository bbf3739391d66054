"""InSpatio manifests and per-frame depth + camera import, aligned to an ingested clip.

Manifest: a JSON list (or one object) of entries, paths relative to the manifest's folder:
    [{"video": "clip.mp4", "caption": "...", "depth_dir": "depth/", "extrinsics": "extrinsic.txt",
      "intrinsics": "intrinsic.txt", "depth_scale": 1.0}]
Only "video" is required. `extrinsics` holds world-to-camera matrices per source frame (any
format `geometry.load_w2c_file` reads, e.g. Depth-Anything-3's stacked 3x4 rows); `intrinsics`
a 3x3 K (or one per frame, stacked) for the source resolution; `depth_dir` one file per source
frame: .npy / .npz ("depth") float z-depth, or 16-bit PNG / TIFF scaled by `depth_scale`
(7-Scenes / TUM PNGs are millimetres: 0.001).

Depth files are matched to frames by the number in their name (the last run of digits:
`depth_0007.npy`, `frame-000150.depth.png`, `000123.npy`): the smallest number is source frame 0.
When some names contain "depth", only those are used (a 7-Scenes folder also holds colour
frames). A gap or a duplicate number is an error, and so is a count of depth maps or of camera
matrices different from the video's frame count: nothing is ever shifted to fit. Depth values
must be finite and >= 0 (0 = no measurement), and each map must have the video's aspect ratio.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from typing import NamedTuple

import numpy as np

from star_jax.errors import InputError
from star_jax.geometry.trajectory import TrajectoryError, check_positive_finite, load_intrinsics_file, load_w2c_file
from star_jax.io.video import CropInfo, VideoClip, VideoError, VideoProbe, VideoSpec, crop_info, probe_video

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
    """Reads a manifest (see the module docstring); every path it names must exist."""
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
            name = next((k for k in names if k in item and item[k] not in (None, "")), None)
            hit = None if name is None else item[name]
            if hit is not None and not isinstance(hit, str):
                raise ManifestError(f"{path}: entry {n} field {name!r}: expected a string, found {hit!r}")
            if hit is not None and key != "caption":
                hit = os.path.normpath(os.path.join(root, hit))
                want_dir = key == "depth_dir"
                if not (os.path.isdir(hit) if want_dir else os.path.isfile(hit)):
                    kind = "folder" if want_dir else "file"
                    raise ManifestError(f"{path}: entry {n} field {name!r}: no such {kind} {hit}")
            fields[key] = hit
        if fields["video"] is None:
            raise ManifestError(f"{path}: entry {n} has no video path (keys: {sorted(item)})")
        fields["caption"] = fields["caption"] or ""
        scales = {k: check_positive_finite(item.get(k, 1.0), f"{path}: entry {n} field {k!r}", ManifestError)
                  for k in ("depth_scale", "radius_ratio")}
        entries.append(ManifestEntry(**fields, **scales))
    return entries


@dataclasses.dataclass(frozen=True)
class SceneGeometry:
    """Per-frame geometry aligned with a clip's frames (all at the clip's resolution)."""

    depth: np.ndarray  # (T, H, W) float32 z-depth, 0 = unknown
    K: np.ndarray  # (T, 3, 3) float32
    w2c: np.ndarray  # (T, 4, 4) float32
    kind: str  # "measured" or "planar-prior"


DEPTH_EXTENSIONS = (".npy", ".npz", ".png", ".tif", ".tiff")
DEPTH_ASPECT_TOL = 0.02  # relative aspect-ratio difference allowed between a depth map and the video


class DepthFiles(NamedTuple):
    """A depth folder indexed by the number in each file name: paths[k] is source frame k."""

    folder: str
    first_index: int  # the number in the name of source frame 0's file
    paths: list[str]


def index_depth_folder(folder: str | os.PathLike) -> DepthFiles:
    """Matches depth files to source frames by the number in their names (module docstring);
    raises ManifestError naming the folder for no files, a name with no number, a duplicate or a gap."""
    folder = os.fspath(folder)
    try:
        names = sorted(f for f in os.listdir(folder) if f.lower().endswith(DEPTH_EXTENSIONS) and not f.startswith("."))
    except OSError as e:
        raise ManifestError(f"{folder}: cannot list depth folder ({e.strerror})") from e
    if any("depth" in f.lower() for f in names):
        names = [f for f in names if "depth" in f.lower()]
    if not names:
        raise ManifestError(f"{folder}: no depth files ({', '.join(DEPTH_EXTENSIONS)}) found")
    by_index: dict[int, str] = {}
    for name in names:
        digits = re.findall(r"\d+", os.path.splitext(name)[0])
        if not digits:
            raise ManifestError(
                f"{os.path.join(folder, name)}: expected a frame number in the depth file name, found none"
            )
        i = int(digits[-1])
        if i in by_index:
            raise ManifestError(f"{folder}: two depth files for frame number {i}: {by_index[i]} and {name}")
        by_index[i] = name
    first, last = min(by_index), max(by_index)
    if len(by_index) != last - first + 1:
        missing = next(i for i in range(first, last + 1) if i not in by_index)
        raise ManifestError(f"{folder}: depth for frame number {missing} is missing (numbers run from {first} to "
                            f"{last}, {last - first + 1 - len(by_index)} missing); depth files are matched to frames "
                            f"by number")
    return DepthFiles(folder, first, [os.path.join(folder, by_index[i]) for i in range(first, last + 1)])


def read_depth(path: str, depth_scale: float = 1.0, frame: int | None = None) -> np.ndarray:
    """One depth map (h, w) float32 in scene units, 0 = no measurement.

    Raises ManifestError naming the file (and source `frame`, when given) for an unreadable file,
    an 8-bit image, a map that is not 2-D, NaN / inf or negative values, or no positive value."""
    at = f"{path}" + (f" (source frame {frame})" if frame is not None else "")
    ext = os.path.splitext(path)[1].lower()
    try:
        if ext == ".npy":
            d = np.load(path)
        elif ext == ".npz":
            with np.load(path) as z:
                d = z["depth"] if "depth" in z else z[z.files[0]]
        else:
            from PIL import Image

            with Image.open(path) as im:
                d = np.asarray(im)
            if d.dtype == np.uint8:
                raise ManifestError(f"{at}: expected a 16-bit or float depth image, found 8 bits per pixel "
                                    f"(mode {im.mode}: a picture of depth, not depth)")
            if d.dtype == np.uint16:
                d = np.where(d == 65535, 0, d)  # Kinect "no reading" sentinel
    except ManifestError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ManifestError(f"{at}: cannot read depth map ({type(e).__name__}: {e})") from e
    d = np.asarray(d)
    if not (np.issubdtype(d.dtype, np.number) and not np.iscomplexobj(d)):
        raise ManifestError(f"{at}: expected real numbers, found dtype {d.dtype}")
    d = np.squeeze(d.astype(np.float32))
    if d.ndim != 2:
        raise ManifestError(f"{at}: expected a 2-D depth map (H, W), found shape {d.shape}")
    bad = ~np.isfinite(d)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ManifestError(f"{at}: expected finite depth (0 = no measurement), found {int(bad.sum())} NaN/inf "
                            f"values, first at row {r}, column {c}")
    if (d < 0).any():
        r, c = np.argwhere(d < 0)[0]
        raise ManifestError(f"{at}: expected depth >= 0 (0 = no measurement), found {int((d < 0).sum())} negative "
                            f"values, first {d[r, c]:g} at row {r}, column {c}")
    if not (d > 0).any():
        raise ManifestError(f"{at}: expected some positive depth, found only zeros (no measurement anywhere)")
    return (d * np.float32(depth_scale)).astype(np.float32)


def check_depth_shape(path: str, frame: int, depth_hw: tuple[int, int], video_hw: tuple[int, int]) -> None:
    """Raises ManifestError unless a depth map's (h, w) has the video's aspect ratio (DEPTH_ASPECT_TOL)."""
    (h, w), (H, W) = depth_hw, video_hw
    if abs((w / h) / (W / H) - 1) > DEPTH_ASPECT_TOL:
        raise ManifestError(f"{path} (source frame {frame}): expected a depth map with the video's aspect ratio "
                            f"({H}x{W}, HxW), found {h}x{w}")


def crop_depth(depth: np.ndarray, dst_hw: tuple[int, int], info: CropInfo | None = None) -> np.ndarray:
    """Nearest-neighbour resize-to-cover + centre crop of (h, w) depth (no mixing across edges)."""
    h, w = depth.shape
    H, W = dst_hw
    info = info or crop_info((h, w), dst_hw)
    (sx, sy), (ox, oy) = info.scale, info.offset
    rows = np.clip(np.floor((np.arange(H) + oy + 0.5) / sy).astype(int), 0, h - 1)
    cols = np.clip(np.floor((np.arange(W) + ox + 0.5) / sx).astype(int), 0, w - 1)
    return depth[rows[:, None], cols[None, :]]


def _check_count(path: str, what: str, n: int, num_source_frames: int | None, last_needed: int) -> None:
    """One `what` per source frame: exactly the video's count when known, else enough for the clip."""
    if num_source_frames is not None and n != num_source_frames:
        raise ManifestError(f"{path}: expected one {what} per video frame ({num_source_frames}), found {n}")
    if n <= last_needed:
        raise ManifestError(f"{path}: expected a {what} for source frame {last_needed}, found {n} {what}s")


def _load_cameras(entry: ManifestEntry, num_source_frames: int | None, last_needed: int):
    """(w2c (N, 4, 4) or None, K (N, 3, 3)) of an entry, checked, at the source resolution."""
    if entry.intrinsics is None:
        raise ManifestError(f"{entry.video}: manifest entry has depth but no intrinsics")
    try:
        K = load_intrinsics_file(entry.intrinsics)
        w2c = None if entry.extrinsics is None else load_w2c_file(entry.extrinsics)
    except TrajectoryError as e:
        raise ManifestError(str(e)) from e
    if len(K) > 1:
        _check_count(entry.intrinsics, "intrinsics matrix", len(K), num_source_frames, last_needed)
    if w2c is not None:
        _check_count(entry.extrinsics, "camera matrix", len(w2c), num_source_frames, last_needed)
    return w2c, K


def check_manifest_entry(entry: ManifestEntry, spec: VideoSpec | None = None) -> VideoProbe:
    """Cheap checks of everything `load_video` + `load_scene_geometry` will read, without decoding
    the video or reading every depth map: the video's header and first frame (`probe_video`), the
    depth folder's numbering and count, its first map, and the camera files. Returns the probe."""
    probe = probe_video(entry.video, spec)
    if entry.depth_dir is not None:
        depth = index_depth_folder(entry.depth_dir)
        _check_count(entry.depth_dir, "depth map", len(depth.paths), probe.num_frames, 0)
        d = read_depth(depth.paths[0], entry.depth_scale, frame=0)
        check_depth_shape(depth.paths[0], 0, d.shape, probe.size_hw)
        _load_cameras(entry, probe.num_frames, 0)
    return probe


def load_scene_geometry(entry: ManifestEntry, clip: VideoClip) -> SceneGeometry:
    """Depth, K and w2c of `entry`, picked at the clip's source frames and cropped like it."""
    from star_jax.geometry.cameras import resize_intrinsics

    T, H, W = clip.frames.shape[:3]
    idx = clip.source_indices
    if entry.depth_dir is None:
        raise ManifestError(f"{entry.video}: manifest entry has no depth_dir")
    files = index_depth_folder(entry.depth_dir)
    last = int(idx.max())
    _check_count(entry.depth_dir, "depth map", len(files.paths), clip.source_num_frames, last)
    w2c, K = _load_cameras(entry, clip.source_num_frames, last)
    depths, first_hw = [], None
    for i in idx:
        path = files.paths[i]
        d = read_depth(path, entry.depth_scale, frame=int(i))
        if first_hw is None:
            check_depth_shape(path, int(i), d.shape, clip.source_size)
            first_hw = d.shape
        elif d.shape != first_hw:
            raise ManifestError(f"{path} (source frame {i}): expected {first_hw[0]}x{first_hw[1]} like the clip's "
                                f"first depth map, found {d.shape[0]}x{d.shape[1]}")
        # depth predicted at another resolution (same aspect): the same crop at its own scale
        info = clip.crop if d.shape == tuple(clip.source_size) else crop_info(d.shape, (H, W))
        depths.append(crop_depth(d, (H, W), info))
    w2c = np.broadcast_to(np.eye(4), (T, 4, 4)) if w2c is None else w2c[idx]
    K = K[idx] if len(K) > 1 else np.broadcast_to(K[0], (T, 3, 3))
    K = np.asarray(resize_intrinsics(K, clip.crop.scale, clip.crop.offset))
    return SceneGeometry(np.stack(depths).astype(np.float32), K.astype(np.float32), np.asarray(w2c, np.float32),
                         "measured")


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
