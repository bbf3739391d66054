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
"""

from __future__ import annotations

import dataclasses
import json
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
    if len(lines) != 3:
        raise TrajectoryError(
            f"{source}: expected 3 non-empty lines (pitch, yaw, displacement), found {len(lines)}"
        )
    values = []
    for (lineno, line), name in zip(lines, _LINE_NAMES):
        row = []
        for tok in line.split():
            try:
                val = float(tok)
            except ValueError:
                raise TrajectoryError(
                    f"{source}:{lineno}: {name} line has a non-number {tok!r}"
                ) from None
            if not np.isfinite(val):
                raise TrajectoryError(f"{source}:{lineno}: {name} line has a non-finite value {tok!r}")
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


def interpolate_keyframes(keyframes: Sequence[float], num_frames: int, mode: str = "linear") -> np.ndarray:
    """Resamples keyframes spread evenly over [0, 1] to `num_frames` evenly spread samples.

    mode "linear" is piecewise linear (the documented format); "smooth" is the cubic smoothing
    spline the public InSpatio release uses for more than 3 keyframes (endpoints pinned).
    """
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
    if mode == "smooth":
        from scipy.interpolate import UnivariateSpline

        out = UnivariateSpline(x, k, k=3)(xn)
        out[0], out[-1] = k[0], k[-1]
        return out
    raise TrajectoryError(f"unknown interpolation mode {mode!r} (use 'linear' or 'smooth')")


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
    if not np.isfinite(foreground_depth) or foreground_depth <= 0:
        raise TrajectoryError(f"foreground depth must be positive and finite, got {foreground_depth}")
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
            raise TrajectoryError(f"freeze_frame {freeze_frame} outside [0, {num_source_frames})")
        return np.full((num_frames,), freeze_frame, np.int32)
    return np.minimum(np.arange(num_frames), num_source_frames - 1).astype(np.int32)


def load_w2c_file(path: str | os.PathLike) -> np.ndarray:
    """Loads per-frame OpenCV world-to-camera matrices -> (N, 4, 4) float64.

    Accepted: `.npy` (N, 4, 4) or (N, 3, 4); `.json` (a list of 4x4 / 3x4 nested lists, or
    {"w2c": [...]}); text with one matrix per line (16 or 12 numbers) or stacked rows
    (4 rows of 4, or 3 rows of 4 per frame, as Depth-Anything-3's extrinsic.txt).
    """
    path = os.fspath(path)
    try:
        if path.endswith(".npy"):
            arr = np.load(path)
        elif path.endswith(".json"):
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
            arr = np.asarray(obj["w2c"] if isinstance(obj, dict) else obj, np.float64)
        else:
            arr = _read_text_matrix(path)
    except TrajectoryError:
        raise
    except Exception as e:  # noqa: BLE001 - any read failure becomes a named error
        raise TrajectoryError(f"{path}: cannot read camera matrices: {e}") from e
    arr = np.asarray(arr, np.float64)
    if arr.ndim == 2 and arr.shape[1] in (12, 16):
        arr = arr.reshape(arr.shape[0], -1, 4)
    elif arr.ndim == 2 and arr.shape[1] == 4 and arr.shape[0] % 4 == 0 and _looks_4x4(arr):
        arr = arr.reshape(-1, 4, 4)
    elif arr.ndim == 2 and arr.shape[1] == 4 and arr.shape[0] % 3 == 0:
        arr = arr.reshape(-1, 3, 4)
    if arr.ndim != 3 or arr.shape[1:] not in ((4, 4), (3, 4)) or arr.shape[0] == 0:
        raise TrajectoryError(f"{path}: expected (N, 4, 4) or (N, 3, 4) camera matrices, got {arr.shape}")
    if arr.shape[1] == 3:
        bottom = np.broadcast_to(np.array([0, 0, 0, 1.0]), (arr.shape[0], 1, 4))
        arr = np.concatenate([arr, bottom], axis=1)
    if not np.all(np.isfinite(arr)):
        bad = int(np.argwhere(~np.isfinite(arr).all(axis=(1, 2)))[0, 0])
        raise TrajectoryError(f"{path}: matrix {bad} has non-finite entries")
    R = arr[:, :3, :3]
    err = np.abs(R @ np.swapaxes(R, 1, 2) - np.eye(3)).max(axis=(1, 2))
    if np.any(err > 1e-3) or np.any(np.abs(arr[:, 3] - [0, 0, 0, 1]).max(axis=1) > 1e-6):
        bad = int(np.argmax(err))
        raise TrajectoryError(f"{path}: matrix {bad} is not a rigid transform (|R R^T - I| = {err[bad]:.2e})")
    return arr


def _looks_4x4(arr: np.ndarray) -> bool:
    return bool(np.allclose(arr[3::4], [0, 0, 0, 1], atol=1e-6))


def _read_text_matrix(path: str) -> np.ndarray:
    rows = []
    width = None
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            try:
                row = [float(t) for t in line.replace(",", " ").split()]
            except ValueError:
                raise TrajectoryError(f"{path}:{lineno}: non-number in camera matrix line") from None
            if width is None:
                width = len(row)
            if len(row) != width:
                raise TrajectoryError(f"{path}:{lineno}: expected {width} numbers, found {len(row)}")
            rows.append(row)
    if not rows:
        raise TrajectoryError(f"{path}: no camera matrices found")
    return np.asarray(rows, np.float64)
