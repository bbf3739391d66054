"""Interactive camera control: key presses -> a smooth, physically plausible camera path.

    ctl = CameraController(ControllerConfig(fps=15), scene_scale=foreground_depth(depth0),
                           guard_depth=depth0, guard_K=K0)
    rel_c2w = ctl.step({"forward", "yaw_left"})       # (4, 4), relative to the reference camera
    path = ctl.run(parse_key_script("30 forward\n15 forward+yaw_left"))   # (T, 4, 4)

The camera lives in the reference camera's frame (OpenCV axes: x right, y down, z forward), the
same frame as the keyframe trajectories' `rel_c2w`, so `target_w2c` places it in the world.
Orientation is R = R_y(yaw) R_x(pitch), as the orbit trajectories use.

Physics, per frame of dt = 1 / fps (all lengths in units of `scene_scale`, the scene's foreground
depth, so one config fits a room and a valley):
  * the keys set a target velocity (in the camera's own axes) of magnitude `max_speed`; the velocity
    moves toward it by at most `max_accel * dt`: |v| <= max_speed and |dv| <= max_accel dt always;
  * yaw / pitch rates likewise (`max_turn_rate`, `max_turn_accel`); pitch is clamped to +-`max_pitch`;
  * the collision guard keeps the camera `clearance` in front of the reconstructed surface (the
    reference depth map seen from the reference camera): the speed toward the surface is limited to
    the braking speed sqrt(2 a gap), and the position is never allowed past it.
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Iterable, Sequence

import numpy as np

from star_jax.geometry.trajectory import TrajectoryError, check_positive_finite

# key -> direction in camera axes (x right, y down, z forward)
MOVE_KEYS = {
    "forward": (0.0, 0.0, 1.0), "back": (0.0, 0.0, -1.0),
    "left": (-1.0, 0.0, 0.0), "right": (1.0, 0.0, 0.0),
    "up": (0.0, -1.0, 0.0), "down": (0.0, 1.0, 0.0),
}
# key -> (yaw, pitch) rate sign; yaw > 0 turns right (toward +x), pitch > 0 looks down (toward +y)
TURN_KEYS = {"yaw_left": (-1.0, 0.0), "yaw_right": (1.0, 0.0), "pitch_up": (0.0, -1.0), "pitch_down": (0.0, 1.0)}
KEYS = frozenset(MOVE_KEYS) | frozenset(TURN_KEYS)


@dataclasses.dataclass(frozen=True)
class ControllerConfig:
    fps: float = 15.0
    max_speed: float = 0.5  # scene scales per second
    max_accel: float = 1.0  # scene scales per second^2
    max_turn_rate: float = math.radians(45.0)  # rad / s
    max_turn_accel: float = math.radians(180.0)  # rad / s^2
    max_pitch: float = math.radians(60.0)
    clearance: float = 0.2  # scene scales kept between the camera and the surface

    def __post_init__(self):
        for f in dataclasses.fields(self):
            if f.name != "clearance":
                check_positive_finite(getattr(self, f.name), f"ControllerConfig.{f.name}")
        if not (math.isfinite(self.clearance) and self.clearance >= 0):
            raise TrajectoryError(
                f"ControllerConfig.clearance: expected a finite number >= 0, found {self.clearance!r}"
            )


def check_keys(keys: Iterable[str], where: str = "keys") -> frozenset[str]:
    """Returns `keys` as a frozenset if every name is in KEYS, else raises TrajectoryError naming `where`."""
    keys = frozenset(keys)
    unknown = keys - KEYS
    if unknown:
        raise TrajectoryError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(KEYS)}")
    return keys


def rotation_yaw_pitch(yaw: float, pitch: float) -> np.ndarray:
    """R = R_y(yaw) @ R_x(pitch) (3, 3), the orbit trajectories' convention."""
    cy, sy, cp, sp = math.cos(yaw), math.sin(yaw), math.cos(pitch), math.sin(pitch)
    ry = np.array([[cy, 0.0, sy], [0.0, 1.0, 0.0], [-sy, 0.0, cy]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, cp, sp], [0.0, -sp, cp]])
    return ry @ rx


def _clip_norm(v: np.ndarray, limit: float) -> np.ndarray:
    n = float(np.linalg.norm(v))
    return v if n <= limit or n == 0.0 else v * (limit / n)


class CameraController:
    """Stateful: call `step(keys)` once per output frame. `reset()` goes back to the reference camera."""

    def __init__(self, config: ControllerConfig = ControllerConfig(), scene_scale: float = 1.0,
                 guard_depth: np.ndarray | None = None, guard_K: np.ndarray | None = None):
        check_positive_finite(scene_scale, "scene_scale")
        if (guard_depth is None) != (guard_K is None):
            raise TrajectoryError("the collision guard needs both guard_depth (H, W) and guard_K (3, 3)")
        if guard_depth is not None and (np.ndim(guard_depth) != 2 or np.shape(guard_K) != (3, 3)):
            raise TrajectoryError(f"guard_depth must be (H, W) and guard_K (3, 3), got {np.shape(guard_depth)}, "
                             f"{np.shape(guard_K)}")
        self.config = config
        self.scale = float(scene_scale)
        self.guard_depth = None if guard_depth is None else np.asarray(guard_depth, np.float64)
        self.guard_K = None if guard_K is None else np.asarray(guard_K, np.float64)
        self.reset()

    def reset(self) -> None:
        self.position = np.zeros(3)
        self.velocity = np.zeros(3)
        self.yaw = self.pitch = 0.0
        self.turn_rate = np.zeros(2)  # (yaw, pitch) rad / s

    def surface_depth(self, p: np.ndarray) -> float:
        """Depth of the reconstructed surface along the reference pixel p projects to (inf if none)."""
        if self.guard_depth is None or p[2] <= 1e-9:
            return math.inf
        u, v, w = self.guard_K @ p
        col, row = int(round(u / w)), int(round(v / w))
        h, wd = self.guard_depth.shape
        if not (0 <= row < h and 0 <= col < wd):
            return math.inf
        d = self.guard_depth[row, col]
        return float(d) if np.isfinite(d) and d > 0 else math.inf

    def step(self, keys: Iterable[str] = ()) -> np.ndarray:
        """Advances one frame under the pressed `keys`; returns rel_c2w (4, 4) float64."""
        keys = check_keys(keys, "CameraController.step")
        c = self.config
        dt = 1.0 / c.fps

        turn = np.array([sum(TURN_KEYS[k][i] for k in keys if k in TURN_KEYS) for i in range(2)])
        turn_target = np.clip(turn, -1, 1) * c.max_turn_rate
        self.turn_rate = self.turn_rate + np.clip(turn_target - self.turn_rate, -c.max_turn_accel * dt,
                                                  c.max_turn_accel * dt)
        self.yaw += self.turn_rate[0] * dt
        pitch = self.pitch + self.turn_rate[1] * dt
        if abs(pitch) > c.max_pitch:
            pitch, self.turn_rate[1] = math.copysign(c.max_pitch, pitch), 0.0
        self.pitch = pitch
        R = rotation_yaw_pitch(self.yaw, self.pitch)

        move = np.sum([MOVE_KEYS[k] for k in keys if k in MOVE_KEYS] or [np.zeros(3)], axis=0)
        n = float(np.linalg.norm(move))
        v_target = R @ (move / n) * c.max_speed * self.scale if n > 0 else np.zeros(3)
        self.velocity = self.velocity + _clip_norm(v_target - self.velocity, c.max_accel * self.scale * dt)

        # collision guard along the reference optical axis
        p = self.position
        limit = self.surface_depth(p) - c.clearance * self.scale
        if math.isfinite(limit) and self.velocity[2] > 0:
            brake = math.sqrt(2.0 * c.max_accel * self.scale * max(limit - p[2], 0.0))
            self.velocity[2] = min(self.velocity[2], brake)
        p = p + self.velocity * dt
        limit = self.surface_depth(p) - c.clearance * self.scale
        if p[2] > limit:
            p[2] = max(limit, self.position[2]) if math.isfinite(limit) else p[2]
            self.velocity[2] = min(self.velocity[2], 0.0)
        self.position = p

        out = np.eye(4)
        out[:3, :3] = R
        out[:3, 3] = self.position
        return out

    def run(self, key_frames: Sequence[Iterable[str]]) -> np.ndarray:
        """One `step` per entry of `key_frames`: (T, 4, 4) rel_c2w."""
        return np.stack([self.step(k) for k in key_frames])


MAX_SCRIPT_FRAMES = 1_000_000  # a key script longer than this (~18 h at 15 fps) is a typo


def parse_key_script(text: str, source: str = "<string>") -> list[frozenset[str]]:
    """Lines `<frames> <key>[+<key>...]` (or `<frames> idle`), '#' comments -> keys per frame.

    Raises TrajectoryError naming `source` and the line for a malformed line, a frame count that
    is not a positive integer, an unknown or empty key name, or a script with no frames."""
    out: list[frozenset[str]] = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) != 2:
            raise TrajectoryError(f"{source}:{lineno}: expected '<frames> <key>[+<key>...]', found {raw.strip()!r}")
        if not (parts[0].isascii() and parts[0].isdigit()) or int(parts[0]) < 1:
            raise TrajectoryError(f"{source}:{lineno}: expected a frame count >= 1, found {parts[0]!r}")
        names = [] if parts[1] == "idle" else parts[1].split("+")
        if "" in names:
            raise TrajectoryError(
                f"{source}:{lineno}: expected key names joined by '+', found an empty name in {parts[1]!r}"
            )
        keys = check_keys(names, f"{source}:{lineno}")
        if len(out) + int(parts[0]) > MAX_SCRIPT_FRAMES:
            raise TrajectoryError(f"{source}:{lineno}: expected at most {MAX_SCRIPT_FRAMES} frames in all, "
                                  f"found {len(out) + int(parts[0])}")
        out.extend([keys] * int(parts[0]))
    if not out:
        raise TrajectoryError(f"{source}: expected at least one '<frames> <key>' line, found none")
    return out


def parse_key_script_file(path: str | os.PathLike) -> list[frozenset[str]]:
    """Reads a key script file (see `parse_key_script`)."""
    path = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise TrajectoryError(f"{path}: cannot read key script ({getattr(e, 'strerror', None) or e})") from e
    return parse_key_script(text, path)
