"""Real-video ingest: decode, resample to a target fps, resize + centre-crop, snap the frame count.

    clip = load_video("coffee_martini.mp4", VideoSpec(height=480, width=832, fps=15))
    clip.frames  # (T, 480, 832, 3) uint8, T = 4k + 1 (what the causal Wan VAE needs)
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

from star_jax.errors import InputError


class VideoError(InputError):
    """A video that cannot be used; the message names the file."""


@dataclasses.dataclass(frozen=True)
class VideoSpec:
    """What the model wants. `height`/`width` must be multiples of 16 (8x VAE, 2x patch)."""

    height: int = 480
    width: int = 832
    fps: float | None = 15.0  # None keeps the source rate
    max_frames: int | None = None  # cap before snapping
    frame_multiple: int = 4  # frame count is snapped down to frame_multiple * k + 1
    start_time: float = 0.0  # seconds

    def __post_init__(self):
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise VideoError(f"target size must be positive multiples of 16, got {self.height}x{self.width}")
        if self.fps is not None and self.fps <= 0:
            raise VideoError(f"target fps must be positive, got {self.fps}")


@dataclasses.dataclass(frozen=True)
class VideoClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    source: str
    source_size: tuple[int, int]  # (H, W) before resize/crop
    source_fps: float
    source_indices: np.ndarray  # (T,) index of each kept frame in the decoded source
    crop: "CropInfo"


@dataclasses.dataclass(frozen=True)
class CropInfo:
    """How source pixels map to output pixels: resize by `scale`, then drop `offset` (x, y)
    resized pixels from the top-left. Use with `geometry.resize_intrinsics`."""

    scale: tuple[float, float]  # (sx, sy)
    offset: tuple[float, float]  # (ox, oy)


def snap_frame_count(n: int, multiple: int = 4) -> int:
    """Largest multiple * k + 1 <= n (the causal VAE encodes 1 + 4k frames)."""
    if n < 1:
        raise VideoError("need at least one frame")
    return ((n - 1) // multiple) * multiple + 1


def crop_info(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> CropInfo:
    """Scale to cover dst (aspect preserved), then centre-crop."""
    (h, w), (H, W) = src_hw, dst_hw
    s = max(H / h, W / w)
    rh, rw = int(round(h * s)), int(round(w * s))
    rh, rw = max(rh, H), max(rw, W)
    return CropInfo(scale=(rw / w, rh / h), offset=((rw - W) // 2, (rh - H) // 2))


def resize_center_crop(frame: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8: antialiased resize to cover, then centre crop."""
    from PIL import Image

    H, W = dst_hw
    info = crop_info(frame.shape[:2], dst_hw)
    rw = int(round(frame.shape[1] * info.scale[0]))
    rh = int(round(frame.shape[0] * info.scale[1]))
    img = Image.fromarray(frame).resize((rw, rh), Image.Resampling.BICUBIC if max(info.scale) > 1 else Image.Resampling.LANCZOS)
    ox, oy = int(info.offset[0]), int(info.offset[1])
    return np.asarray(img)[oy : oy + H, ox : ox + W]


def iter_video(path: str | os.PathLike):
    """Opens a video -> (fps, iterator of (index, (h, w, 3) uint8 frame)), decoding lazily.

    Raises VideoError naming the file for a missing, unreadable or stream-less file."""
    import av

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such video file")
    try:
        container = av.open(path)
    except Exception as e:  # noqa: BLE001 - PyAV raises many types
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: file has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate or float(rate) <= 0:
        container.close()
        raise VideoError(f"{path}: video stream has no usable frame rate")

    def frames():
        i = -1
        with container:
            try:
                for i, frame in enumerate(container.decode(stream)):
                    yield i, frame.to_ndarray(format="rgb24")
            except Exception as e:  # noqa: BLE001
                raise VideoError(f"{path}: decoding failed after {i + 1} frames ({type(e).__name__}: {e})") from e

    return float(rate), frames()


def load_video(path: str | os.PathLike, spec: VideoSpec = VideoSpec()) -> VideoClip:
    """Decode + resample + resize/crop + snap to 4k+1 frames, streaming (only kept frames are
    resized and held in memory). See the module docstring."""
    path = os.fspath(path)
    src_fps, frames = iter_video(path)
    ratio = src_fps / (spec.fps or src_fps)
    t0 = int(round(spec.start_time * src_fps))
    dst = (spec.height, spec.width)
    kept, idx, src_hw, next_k = [], [], None, 0
    n_decoded = 0
    for i, raw in frames:
        n_decoded += 1
        src_hw = raw.shape[:2]
        # output frame k shows the source frame nearest to its timestamp: t0 + round(k * ratio)
        while t0 + int(np.floor(next_k * ratio + 0.5)) == i:
            if not kept or idx[-1] != i:
                small = resize_center_crop(raw, dst)
            kept.append(small)
            idx.append(i)
            next_k += 1
        if spec.max_frames is not None and len(kept) >= spec.max_frames:
            break
    if n_decoded == 0:
        raise VideoError(f"{path}: video has zero decodable frames")
    if not kept:
        raise VideoError(f"{path}: no frames left after resampling to {spec.fps} fps from t={spec.start_time}s")
    if spec.max_frames is not None:
        kept, idx = kept[: spec.max_frames], idx[: spec.max_frames]
    n = snap_frame_count(len(kept), spec.frame_multiple)
    return VideoClip(
        frames=np.stack(kept[:n]),
        fps=float(spec.fps or src_fps),
        source=path,
        source_size=tuple(src_hw),
        source_fps=src_fps,
        source_indices=np.asarray(idx[:n], np.int64),
        crop=crop_info(src_hw, dst),
    )
