"""Atomic writers: every output is written to a temporary file beside its target, then renamed,
so an interrupted run never leaves a half-written file under the final name."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile

import numpy as np


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike):
    """Yields a temporary path in the target's folder; renames it onto `path` on success and
    deletes it on failure. The temp name keeps the extension so format-sniffing writers work."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    base, ext = os.path.splitext(os.path.basename(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.", suffix=f".tmp{ext}", dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2, sort_keys=True, default=_json_default)
        f.write("\n")


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"not JSON serialisable: {type(x)}")


def write_png(path, image: np.ndarray) -> None:
    """Writes a (H, W, 3) or (H, W) uint8 image (floats in [0, 1] are converted)."""
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(to_uint8(image)).save(tmp, format="PNG")


def write_npz(path, **arrays) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)


def to_uint8(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x
    if x.dtype == bool:
        return x.astype(np.uint8) * 255
    return (np.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(path, frames: np.ndarray, fps: float, crf: int = 18) -> str:
    """Encodes (T, H, W, 3) frames (uint8, or floats in [0, 1]) as H.264 (falls back to MPEG-4
    Part 2 where no H.264 encoder is present). H and W must be even. Returns the codec used."""
    import av
    from fractions import Fraction

    frames = to_uint8(frames)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.shape[0] == 0:
        raise ValueError(f"write_mp4({path}): expected (T, H, W, 3) frames, got {frames.shape}")
    T, H, W, _ = frames.shape
    if H % 2 or W % 2:
        raise ValueError(f"write_mp4({path}): H and W must be even for yuv420p, got {H}x{W}")
    rate = Fraction(fps).limit_denominator(1001)
    with atomic_path(path) as tmp:
        with av.open(tmp, mode="w", format="mp4") as container:
            for codec in ("libx264", "mpeg4"):
                try:
                    stream = container.add_stream(codec, rate=rate)
                    break
                except Exception:  # noqa: BLE001 - encoder not built into this PyAV
                    continue
            stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
            if codec == "libx264":
                stream.options = {"crf": str(crf)}
            else:
                stream.bit_rate = 8_000_000
            for img in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    container.mux(packet)
            for packet in stream.encode():
                container.mux(packet)
    return codec
