"""Camera paths through a world, in the InSpatio keyframe vocabulary of `star_jax.geometry`.

A path is a base camera (`look_at`) followed by a `KeyframeTrajectory` relative to it: an orbit
(pitch / yaw about a point `foreground depth` ahead), a dolly (pitch = yaw = 0, displacement =
forward motion), or a pan (an orbit's rotations with the translation dropped: `rotation_only`).
The relative poses come from `star_jax.geometry.keyframes_to_rel_c2w`, the same code that turns a
user's trajectory file into cameras, so a world's paths mean what the same file means to the jobs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from star_jax.geometry import KeyframeTrajectory, keyframes_to_rel_c2w, trajectory_target_w2c

KINDS = ("orbit", "dolly", "pan")


@dataclasses.dataclass(frozen=True)
class CameraPath:
    """`trajectory` relative to a base camera; `kind` "pan" keeps only its rotations."""

    kind: str
    trajectory: KeyframeTrajectory

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"camera path kind {self.kind!r} not in {KINDS}")
        if (self.kind == "dolly") != self.trajectory.is_dolly:
            raise ValueError(f"a {self.kind} path needs {'zero' if self.kind == 'dolly' else 'some'} pitch / yaw")


def keyframes(pitch_deg, yaw_deg, displacement, source: str = "<generated>") -> KeyframeTrajectory:
    return KeyframeTrajectory(np.asarray(pitch_deg, np.float64), np.asarray(yaw_deg, np.float64),
                              np.asarray(displacement, np.float64), source)


def trajectory_text(traj: KeyframeTrajectory) -> str:
    """The 3-line keyframe file of `traj` (what `star_jax.geometry.parse_keyframe_text` reads)."""
    return "".join(" ".join(f"{x:g}" for x in line) + "\n" for line in (traj.pitch_deg, traj.yaw_deg, traj.displacement))


def look_at(eye, target, up=(0.0, 1.0, 0.0)) -> np.ndarray:
    """c2w (4, 4) float64 of an OpenCV camera at `eye` looking at `target` (x right, y down)."""
    eye, target, up = (np.asarray(v, np.float64) for v in (eye, target, up))
    z = target - eye
    z /= np.linalg.norm(z)
    x = np.cross(z, up)
    if np.linalg.norm(x) < 1e-9:
        raise ValueError("look_at: viewing direction is parallel to `up`")
    x /= np.linalg.norm(x)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([x, np.cross(z, x), z], axis=1)
    c2w[:3, 3] = eye
    return c2w


def path_w2c(base_c2w: np.ndarray, path: CameraPath, num_frames: int, scale: float) -> np.ndarray:
    """World-to-camera (num_frames, 4, 4) float64 of `path` from `base_c2w`; displacement x `scale`."""
    rel = keyframes_to_rel_c2w(path.trajectory, num_frames, scale, rotation_only=path.kind == "pan")
    return np.linalg.inv(np.asarray(base_c2w, np.float64) @ np.asarray(rel, np.float64))


def trajectory_w2c(traj: KeyframeTrajectory, source_depth0: np.ndarray, source_w2c: np.ndarray, num_frames: int,
                   radius_ratio: float = 1.0, rotation_only: bool = False) -> np.ndarray:
    """Target cameras (num_frames, 4, 4) float32 of a keyframe file read against a source clip, as
    the jobs compute them (`star_jax.render.build_target_cameras` with the default camera options):
    displacement x foreground depth of the first source depth map, relative to the first source
    camera."""
    return trajectory_target_w2c(traj, source_depth0, np.asarray(source_w2c, np.float32), num_frames, radius_ratio,
                                 rotation_only)[0]
