"""Camera geometry, trajectories and depth warping, in JAX.

Conventions (written once, used everywhere in star-jax)
-------------------------------------------------------
* Camera axes are OpenCV's: x right, y down, z forward. A point in front of the camera has z > 0.
* Poses are 4x4 homogeneous matrices whose name says their direction:
  ``w2c`` maps world points to camera points (x_cam = w2c @ x_world), ``c2w`` is its inverse.
  ``rel_c2w`` is a pose relative to a reference camera (that camera's frame is the "world").
* Intrinsics ``K`` are 3x3, in pixels. Pixel (u, v) = (column, row); the centre of the
  top-left pixel is (0, 0), so a pixel's integer coordinates are its centre.
* Depth is z-depth (distance along the optical axis, not along the ray), in scene units;
  depth <= 0 or non-finite means "no measurement".
* Images are channel-last: a frame is (H, W, C), a video (T, H, W, C), a batch (B, T, H, W, C).
* Plücker rays are (o x d, d) with d the unit ray direction in world space and o the camera
  centre: 6 channels, moment first.
* Angles in trajectory files are degrees; everything inside the library is radians.
"""

from star_jax.geometry.cameras import (
    intrinsics_matrix,
    invert_rigid,
    pixel_grid,
    plucker_rays,
    project,
    resize_intrinsics,
    transform_points,
    unproject,
)
from star_jax.geometry.controller import (
    CameraController,
    ControllerConfig,
    check_keys,
    parse_key_script,
    parse_key_script_file,
)
from star_jax.geometry.trajectory import (
    INTERPOLATION_MODES,
    KeyframeTrajectory,
    TrajectoryError,
    check_interpolation_mode,
    check_intrinsics,
    check_positive_finite,
    check_w2c,
    foreground_depth,
    interpolate_keyframes,
    keyframes_to_rel_c2w,
    load_intrinsics_file,
    load_w2c_file,
    orbit_rel_c2w,
    parse_keyframe_file,
    parse_keyframe_text,
    source_frame_indices,
    target_w2c,
    trajectory_target_w2c,
)
from star_jax.geometry.warp import WARP_MODES, WarpRecipe, WarpResult, warp_frame, warp_frames, warp_recipe

__all__ = [
    "INTERPOLATION_MODES",
    "CameraController",
    "ControllerConfig",
    "parse_key_script",
    "parse_key_script_file",
    "KeyframeTrajectory",
    "TrajectoryError",
    "WARP_MODES",
    "WarpRecipe",
    "WarpResult",
    "check_interpolation_mode",
    "check_intrinsics",
    "check_keys",
    "check_positive_finite",
    "check_w2c",
    "foreground_depth",
    "interpolate_keyframes",
    "intrinsics_matrix",
    "invert_rigid",
    "keyframes_to_rel_c2w",
    "load_intrinsics_file",
    "load_w2c_file",
    "orbit_rel_c2w",
    "parse_keyframe_file",
    "parse_keyframe_text",
    "pixel_grid",
    "plucker_rays",
    "project",
    "resize_intrinsics",
    "source_frame_indices",
    "target_w2c",
    "trajectory_target_w2c",
    "transform_points",
    "unproject",
    "warp_frame",
    "warp_frames",
    "warp_recipe",
]
