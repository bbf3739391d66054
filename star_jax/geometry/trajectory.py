"""Camera trajectories: the InSpatio keyframe text format and per-frame w2c files.

Keyframe format (one file, three non-empty lines of space-separated numbers):
  1. pitch in degrees (positive = orbit up),
  2. yaw in degrees (positive = orbit left),
  3. displacement, a relative scale multiplied by the scene's foreground depth: the orbit radius
     when pitch or yaw is non-zero somewhere in the file, a dolly (positive = forward) when both
     are zero everywhere.
Each line is interpolated on its own to the frame count (lines may have different lengths).

Orbit geometry (relative to the reference camera, OpenCV axes): the camera turns by
R = R_y(yaw) @ R_x(pitch) and its centre moves on the sphere of radius r around the point
(0, 0, r) on the reference optical axis, so that point stays on the new optical axis.

Camera files (`load_w2c_file`, `load_intrinsics_file`) go through the one set of checks
(`check_w2c`, `check_intrinsics`): finite values, a proper rigid transform (R R^T = I, det R = +1,
last row 0 0 0 1), positive focal lengths. Errors name the file, the matrix and its lines.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from typing import Sequence

import jax.numpy as jnp
import numpy as np

from star_jax.errors import InputError
from star_jax.geometry.cameras import invert_rigid


class TrajectoryError(InputError):
    """A trajectory file or array that cannot be used; the message names the file and line."""


@dataclasses.dataclass(frozen=True)
class KeyframeTrajectory:
    """Keyframes of an InSpatio camera-control file (each line may have its own length)."""

    pitch_deg: np.ndarray  # (K_pitch,)
    yaw_deg: np.ndarray  # (K_yaw,)
    displacement: np.ndarray  # (K_disp,)
    source: str = "<memory>"

    @property
    def is_dolly(self) -> bool:
        """True when the file has no rotation at all: displacement then means forward motion."""
        return bool(np.all(self.pitch_deg == 0) and np.all(self.yaw_deg == 0))


_LINE_NAMES = ("pitch (degrees)", "yaw (degrees)", "displacement")


def parse_keyframe_text(text: str, source: str = "<string>") -> KeyframeTrajectory:
    """Parses the 3-line keyframe format; raises TrajectoryError naming `source` and the line."""
    lines = [(i + 1, ln) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    if not lines:
        raise TrajectoryError(f"{source}: expected 3 non-empty lines (pitch, yaw, displacement), found an empty file")
    if len(lines) != 3:
        raise TrajectoryError(
            f"{source}: expected 3 non-empty lines (pitch, yaw, displacement), found {len(lines)} "
            f"(lines {', '.join(str(n) for n, _ in lines)})"
        )
    values = []
    for (lineno, line), name in zip(lines, _LINE_NAMES):
        row = []
        for tok in line.split():
            try:
                val = float(tok)
            except ValueError:
                raise TrajectoryError(f"{source}:{lineno}: {name} line: expected numbers, found {tok!r}") from None
            if not np.isfinite(val):
                raise TrajectoryError(f"{source}:{lineno}: {name} line: expected finite numbers, found {tok!r}")
            row.append(val)
        values.append(np.asarray(row, np.float64))
    return KeyframeTrajectory(*values, source=source)


def parse_keyframe_file(path: str | os.PathLike) -> KeyframeTrajectory:
    """Reads a keyframe trajectory file (see module docstring)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TrajectoryError(f"{path}: cannot read trajectory file: {e}") from e
    return parse_keyframe_text(text, source=path)


INTERPOLATION_MODES = ("linear", "smooth")


def check_interpolation_mode(mode: str) -> str:
    """Returns `mode` if it is one of INTERPOLATION_MODES, else raises TrajectoryError."""
    if mode not in INTERPOLATION_MODES:
        raise TrajectoryError(
            f"interpolation mode: expected one of {', '.join(map(repr, INTERPOLATION_MODES))}, found {mode!r}"
        )
    return mode


def check_positive_finite(value, what: str, error: type[InputError] = TrajectoryError) -> float:
    """Returns float(value) if it is a finite number > 0 (not a bool), else raises `error` naming `what`."""
    try:
        v = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        v = math.nan
    if not (math.isfinite(v) and v > 0):
        raise error(f"{what}: expected a positive finite number, found {value!r}")
    return v


def interpolate_keyframes(keyframes: Sequence[float], num_frames: int, mode: str = "linear") -> np.ndarray:
    """Resamples keyframes spread evenly over [0, 1] to `num_frames` evenly spread samples.

    mode "linear" is piecewise linear (the documented format); "smooth" is the cubic smoothing
    spline the public InSpatio release uses for more than 3 keyframes (endpoints pinned; with 3 or
    fewer keyframes it equals "linear").
    """
    check_interpolation_mode(mode)
    k = np.asarray(keyframes, np.float64)
    if k.ndim != 1 or k.size == 0:
        raise TrajectoryError("keyframes must be a non-empty 1-D sequence")
    if num_frames < 1:
        raise TrajectoryError(f"num_frames must be >= 1, got {num_frames}")
    if k.size == 1:
        return np.full((num_frames,), k[0])
    x = np.linspace(0.0, 1.0, k.size)
    xn = np.linspace(0.0, 1.0, num_frames)
    if mode == "linear" or k.size <= 3:
        return np.interp(xn, x, k)
    from scipy.interpolate import UnivariateSpline

    out = UnivariateSpline(x, k, k=3)(xn)
    out[0], out[-1] = k[0], k[-1]
    return out


def orbit_rel_c2w(pitch_rad, yaw_rad, radius, dolly=None) -> jnp.ndarray:
    """Relative c2w (..., 4, 4) of an orbit (or dolly) about the reference camera.

    Orbit: R = R_y(yaw) @ R_x(pitch), centre = (0, 0, r) - r * R[:, 2], so the point at depth r
    on the reference optical axis stays centred. Dolly (`dolly` True): R = I, centre (0, 0, r).
    """
    pitch = jnp.asarray(pitch_rad)
    yaw = jnp.asarray(yaw_rad)
    r = jnp.asarray(radius)
    pitch, yaw, r = jnp.broadcast_arrays(pitch, yaw, r)
    cp, sp = jnp.cos(pitch), jnp.sin(pitch)
    cy, sy = jnp.cos(yaw), jnp.sin(yaw)
    zero, one = jnp.zeros_like(cp), jnp.ones_like(cp)
    Ry = jnp.stack(
        [jnp.stack([cy, zero, sy], -1), jnp.stack([zero, one, zero], -1), jnp.stack([-sy, zero, cy], -1)], -2
    )
    Rx = jnp.stack(
        [jnp.stack([one, zero, zero], -1), jnp.stack([zero, cp, sp], -1), jnp.stack([zero, -sp, cp], -1)], -2
    )
    R = Ry @ Rx
    centre = jnp.stack([zero, zero, r], -1) - r[..., None] * R[..., :, 2]
    if dolly is not None:
        dolly = jnp.asarray(dolly, bool)
        R = jnp.where(dolly[..., None, None], jnp.broadcast_to(jnp.eye(3, dtype=R.dtype), R.shape), R)
        centre = jnp.where(dolly[..., None], jnp.stack([zero, zero, r], -1), centre)
    top = jnp.concatenate([R, centre[..., None]], -1)
    bottom = jnp.broadcast_to(jnp.asarray([0, 0, 0, 1], R.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], -2)


def keyframes_to_rel_c2w(
    traj: KeyframeTrajectory,
    num_frames: int,
    foreground_depth: float,
    rotation_only: bool = False,
    mode: str = "linear",
) -> jnp.ndarray:
    """Per-frame relative c2w (num_frames, 4, 4), displacement scaled by `foreground_depth`."""
    check_positive_finite(foreground_depth, "foreground depth")
    check_interpolation_mode(mode)
    pitch = np.deg2rad(interpolate_keyframes(traj.pitch_deg, num_frames, mode))
    yaw = np.deg2rad(interpolate_keyframes(traj.yaw_deg, num_frames, mode))
    r = interpolate_keyframes(traj.displacement, num_frames, mode) * foreground_depth
    rel = orbit_rel_c2w(
        jnp.asarray(pitch, jnp.float32), jnp.asarray(yaw, jnp.float32), jnp.asarray(r, jnp.float32),
        dolly=jnp.full((num_frames,), traj.is_dolly),
    )
    if rotation_only:
        rel = rel.at[:, :3, 3].set(0.0)
    return rel


def target_w2c(rel_c2w: jnp.ndarray, source_c2w: jnp.ndarray, relative_to_source: bool = False) -> jnp.ndarray:
    """World-to-camera of the target cameras (N, 4, 4).

    `relative_to_source=False`: every target is placed relative to the first source camera
    (c2w_t = c2w_src[0] @ rel_t): a static-camera path. True: relative to the time-aligned
    source camera (c2w_t = c2w_src[t] @ rel_t), so source camera motion is kept.
    """
    n = rel_c2w.shape[0]
    if source_c2w.ndim != 3 or source_c2w.shape[1:] != (4, 4) or source_c2w.shape[0] < 1:
        raise TrajectoryError(f"source_c2w must be (N, 4, 4), got {source_c2w.shape}")
    if relative_to_source:
        if source_c2w.shape[0] < n:
            raise TrajectoryError(
                f"relative_to_source needs a source pose per target frame: {source_c2w.shape[0]} < {n}"
            )
        anchor = source_c2w[:n]
    else:
        anchor = jnp.broadcast_to(source_c2w[0], (n, 4, 4))
    return invert_rigid(anchor @ rel_c2w)


def trajectory_target_w2c(traj: KeyframeTrajectory, source_depth0: np.ndarray, source_w2c: np.ndarray,
                          num_frames: int, radius_scale: float = 1.0, rotation_only: bool = False,
                          mode: str = "linear", relative_to_source: bool = False) -> tuple[np.ndarray, float]:
    """A keyframe trajectory read against a source clip -> (target w2c (num_frames, 4, 4), the
    displacement unit): displacement x `radius_scale` x the foreground depth of the first source
    depth map (H, W), placed relative to the source cameras `source_w2c` (N, 4, 4) (`target_w2c`)."""
    fg = foreground_depth(source_depth0) * radius_scale
    rel = keyframes_to_rel_c2w(traj, num_frames, fg, rotation_only, mode)
    src_c2w = invert_rigid(jnp.asarray(source_w2c))
    return np.asarray(target_w2c(rel, src_c2w, relative_to_source)), fg


def foreground_depth(depth: np.ndarray, central_fraction: float = 1.0 / 3.0) -> float:
    """Scene foreground depth: median valid depth of the central window of a (H, W) depth map.

    The central window (a `central_fraction` of each side) is where the orbit target sits; the
    median is robust to holes and edge noise.
    """
    depth = np.asarray(depth, np.float64)
    if depth.ndim != 2:
        raise TrajectoryError(f"depth must be (H, W), got {depth.shape}")
    H, W = depth.shape
    h0, w0 = int(H * (1 - central_fraction) / 2), int(W * (1 - central_fraction) / 2)
    win = depth[h0 : H - h0, w0 : W - w0]
    valid = win[np.isfinite(win) & (win > 0)]
    if valid.size == 0:
        valid = depth[np.isfinite(depth) & (depth > 0)]
    if valid.size == 0:
        raise TrajectoryError("depth map has no valid (positive, finite) values")
    return float(np.median(valid))


def source_frame_indices(num_frames: int, num_source_frames: int, freeze_frame: int | None = None) -> np.ndarray:
    """Which reference frame each output frame renders from: time-aligned (clamped at the end),
    or a single frozen frame (bullet time) when `freeze_frame` is set."""
    if freeze_frame is not None:
        if not 0 <= freeze_frame < num_source_frames:
            raise TrajectoryError(
                f"freeze_frame: expected a reference frame index in [0, {num_source_frames}), found {freeze_frame}"
            )
        return np.full((num_frames,), freeze_frame, np.int32)
    return np.minimum(np.arange(num_frames), num_source_frames - 1).astype(np.int32)


ROTATION_TOL = 1e-3  # |R R^T - I| and |det R - 1| allowed in a camera file (float32 text round-off)


def check_w2c(w2c, source: str = "<array>", lines: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Checks camera poses (N, 4, 4) or (N, 3, 4) -> (N, 4, 4) float64, else raises TrajectoryError.

    Each matrix must be finite, its last row 0 0 0 1, and its rotation proper: R R^T = I and
    det R = +1 (a mirror, det -1, would flip the render). The error names `source`, the matrix
    index and, when `lines` gives each matrix's (first, last) line in a text file, its lines.
    The check is direction-free: it applies to w2c and c2w alike.
    """
    arr = np.asarray(w2c, np.float64)
    shape = arr.shape
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] not in ((4, 4), (3, 4)) or arr.shape[0] == 0:
        raise TrajectoryError(f"{source}: expected (N, 4, 4) or (N, 3, 4) camera matrices, found shape {shape}")
    if arr.shape[1] == 3:
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (arr.shape[0], 1, 4))
        arr = np.concatenate([arr, bottom], axis=1)

    def where(i: int) -> str:
        if lines is None:
            return f"{source}: matrix {i}"
        a, b = lines[i]
        return f"{source}:{a}: matrix {i}" + (f" (lines {a}-{b})" if b != a else "")

    finite = np.isfinite(arr).all(axis=(1, 2))
    if not finite.all():
        i = int(np.argmin(finite))
        raise TrajectoryError(f"{where(i)}: expected finite numbers, found {arr[i][~np.isfinite(arr[i])][0]}")
    row_err = np.abs(arr[:, 3] - [0, 0, 0, 1]).max(axis=1)
    if np.any(row_err > 1e-6):
        i = int(np.argmax(row_err > 1e-6))
        raise TrajectoryError(f"{where(i)}: expected last row 0 0 0 1, found {_fmt(arr[i, 3])}")
    R = arr[:, :3, :3]
    ortho = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max(axis=(1, 2))
    if np.any(ortho > ROTATION_TOL):
        i = int(np.argmax(ortho > ROTATION_TOL))
        raise TrajectoryError(
            f"{where(i)}: not a rigid transform: expected an orthonormal rotation, found |R R^T - I| = {ortho[i]:.2e}"
        )
    det = np.linalg.det(R)
    if np.any(np.abs(det - 1) > ROTATION_TOL):
        i = int(np.argmax(np.abs(det - 1) > ROTATION_TOL))
        raise TrajectoryError(
            f"{where(i)}: expected a proper rotation (det R = +1), found det R = {det[i]:+.4f}"
            + (" (a mirror: it would flip the image)" if det[i] < 0 else "")
        )
    return arr


def check_intrinsics(K, source: str = "<array>", lines: Sequence[tuple[int, int]] | None = None) -> np.ndarray:
    """Checks pinhole intrinsics (3, 3) or (N, 3, 3) -> (N, 3, 3) float64, else raises TrajectoryError.

    Each K must be finite, with focal lengths fx = K[0, 0] > 0 and fy = K[1, 1] > 0, K[1, 0] =
    K[2, 0] = K[2, 1] = 0 and K[2, 2] = 1 (skew K[0, 1] is allowed). Errors name the matrix."""
    K = np.asarray(K, np.float64)
    shape = K.shape
    if K.ndim == 2:
        K = K[None]
    if K.ndim != 3 or K.shape[1:] != (3, 3) or K.shape[0] == 0:
        raise TrajectoryError(f"{source}: expected (3, 3) or (N, 3, 3) intrinsics, found shape {shape}")
    for i, k in enumerate(K):
        at = f"{source}:{lines[i][0]}: matrix {i}" if lines is not None else f"{source}: matrix {i}"
        if not np.isfinite(k).all():
            raise TrajectoryError(f"{at}: expected finite intrinsics, found {_fmt(k.ravel())}")
        if not (k[0, 0] > 0 and k[1, 1] > 0):
            raise TrajectoryError(f"{at}: expected focal lengths fx, fy > 0, found fx = {k[0, 0]:g}, fy = {k[1, 1]:g}")
        if np.abs(k[[1, 2, 2], [0, 0, 1]]).max() > 1e-9 or abs(k[2, 2] - 1) > 1e-9:
            raise TrajectoryError(
                f"{at}: expected [[fx, s, cx], [0, fy, cy], [0, 0, 1]], found rows 2-3 {_fmt(k[1:].ravel())}"
            )
    return K


def load_w2c_file(path: str | os.PathLike) -> np.ndarray:
    """Loads per-frame OpenCV world-to-camera matrices -> (N, 4, 4) float64, checked by `check_w2c`.

    Accepted: `.npy` (N, 4, 4) or (N, 3, 4); `.json` (a list of 4x4 / 3x4 nested lists, or
    {"w2c": [...]}); text with one matrix per line (16 or 12 numbers) or stacked rows
    (4 rows of 4, or 3 rows of 4 per frame, as Depth-Anything-3's extrinsic.txt); '#' comments.
    """
    path = os.fspath(path)
    linenos = None
    try:
        arr = _read_array_file(path, "w2c")
        if arr is None:
            arr, linenos = _read_text_matrix(path)
    except TrajectoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any read failure becomes a named error
        raise TrajectoryError(f"{path}: cannot read camera matrices ({type(e).__name__}: {e})") from e
    arr = np.asarray(arr, np.float64)
    rows = 1
    if arr.ndim == 2 and arr.shape[1] in (12, 16):
        arr = arr.reshape(arr.shape[0], -1, 4)
    elif arr.ndim == 2 and arr.shape[1] == 4 and arr.shape[0] % 4 == 0 and (_looks_4x4(arr) or arr.shape[0] % 3):
        arr, rows = arr.reshape(-1, 4, 4), 4
    elif arr.ndim == 2 and arr.shape[1] == 4 and arr.shape[0] % 3 == 0:
        arr, rows = arr.reshape(-1, 3, 4), 3
    elif arr.ndim == 2 and linenos is not None:
        raise TrajectoryError(
            f"{path}: expected lines of 16 or 12 numbers (one matrix each) or stacked rows of 4 (3 or 4 per "
            f"matrix), found {arr.shape[0]} lines of {arr.shape[1]} numbers"
        )
    lines = None if linenos is None else [(linenos[i * rows], linenos[i * rows + rows - 1]) for i in range(len(arr))]
    return check_w2c(arr, path, lines)


def load_intrinsics_file(path: str | os.PathLike) -> np.ndarray:
    """Loads pinhole intrinsics -> (N, 3, 3) float64 (N = 1 for a single K), checked by `check_intrinsics`.

    Accepted: `.npy` (3, 3) or (N, 3, 3); `.json` (nested lists, or {"K": ...}); text with 3 rows
    of 3 numbers per matrix, or one matrix of 9 numbers per line; '#' comments."""
    path = os.fspath(path)
    lines = None
    try:
        K = _read_array_file(path, "K")
        if K is None:
            rows, linenos = _read_text_matrix(path)
            if rows.shape[1] == 9:
                K, lines = rows.reshape(-1, 3, 3), [(n, n) for n in linenos]
            elif rows.shape[1] == 3 and rows.shape[0] % 3 == 0:
                K, lines = rows.reshape(-1, 3, 3), [(linenos[i], linenos[i + 2]) for i in range(0, len(rows), 3)]
            else:
                raise TrajectoryError(
                    f"{path}: expected 3 rows of 3 numbers per matrix or 9 numbers per line, found "
                    f"{rows.shape[0]} lines of {rows.shape[1]} numbers"
                )
    except TrajectoryError:
        raise
    except Exception as e:  # noqa: BLE001
        raise TrajectoryError(f"{path}: cannot read intrinsics ({type(e).__name__}: {e})") from e
    return check_intrinsics(K, path, lines)


def _fmt(values) -> str:
    return " ".join(f"{v:g}" for v in np.ravel(values))


def _looks_4x4(arr: np.ndarray) -> bool:
    return bool(np.allclose(arr[3::4], [0, 0, 0, 1], atol=1e-6))


def _read_array_file(path: str, json_key: str) -> np.ndarray | None:
    """A `.npy` array, or a `.json` list (or {json_key: list}); None for any other file (text)."""
    if path.endswith(".npy"):
        return np.load(path)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
        return np.asarray(obj[json_key] if isinstance(obj, dict) else obj, np.float64)
    return None


def _read_text_matrix(path: str) -> tuple[np.ndarray, list[int]]:
    """Rows of numbers (n, width) and each row's 1-based line number; blank and '#' lines skipped."""
    rows, linenos = [], []
    width = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            toks = line.replace(",", " ").split()
            try:
                row = [float(t) for t in toks]
            except ValueError:
                bad = next(t for t in toks if not _is_float(t))
                raise TrajectoryError(f"{path}:{lineno}: expected numbers, found {bad!r}") from None
            if width is None:
                width = len(row)
            if len(row) != width:
                raise TrajectoryError(
                    f"{path}:{lineno}: expected {width} numbers (as line {linenos[0]}), found {len(row)}"
                )
            rows.append(row)
            linenos.append(lineno)
    if not rows:
        raise TrajectoryError(f"{path}: no camera matrices found (the file is empty or only comments)")
    return np.asarray(rows, np.float64), linenos


def _is_float(tok: str) -> bool:
    try:
        float(tok)
    except ValueError:
        return False
    return True
