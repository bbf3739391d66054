"""Real-video ingest: decode, resample to a target fps, resize + centre-crop, snap the frame count.

    clip = load_video("coffee_martini.mp4", VideoSpec(height=480, width=832, fps=15))
    clip.frames  # (T, 480, 832, 3) uint8, T = 4k + 1 (what the causal Wan VAE needs)
    probe_video("coffee_martini.mp4", spec)  # VideoProbe(num_frames=300, fps=30.0, size_hw=(760, 1352)),
                                             # header + first frame only: a cheap check before a job

Every failure (missing, empty, unreadable or stream-less file, no frame rate, no decodable frame,
a frame the decoder flags as damaged, a source too small for the target, frames that change
size) raises VideoError naming the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import NamedTuple

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
    # smallest accepted shorter side of the source, in pixels; None: min(64, ceil(target's shorter
    # side / 4)), so a 480x832 target refuses sources under 64 px (a 2x2 video is not upscaled 240x);
    # 0 accepts any size
    min_source_side: int | None = None

    def __post_init__(self):
        if self.height % 16 or self.width % 16 or self.height <= 0 or self.width <= 0:
            raise VideoError(
                f"VideoSpec: expected height and width positive multiples of 16, found {self.height}x{self.width}"
            )
        if self.fps is not None and not (math.isfinite(self.fps) and self.fps > 0):
            raise VideoError(f"VideoSpec.fps: expected a positive finite frame rate or None, found {self.fps}")
        if self.max_frames is not None and self.max_frames < 1:
            raise VideoError(f"VideoSpec.max_frames: expected None or >= 1, found {self.max_frames}")
        if self.frame_multiple < 1:
            raise VideoError(f"VideoSpec.frame_multiple: expected >= 1, found {self.frame_multiple}")
        if not (math.isfinite(self.start_time) and self.start_time >= 0):
            raise VideoError(f"VideoSpec.start_time: expected a finite number of seconds >= 0, found {self.start_time}")
        if self.min_source_side is not None and self.min_source_side < 0:
            raise VideoError(f"VideoSpec.min_source_side: expected None or >= 0, found {self.min_source_side}")

    @property
    def min_side(self) -> int:
        """The smallest accepted shorter side of a source video, in pixels (see `min_source_side`)."""
        if self.min_source_side is not None:
            return self.min_source_side
        return min(64, math.ceil(min(self.height, self.width) / 4))


@dataclasses.dataclass(frozen=True)
class VideoClip:
    frames: np.ndarray  # (T, H, W, 3) uint8
    fps: float
    source: str
    source_size: tuple[int, int]  # (H, W) before resize/crop
    source_fps: float
    source_indices: np.ndarray  # (T,) index of each kept frame in the decoded source
    crop: "CropInfo"
    # frames in the whole source: counted when decoding reached its end, else the container
    # header's count; None when neither is known (decoding stopped early, header has no count)
    source_num_frames: int | None = None

    @property
    def num_distinct_frames(self) -> int:
        """How many different source frames the clip shows (fewer than T when fps is upsampled)."""
        return int(np.unique(self.source_indices).size)

    def provenance(self) -> dict:
        """JSON-ready record of where the clip came from, for a job's metadata."""
        return {
            "source": self.source,
            "source_size_hw": [int(v) for v in self.source_size],
            "source_fps": float(self.source_fps),
            "source_num_frames": self.source_num_frames,
            "frames": int(self.frames.shape[0]),
            "size_hw": [int(v) for v in self.frames.shape[1:3]],
            "fps": float(self.fps),
            "distinct_reference_frames": self.num_distinct_frames,
            "source_first_frame": int(self.source_indices[0]),
            "source_last_frame": int(self.source_indices[-1]),
        }


class VideoProbe(NamedTuple):
    """What `probe_video` learns from the header and first frame."""

    num_frames: int | None  # the header's frame count; None when the container does not say
    fps: float
    size_hw: tuple[int, int]  # (H, W) of the first decoded frame


@dataclasses.dataclass(frozen=True)
class CropInfo:
    """How source pixels map to output pixels: resize by `scale`, then drop `offset` (x, y)
    resized pixels from the top-left. Use with `geometry.resize_intrinsics`."""

    scale: tuple[float, float]  # (sx, sy)
    offset: tuple[float, float]  # (ox, oy)


def snap_frame_count(n: int, multiple: int = 4) -> int:
    """Largest multiple * k + 1 <= n (the causal VAE encodes 1 + 4k frames)."""
    if n < 1:
        raise VideoError(f"expected at least one frame to snap to {multiple}k + 1, found {n}")
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


def check_source_size(path: str, size_hw: tuple[int, int], spec: VideoSpec) -> None:
    """Raises VideoError if a (H, W) source is too small for `spec` (see `VideoSpec.min_source_side`)."""
    h, w = size_hw
    if min(h, w) < spec.min_side:
        raise VideoError(
            f"{path}: source frames are {h}x{w} (HxW); a {spec.height}x{spec.width} target needs a shorter "
            f"side of at least {spec.min_side} px (VideoSpec.min_source_side)"
        )


def _open(path: str):
    """Opens `path` -> (container, video stream, fps); VideoError naming the file on any failure."""
    import av

    if os.path.isdir(path):
        raise VideoError(f"{path}: expected a video file, found a folder")
    if not os.path.isfile(path):
        raise VideoError(f"{path}: no such video file")
    if os.path.getsize(path) == 0:
        raise VideoError(f"{path}: video file is empty (0 bytes)")
    try:
        container = av.open(path)
    except Exception as e:  # noqa: BLE001 - PyAV raises many types
        raise VideoError(f"{path}: cannot open as a video ({type(e).__name__}: {e})") from e
    if not container.streams.video:
        container.close()
        raise VideoError(f"{path}: file has no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    fps = float(rate) if rate else float("nan")
    if not (math.isfinite(fps) and fps > 0):
        container.close()
        raise VideoError(f"{path}: expected a positive frame rate in the video stream, found {rate}")
    return container, stream, fps


def _decode(path: str, container, stream):
    """Yields (index, (h, w, 3) uint8) and closes the container; VideoError names the failing frame."""
    i = -1
    with container:
        try:
            for i, frame in enumerate(container.decode(stream)):
                if frame.is_corrupt:
                    raise VideoError(f"{path}: frame {i} is damaged (the decoder flagged corrupt data); "
                                     f"re-encode or repair the file")
                yield i, frame.to_ndarray(format="rgb24")
        except VideoError:
            raise
        except Exception as e:  # noqa: BLE001
            raise VideoError(f"{path}: decoding failed at frame {i + 1} ({type(e).__name__}: {e})") from e


def probe_video(path: str | os.PathLike, spec: VideoSpec | None = None) -> VideoProbe:
    """Opens a video and decodes its first frame only -> VideoProbe(num_frames, fps, size_hw).

    A cheap check before a job: raises the VideoError `load_video` would raise for a missing,
    empty, unreadable, stream-less, frame-less or rate-less file, and, given `spec`, for a source
    too small for it or a `spec.start_time` past the end the header states."""
    path = os.fspath(path)
    container, stream, fps = _open(path)
    num_frames = int(stream.frames) or None
    frames = _decode(path, container, stream)
    first = next(frames, None)
    frames.close()
    if first is None:
        raise VideoError(f"{path}: expected at least one decodable frame, found none")
    size_hw = tuple(first[1].shape[:2])
    if spec is not None:
        check_source_size(path, size_hw, spec)
        if num_frames is not None and round(spec.start_time * fps) >= num_frames:
            raise VideoError(f"{path}: start_time {spec.start_time:g} s is past the end of the video "
                             f"({num_frames} frames at {fps:g} fps = {num_frames / fps:g} s)")
    return VideoProbe(num_frames, fps, size_hw)


def iter_video(path: str | os.PathLike):
    """Opens a video -> (fps, iterator of (index, (h, w, 3) uint8 frame)), decoding lazily.

    Raises VideoError naming the file for a missing, empty, unreadable or stream-less file."""
    path = os.fspath(path)
    container, stream, fps = _open(path)
    return fps, _decode(path, container, stream)


def load_video(path: str | os.PathLike, spec: VideoSpec = VideoSpec()) -> VideoClip:
    """Decode + resample + resize/crop + snap to 4k+1 frames, streaming (only kept frames are
    resized and held in memory). See the module docstring."""
    path = os.fspath(path)
    container, stream, src_fps = _open(path)
    header_frames = int(stream.frames) or None
    frames = _decode(path, container, stream)
    ratio = src_fps / (spec.fps or src_fps)
    t0 = int(round(spec.start_time * src_fps))
    dst = (spec.height, spec.width)
    kept, idx, src_hw, next_k = [], [], None, 0
    n_decoded, reached_end = 0, True
    try:
        for i, raw in frames:
            n_decoded += 1
            if src_hw is None:
                src_hw = raw.shape[:2]
                check_source_size(path, src_hw, spec)
            elif raw.shape[:2] != src_hw:
                raise VideoError(f"{path}: frame {i} is {raw.shape[0]}x{raw.shape[1]}, expected "
                                 f"{src_hw[0]}x{src_hw[1]} like frame 0 (a video whose frame size changes)")
            # output frame k shows the source frame nearest to its timestamp: t0 + round(k * ratio)
            while t0 + int(np.floor(next_k * ratio + 0.5)) == i:
                if not kept or idx[-1] != i:
                    small = resize_center_crop(raw, dst)
                kept.append(small)
                idx.append(i)
                next_k += 1
            if spec.max_frames is not None and len(kept) >= spec.max_frames:
                reached_end = False
                break
    finally:
        frames.close()
    if n_decoded == 0:
        raise VideoError(f"{path}: expected at least one decodable frame, found none")
    if not kept:
        raise VideoError(f"{path}: start_time {spec.start_time:g} s is past the end of the video "
                         f"({n_decoded} frames at {src_fps:g} fps = {n_decoded / src_fps:g} s)")
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
        source_num_frames=n_decoded if reached_end else header_frames,
    )
