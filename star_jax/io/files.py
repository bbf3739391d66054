"""Atomic writers: every output is written to a temporary file beside its target, then renamed,
so an interrupted run never leaves a half-written file under the final name; and a whole run's
folder is written the same way (`staged_folder`): a fresh hidden sibling folder, swapped in at the
end, so a failed or interrupted rerun leaves the previous complete run (or nothing), never a mix.

    check_output_folder("outputs/navigate", NAMES)       # before the heavy work: InputError in seconds
    with staged_folder("outputs/navigate", NAMES) as d:  # d: a fresh empty folder beside the target
        write_json(os.path.join(d, "metadata.json"), meta)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import threading
from typing import Collection, Iterator

import numpy as np

from star_jax.errors import InputError


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
        with deferred_signals(), contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def deferred_signals(signums: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[None]:
    """Holds SIGINT / SIGTERM until the block ends, then delivers them to the handlers in place
    before, so a rename or a clean-up is never cut in half. Outside the main thread (where Python
    cannot set handlers) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    old = {s: signal.signal(s, lambda n, _frame: pending.append(n)) for s in signums}
    try:
        yield
    finally:
        for s, handler in old.items():
            signal.signal(s, signal.SIG_DFL if handler is None else handler)
        if pending:
            signal.raise_signal(pending[0])


def _nearest_existing(path: str) -> str:
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def _foreign_entries(path: str, names: Collection[str]) -> list[str]:
    try:
        return sorted(e for e in os.listdir(path) if e not in names)
    except OSError as e:
        raise InputError(f"{path}: output folder: cannot list it ({e.strerror})") from e


def check_output_folder(path: str | os.PathLike, names: Collection[str] = ()) -> None:
    """Raises InputError (in milliseconds) unless a job writing the files `names` can put a run
    at `path`: the nearest existing folder on the way must be writable (probed by creating and
    removing a temporary folder in it), and an existing `path` must be a folder holding nothing
    but `names` (a previous run, which a new run replaces whole), so a user's own files are never
    deleted."""
    if not os.fspath(path):
        raise InputError("output folder: expected a path, found an empty string")
    path = os.path.abspath(os.fspath(path))
    if os.path.lexists(path):
        if not os.path.isdir(path):
            raise InputError(f"{path}: output folder: expected a folder (or nothing), found a file")
        foreign = _foreign_entries(path, names)
        if foreign:
            shown = ", ".join(foreign[:3]) + (f", ... (+{len(foreign) - 3})" if len(foreign) > 3 else "")
            raise InputError(f"{path}: output folder holds files this job does not write ({shown}); a run "
                             f"replaces the whole folder, so give a new or empty folder")
    anchor = _nearest_existing(os.path.dirname(path))
    if not os.path.isdir(anchor):
        raise InputError(f"{path}: output folder cannot be created: {anchor} is a file, not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".star_jax_write_probe.", dir=anchor))
    except OSError as e:
        raise InputError(f"{path}: output folder is not writable: cannot create files in {anchor} "
                         f"({e.strerror})") from e


@contextlib.contextmanager
def staged_folder(path: str | os.PathLike, names: Collection[str] = (), create: bool = True) -> Iterator[str]:
    """Yields a fresh empty folder (or, with `create=False`, a path for a writer that makes the
    folder itself, as orbax does) inside a hidden staging folder beside `path`, to write a run into.
    When the block ends the run takes `path`'s place (an old run there is deleted only then); on
    any error or interrupt inside the block the staging folder is deleted, with any parent folders
    made for it, and `path` is left as it was. `names`: see `check_output_folder`, which runs first."""
    path = os.path.abspath(os.fspath(path))
    check_output_folder(path, names)
    parent, base = os.path.split(path)
    made, folder = [], parent
    while not os.path.isdir(folder):
        made.append(folder)  # deepest first
        folder = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    stage = tempfile.mkdtemp(prefix=f".{base}.", suffix=".tmp", dir=parent)
    run = os.path.join(stage, base)
    try:
        if create:
            os.mkdir(run)
        yield run
    except BaseException:
        with deferred_signals():
            shutil.rmtree(stage, ignore_errors=True)
            for folder in made:
                with contextlib.suppress(OSError):
                    os.rmdir(folder)
        raise
    with deferred_signals():  # the run is complete: from here on it is never deleted
        old = None
        if os.path.lexists(path):
            if not os.path.isdir(path) or _foreign_entries(path, names):
                raise InputError(f"{path}: other files appeared there during the run; the finished run is "
                                 f"kept in {run}")
            old = os.path.join(stage, ".old")
            os.rename(path, old)
        try:
            os.rename(run, path)
        except OSError as e:
            if old is not None:
                os.rename(old, path)
            raise InputError(f"{path}: cannot move the finished run into place ({e.strerror}); it is kept "
                             f"in {run}") from e
        shutil.rmtree(stage, ignore_errors=True)


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
