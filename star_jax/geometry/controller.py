"""Interactive camera control: key presses -> a smooth, physically plausible camera path.

    ctl = CameraController(ControllerConfig(fps=15), scene_scale=foreground_depth(depth0),
                           guard_depth=depth0, guard_K=K0)
    rel_c2w = ctl.step({"forward", "yaw_left"})       # (4, 4), relative to the reference camera
    rel_c2w = ctl.step({"forward": 2.0})              # a key pressed twice as hard
    path = ctl.run(parse_key_script("30 forward\n15 forward+yaw_left"))   # (T, 4, 4)
    path = CameraController(moves_controller_config(MoveSpeeds(), fps=15), scale).run(
        parse_moves("forward:36 turn-right+forward:36 look-up:12"))       # scripted moves, same rig

The camera lives in the reference camera's frame (OpenCV axes: x right, y down, z forward), the
same frame as the keyframe trajectories' `rel_c2w`, so `target_w2c` places it in the world.
Orientation is R = R_y(yaw) R_x(pitch), as the orbit trajectories use.

Physics, per frame of dt = 1 / fps (all lengths in units of `scene_scale`, the scene's foreground
depth, so one config fits a room and a valley):
  * the keys set a target velocity (in the camera's own axes) of magnitude `max_speed` (times the
    largest scale among the pressed move keys, 1 for a plain key set); the velocity moves toward it
    by at most `max_accel * dt`: |v| <= max_speed x scale and |dv| <= max_accel dt always;
  * yaw / pitch rates likewise (`max_turn_rate`, `max_turn_accel`); pitch is clamped to +-`max_pitch`;
  * the collision guard keeps the camera `clearance` in front of the reconstructed surface (the
    reference depth map seen from the reference camera): the speed toward the surface is limited to
    the braking speed sqrt(2 a gap), and the position is never allowed past it.

Scripted moves (`parse_moves`, navigate's --moves) are tokens `name[*scale][+name...]:frames`
with the names of MOVE_NAMES; `MoveSpeeds` gives their speeds per frame (a fraction of the
scene scale, the median depth of the reference's central window, and degrees) and
`moves_controller_config` turns them into this controller's settings, so moves and key presses
drive one camera rig with the same smoothing and pitch bound.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from typing import Iterable, Mapping, Sequence

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


def key_weights(keys: Iterable[str] | Mapping[str, float], where: str = "keys") -> dict[str, float]:
    """A key set (each pressed with scale 1) or a mapping key -> scale > 0 -> checked {key: scale}."""
    if isinstance(keys, Mapping):
        check_keys(keys, where)
        for k, v in keys.items():
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise TrajectoryError(f"{where}: key {k!r}: expected a scale > 0, found {v!r}")
        return {k: float(v) for k, v in keys.items()}
    return dict.fromkeys(check_keys(keys, where), 1.0)


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

    def step(self, keys: Iterable[str] | Mapping[str, float] = ()) -> np.ndarray:
        """Advances one frame under the pressed `keys` (names, or a mapping name -> scale);
        returns rel_c2w (4, 4) float64."""
        keys = key_weights(keys, "CameraController.step")
        c = self.config
        dt = 1.0 / c.fps

        turn = np.array([sum(TURN_KEYS[k][i] * w for k, w in keys.items() if k in TURN_KEYS) for i in range(2)])
        most = max([w for k, w in keys.items() if k in TURN_KEYS] or [1.0])
        turn_target = np.clip(turn, -most, most) * c.max_turn_rate
        self.turn_rate = self.turn_rate + np.clip(turn_target - self.turn_rate, -c.max_turn_accel * dt,
                                                  c.max_turn_accel * dt)
        self.yaw += self.turn_rate[0] * dt
        pitch = self.pitch + self.turn_rate[1] * dt
        if abs(pitch) > c.max_pitch:
            pitch, self.turn_rate[1] = math.copysign(c.max_pitch, pitch), 0.0
        self.pitch = pitch
        R = rotation_yaw_pitch(self.yaw, self.pitch)

        move = np.sum([np.multiply(MOVE_KEYS[k], w) for k, w in keys.items() if k in MOVE_KEYS] or [np.zeros(3)],
                      axis=0)
        n = float(np.linalg.norm(move))
        most = max([w for k, w in keys.items() if k in MOVE_KEYS] or [1.0])
        v_target = R @ (move / n) * most * c.max_speed * self.scale if n > 0 else np.zeros(3)
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

    def run(self, key_frames: Sequence[Iterable[str] | Mapping[str, float]]) -> np.ndarray:
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


# ---------------------------------------------------------------------------------------------
# scripted moves

# move name -> controller key (None: no key, the camera coasts to a stop)
MOVE_NAMES = {
    "forward": "forward", "back": "back", "left": "left", "right": "right", "up": "up", "down": "down",
    "turn-left": "yaw_left", "turn-right": "yaw_right", "look-up": "pitch_up", "look-down": "pitch_down",
    "still": None,
}
_MOVE = re.compile(r"(?P<keys>[^:]+):(?P<frames>\d+)")
_PART = re.compile(r"(?P<name>[a-z-]+)(\*(?P<scale>[0-9.eE+-]+))?")


@dataclasses.dataclass(frozen=True)
class MoveSpeeds:
    """Speeds of the scripted moves, per output frame (navigate's config.moves_speed)."""

    speed: float = 0.02  # scene scales (median depth of the reference's central window) per frame
    turn_deg: float = 1.5  # degrees per frame, for turn-* and look-*
    max_pitch_deg: float = 60.0  # look-up / look-down stop here
    ramp_frames: float = 4.0  # frames to reach full speed from rest (and to stop)

    def __post_init__(self):
        for f in dataclasses.fields(self):
            check_positive_finite(getattr(self, f.name), f"moves speeds: {f.name}")
        if self.max_pitch_deg >= 90:
            raise TrajectoryError(f"moves speeds: max_pitch_deg: expected degrees in (0, 90), found "
                                  f"{self.max_pitch_deg!r}")


def moves_controller_config(speeds: MoveSpeeds, fps: float, clearance: float = 0.2) -> ControllerConfig:
    """The controller settings under which `parse_moves`'s keys move at `speeds` per frame."""
    check_positive_finite(fps, "fps")
    v, w, ramp = speeds.speed * fps, math.radians(speeds.turn_deg) * fps, speeds.ramp_frames / fps
    return ControllerConfig(fps=fps, max_speed=v, max_accel=v / ramp, max_turn_rate=w, max_turn_accel=w / ramp,
                            max_pitch=math.radians(speeds.max_pitch_deg), clearance=clearance)


def parse_moves(moves: str | Sequence[str], source: str = "--moves") -> list[dict[str, float]]:
    """Tokens `name[*scale][+name...]:frames` (a string split at whitespace, or a list) ->
    per frame {controller key: scale}. Names: MOVE_NAMES; scale a number > 0 (default 1);
    frames >= 1; "still" stands alone. Raises TrajectoryError naming `source`, the token and its
    position (1-based)."""
    tokens = moves.split() if isinstance(moves, str) else [t for m in moves for t in m.split()]
    out: list[dict[str, float]] = []
    known = ", ".join(MOVE_NAMES)
    for i, token in enumerate(tokens, 1):
        where = f"{source}: move {i} {token!r}"
        m = _MOVE.fullmatch(token)
        if not m:
            raise TrajectoryError(f"{where}: expected 'name[*scale][+name...]:frames' (e.g. forward:36 or "
                                  f"turn-right+forward*0.5:12), found no ':frames' count")
        frames = int(m["frames"])
        if frames < 1 or len(out) + frames > MAX_SCRIPT_FRAMES:
            raise TrajectoryError(f"{where}: expected a frame count in [1, {MAX_SCRIPT_FRAMES}] in all, found "
                                  f"{frames}")
        keys: dict[str, float] = {}
        names = m["keys"].split("+")
        for part in names:
            p = _PART.fullmatch(part)
            if not p or p["name"] not in MOVE_NAMES:
                name = p["name"] if p else part
                raise TrajectoryError(f"{where}: unknown move {name!r}; expected one of {known}")
            try:
                scale = 1.0 if p["scale"] is None else float(p["scale"])
            except ValueError:
                scale = math.nan
            if not (math.isfinite(scale) and scale > 0):
                raise TrajectoryError(f"{where}: {p['name']}: expected a scale > 0 after '*', found {p['scale']!r}")
            key = MOVE_NAMES[p["name"]]
            if key is None:
                if len(names) > 1:
                    raise TrajectoryError(f"{where}: expected 'still' alone, found it joined with other moves")
                continue
            if key in keys:
                raise TrajectoryError(f"{where}: expected each move once, found {p['name']!r} twice")
            keys[key] = scale
        out.extend([dict(keys) for _ in range(frames)])
    if not out:
        raise TrajectoryError(f"{source}: expected at least one move 'name:frames', found none")
    return out
