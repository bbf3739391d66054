"""One training / evaluation example from a procedural world: a source video along one camera
path and a target video of the same dynamic scene, at the same times, along another.

    ex = sample_world(seed=3)                      # a random scene, random source and target paths
    ex.source_rgb, ex.source_depth, ex.source_w2c  # (T, H, W, 3) uint8, (T, H, W) float32, (T, 4, 4)
    ex.target_rgb, ex.target_w2c, ex.K, ex.caption

The target path is a keyframe trajectory read against the source clip exactly as the jobs read a
user's trajectory file (displacement x the foreground depth of source frame 0, relative to source
camera 0), so (source video, source depth, source w2c, K, trajectory) -> target video is the task
the model is asked to solve.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from data_pipelines.worlds.paths import CameraPath, keyframes, look_at, path_w2c, trajectory_w2c
from data_pipelines.worlds.raycast import cast, render_depth, render_video
from data_pipelines.worlds.scene import Scene, describe, random_scene
from data_pipelines.worlds.textures import APPEARANCES
from star_jax.geometry import KeyframeTrajectory
from star_jax.io.files import to_uint8


@dataclasses.dataclass(frozen=True)
class WorldSpec:
    """Sizes and rendering settings of an example. `appearance` changes only the colours: "flat"
    renders every object in its texture's mean colour (the same seed, scene, cameras, depth, ids
    and caption as "textured")."""

    height: int = 240
    width: int = 416
    num_frames: int = 45
    fps: float = 15.0
    fov_x_deg: float = 70.0
    supersample: int = 2
    depth_quantum: float = 0.0  # > 0: source depth rounded to this step (as 16-bit PNGs store it)
    appearance: str = "textured"  # textured | flat

    def __post_init__(self):
        if min(self.height, self.width, self.num_frames, self.supersample) < 1 or not self.fps > 0:
            raise ValueError(f"WorldSpec needs positive sizes, frames, supersample and fps, got {self}")
        if not 0 < self.fov_x_deg < 180 or self.depth_quantum < 0:
            raise ValueError(f"WorldSpec: fov_x_deg in (0, 180) and depth_quantum >= 0, got {self}")
        if self.appearance not in APPEARANCES:
            raise ValueError(f"WorldSpec: appearance must be one of {APPEARANCES}, got {self.appearance!r}")

    def intrinsics(self) -> np.ndarray:
        """K (3, 3) float32: centred principal point, square pixels."""
        f = 0.5 * self.width / np.tan(np.radians(self.fov_x_deg) / 2)
        return np.array([[f, 0, (self.width - 1) / 2], [0, f, (self.height - 1) / 2], [0, 0, 1]], np.float32)

    def times(self) -> np.ndarray:
        return np.arange(self.num_frames, dtype=np.float64) / self.fps


@dataclasses.dataclass(frozen=True)
class WorldSample:
    scene: Scene
    caption: str
    K: np.ndarray  # (3, 3) float32, both cameras
    times: np.ndarray  # (T,) seconds
    source_rgb: np.ndarray  # (T, H, W, 3) uint8
    source_depth: np.ndarray  # (T, H, W) float32 z-depth, 0 = sky
    source_ids: np.ndarray  # (T, H, W) int16 object index, -1 = sky
    source_w2c: np.ndarray  # (T, 4, 4) float32
    target_rgb: np.ndarray
    target_depth: np.ndarray
    target_ids: np.ndarray
    target_w2c: np.ndarray
    source_path: CameraPath
    target_trajectory: KeyframeTrajectory


def quantize_depth(depth: np.ndarray, step: float) -> tuple[np.ndarray, np.ndarray]:
    """z-depth -> (uint16 codes, the float32 depth a reader gets back: code x step, as
    `star_jax.io.manifest.read_depth` computes it). 0 stays 0 (no depth); 65535 (the Kinect
    "no reading" code) is never used: a depth past 65534 steps is an error, not clipped."""
    code = np.round(np.asarray(depth, np.float64) / step)
    if code.max(initial=0) > 65534 or code.min(initial=0) < 0:
        raise ValueError(f"depth range [{np.min(depth)}, {np.max(depth)}] does not fit 16 bits at step {step}")
    code = code.astype(np.uint16)
    return code, code.astype(np.float32) * np.float32(step)


def random_paths(rng: np.random.Generator) -> tuple[CameraPath, CameraPath]:
    """A gentle source path (any kind) and a larger target move (orbit or dolly), as keyframes."""
    def path(kind, big):
        amp = (15.0, 35.0) if big else (4.0, 12.0)
        if kind == "dolly":
            d = rng.uniform(0.15, 0.35) if big else rng.uniform(0.05, 0.15)
            return CameraPath(kind, keyframes([0.0], [0.0], [0.0, d * rng.choice([-1.0, 1.0])]))
        yaw = [0.0, rng.choice([-1.0, 1.0]) * rng.uniform(*amp)]
        pitch = [0.0, rng.uniform(-0.3, 0.3) * yaw[1]]
        if big and rng.uniform() < 0.5:  # out and back
            yaw, pitch = yaw + [yaw[1] * rng.uniform(-0.5, 0.5)], pitch + [0.0]
        return CameraPath(kind, keyframes(pitch, yaw, [1.0]))

    source = path(str(rng.choice(["orbit", "dolly", "pan"])), big=False)
    target = path(str(rng.choice(["orbit", "orbit", "dolly"])), big=True)
    return source, target


def source_cameras(scene: Scene, spec: WorldSpec, base_c2w: np.ndarray, path: CameraPath) -> np.ndarray:
    """World-to-camera (T, 4, 4) float32 of `path` from `base_c2w`; displacement in units of the
    distance to what the base camera's optical axis meets first (its orbit pivot)."""
    o, d = base_c2w[:3, 3], base_c2w[:3, 2]
    t, _ = cast(scene, o, d[None], 0.0)
    scale = float(t[0]) if np.isfinite(t[0]) else 5.0
    return path_w2c(base_c2w, path, spec.num_frames, scale).astype(np.float32)


def target_cameras(scene: Scene, spec: WorldSpec, source_w2c: np.ndarray, trajectory: KeyframeTrajectory,
                   radius_ratio: float = 1.0) -> np.ndarray:
    """World-to-camera (T, 4, 4) float32 of a keyframe trajectory read against the source clip as
    the jobs read it, from source frame 0's depth (quantised as stored when spec says so)."""
    depth0 = render_depth(scene, spec.intrinsics(), source_w2c[0], (spec.height, spec.width), 0.0)
    if spec.depth_quantum > 0:
        depth0 = quantize_depth(depth0, spec.depth_quantum)[1]
    return trajectory_w2c(trajectory, depth0, source_w2c, spec.num_frames, radius_ratio)


def render_pair(scene: Scene, spec: WorldSpec, source_w2c: np.ndarray, target_w2c: np.ndarray,
                source_path: CameraPath, target_trajectory: KeyframeTrajectory) -> WorldSample:
    """Renders the source and target videos of `scene` at `spec.times()`."""
    K = spec.intrinsics()
    hw, times = (spec.height, spec.width), spec.times()
    src = render_video(scene, K, source_w2c, hw, times, spec.supersample, appearance=spec.appearance)
    tgt = render_video(scene, K, target_w2c, hw, times, spec.supersample, appearance=spec.appearance)
    depth = src.depth if spec.depth_quantum <= 0 else quantize_depth(src.depth, spec.depth_quantum)[1]
    return WorldSample(scene, describe(scene), K, times, to_uint8(src.rgb), depth, src.ids, source_w2c,
                       to_uint8(tgt.rgb), tgt.depth, tgt.ids, target_w2c, source_path, target_trajectory)


def camera_fits(scene: Scene, w2c: np.ndarray) -> bool:
    """Every camera centre of w2c (T, 4, 4) stands where `Scene.contains` allows."""
    centres = np.linalg.inv(np.asarray(w2c, np.float64))[:, :3, 3]
    return all(scene.contains(c) for c in centres)


def sample_world(seed: int, spec: WorldSpec = WorldSpec(), max_tries: int = 50) -> WorldSample:
    """A random scene and camera paths from `seed` (the same seed, the same example). Paths whose
    cameras would leave the courtyard or enter an object's reach are redrawn."""
    rng = np.random.default_rng([seed, 1])
    scene = random_scene(seed)
    for _ in range(max_tries):
        r = rng.uniform(scene.half_extent - 2.5, scene.half_extent - 1.2)
        az = rng.uniform(0, 2 * np.pi)
        eye = (r * np.cos(az), rng.uniform(1.2, 2.2), r * np.sin(az))
        aim = (rng.uniform(-1.0, 1.0), rng.uniform(0.2, 0.8), rng.uniform(-1.0, 1.0))
        source, target = random_paths(rng)
        src_w2c = source_cameras(scene, spec, look_at(eye, aim), source)
        if not camera_fits(scene, src_w2c):
            continue
        tgt_w2c = target_cameras(scene, spec, src_w2c, target.trajectory)
        if camera_fits(scene, tgt_w2c):
            return render_pair(scene, spec, src_w2c, tgt_w2c, source, target.trajectory)
    raise RuntimeError(f"sample_world(seed={seed}): no camera path fits the scene in {max_tries} tries")
