"""WorldScore's camera control and 3D consistency of a generated video, from `sfm.reconstruct`.

    rec = sfm.reconstruct(frames, K)                       # once, shared by both metrics
    camera_control(frames, commanded_w2c, K, rec)          # Metric "camera_control"
    consistency_3d(frames, K, rec)                         # Metric "3d_consistency"

Camera control follows WorldScore's `camera_error_metrics.get_cameras_accuracy`:
- both paths are taken relative to their first camera (WorldScore's DROID-SLAM trajectory starts at
  the identity; its commanded cameras are generated with the first at the origin); no rotation
  alignment beyond that;
- camera centres: one scale c for the recovered path, minimising sum_t |g_t - c p_t| (the sum of
  norms, WorldScore's cvxpy objective). Deliberate deviation: c >= 0 here (WorldScore's c is free,
  so a video that moves backwards when commanded forwards could match with c < 0);
- WorldScore divides the commanded translation by its `camera_speed` (one step of its camera
  generator). Our commanded paths have their own units, so `translation_unit` defaults to the
  largest distance of a commanded camera from the first: e_t is a fraction of the path's extent (a
  WorldScore push-in spans 1 camera_speed, a move-left 0.5);
- e_R = mean over frames of the geodesic angle between recovered and commanded rotations (deg),
  e_t = mean of |c p_t - g_t|; score = sqrt((1 - e_R/15)(1 - e_t/0.5)) clipped
  (`worldscore.camera_control_score`).
A commanded path without translation (a pan, or no motion; extent under 1e-6 of the cameras'
translations): every g_t = 0, so WorldScore's fit gives
c = 0 and e_t = 0 whatever the video's translation; only the rotation counts. We do the same. A
video without translation (`model == "rotation"`) has p_t = 0: e_t = mean |g_t|, the commanded motion
it failed to make. Frames the reconstruction could not register are left out of the means and
listed; a reconstruction that failed gives a failed Metric with its reason.

3D consistency: WorldScore reports DROID-SLAM's mean reprojection error after its final bundle
adjustment, in pixels of its 1/8-resolution feature maps of a frame resized to area 512^2 (clip
1.0719). Here: the mean reprojection error of every tracked observation after our bundle adjustment
(`Reconstruction.mean_error_px`, at the working resolution (h, w)), converted by
x (512 / sqrt(h w)) / 8. Our sparse, forward-backward-checked corners are cleaner than DROID's dense
flow targets, so on the same video our error is likely lower; the conversion fixes the unit, not
the estimator. A video without translation has no 3D to check: the metric fails ("degenerate").
"""

from __future__ import annotations

import math

import numpy as np
from scipy.optimize import minimize_scalar

from star_jax.evaluation import sfm
from star_jax.evaluation.worldscore import REPROJECTION, Metric, camera_control_score, minmax_score
from star_jax.geometry.trajectory import TrajectoryError, check_w2c

WORLDSCORE_SIDE = 512.0  # DROID-SLAM's input: frames resized to area 512^2
WORLDSCORE_FEATURE_STRIDE = 8  # its reprojection errors are in 1/8-resolution pixels


def _c2w(w2c: np.ndarray) -> np.ndarray:
    """c2w (T, 4, 4) of w2c relative to the first camera (frame 0 = identity)."""
    rel = w2c @ np.linalg.inv(w2c[0])
    return np.linalg.inv(rel)


def geodesic_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    """Angle (deg) of Ra Rb^T for rotations (..., 3, 3)."""
    cos = (np.trace(Ra @ np.swapaxes(Rb, -1, -2), axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def fit_scale(commanded: np.ndarray, recovered: np.ndarray) -> float:
    """c >= 0 minimising sum_t |commanded_t - c recovered_t| (positions (T, 3))."""
    norms = np.linalg.norm(recovered, axis=1)
    if norms.max(initial=0.0) < 1e-12 or np.linalg.norm(commanded, axis=1).max(initial=0.0) < 1e-12:
        return 0.0
    hi = 10.0 * np.linalg.norm(commanded, axis=1).sum() / norms.sum() + 1e-9

    def cost(c):
        return np.linalg.norm(commanded - c * recovered, axis=1).sum()

    return float(minimize_scalar(cost, bounds=(0.0, hi), method="bounded", options={"xatol": 1e-10 * hi}).x)


def align_paths(recovered_w2c: np.ndarray, commanded_w2c: np.ndarray, translation_unit: float | None = None) -> dict:
    """WorldScore's alignment of a recovered path to the commanded one (see the module docstring).

    recovered_w2c, commanded_w2c: (T, 4, 4), the same frames, all finite.
    Returns per-frame errors "rotation_deg" (T,), "translation" (T,) (in translation units), the
    scale, the unit, and camera centres "commanded_positions" / "recovered_positions" (T, 3) in the
    commanded path's first-camera frame and units (the recovered ones after the scale)."""
    c2w_c, c2w_r = _c2w(commanded_w2c), _c2w(recovered_w2c)
    g, p = c2w_c[:, :3, 3], c2w_r[:, :3, 3]
    extent = float(np.linalg.norm(g, axis=1).max())
    # float32 cameras composed in another world frame leave ~1e-7 of translation on a pan
    rotation_only = extent < 1e-6 * max(1.0, float(np.abs(commanded_w2c[:, :3, 3]).max()))
    unit = float(translation_unit) if translation_unit is not None else (1.0 if rotation_only else extent)
    c = 0.0 if rotation_only else fit_scale(g / unit, p)
    return {"rotation_deg": geodesic_deg(c2w_r[:, :3, :3], c2w_c[:, :3, :3]),
            "translation": np.linalg.norm(c * p - g / unit, axis=1), "scale": c, "translation_unit": unit,
            "commanded_rotation_only": rotation_only, "commanded_positions": g,
            "recovered_positions": c * p * unit}


def camera_control(frames: np.ndarray, commanded_w2c: np.ndarray, K: np.ndarray | None = None,
                   reconstruction: sfm.Reconstruction | None = None, translation_unit: float | None = None,
                   config: sfm.SfmConfig = sfm.SfmConfig()) -> Metric:
    """WorldScore camera control of frames (T, H, W, 3) against the commanded cameras w2c (T, 4, 4)
    (K (3, 3) at (H, W); None: WorldScore's fx = fy = 500 at 512^2). raw = {"rotation_deg", "translation"}."""
    name = "camera_control"
    commanded = check_w2c(commanded_w2c, "commanded cameras")
    T = len(frames)
    if len(commanded) != T:
        raise TrajectoryError(f"commanded cameras: expected one w2c per frame ({T}), found {len(commanded)}")
    rec = reconstruction if reconstruction is not None else sfm.reconstruct(frames, K, config)
    if rec.num_frames != T:
        raise TrajectoryError(f"reconstruction: expected {T} frames, found {rec.num_frames}")
    unit_name = "deg / fraction of the commanded path's extent"
    if not rec.ok:
        return Metric.failed(name, rec.reason, unit=unit_name, model=rec.model, **_jsonable_stats(rec))
    reg = np.flatnonzero(rec.registered)
    a = align_paths(rec.w2c[reg], commanded[reg], translation_unit)
    e_r, e_t = float(np.mean(a["rotation_deg"])), float(np.mean(a["translation"]))

    def per_frame(x):
        out = np.full(T, np.nan)
        out[reg] = x
        return out

    pos_r = np.full((T, 3), np.nan)
    pos_r[reg] = a["recovered_positions"]
    details = {
        "rotation_deg_per_frame": per_frame(a["rotation_deg"]), "translation_per_frame": per_frame(a["translation"]),
        "commanded_positions": _c2w(commanded)[:, :3, 3], "recovered_positions": pos_r, "scale": a["scale"],
        "translation_unit": a["translation_unit"], "commanded_rotation_only": a["commanded_rotation_only"],
        "registered": int(len(reg)), "frames": T, "model": rec.model, "note": rec.reason,
        **_jsonable_stats(rec)}
    return Metric(name, {"rotation_deg": e_r, "translation": e_t}, camera_control_score(e_r, e_t), unit=unit_name,
                  details=details)


def worldscore_reprojection(error_px: float, size_hw: tuple[int, int]) -> float:
    """A reprojection error in pixels of a (h, w) frame -> pixels at 1/8 of the frame resized to area
    512^2 (DROID-SLAM's feature resolution, the unit of WorldScore's 1.0719 clip)."""
    h, w = size_hw
    return float(error_px) * WORLDSCORE_SIDE / math.sqrt(h * w) / WORLDSCORE_FEATURE_STRIDE


def consistency_3d(frames: np.ndarray, K: np.ndarray | None = None, reconstruction: sfm.Reconstruction | None = None,
                   config: sfm.SfmConfig = sfm.SfmConfig()) -> Metric:
    """WorldScore 3D consistency of frames (T, H, W, 3): the mean reprojection error after bundle
    adjustment, in 1/8-resolution pixels of a 512^2-area frame; score = 1 - min(x, 1.0719) / 1.0719."""
    name, unit = "3d_consistency", "px at 1/8 of a 512^2-area frame"
    rec = reconstruction if reconstruction is not None else sfm.reconstruct(frames, K, config)
    if not rec.ok:
        return Metric.failed(name, rec.reason, unit=unit, model=rec.model, **_jsonable_stats(rec))
    if rec.model != "full":
        return Metric.failed(name, "degenerate: no translation to triangulate (static camera or rotation only), "
                             "so no 3D structure to check", unit=unit, model=rec.model, **_jsonable_stats(rec))
    x = worldscore_reprojection(rec.mean_error_px, rec.size_hw)
    details = {"mean_error_px": rec.mean_error_px, "mean_error_before_ba_px": rec.mean_error_before_px,
               "before_ba": worldscore_reprojection(rec.mean_error_before_px, rec.size_hw),
               "working_size_hw": list(rec.size_hw), "registered": int(rec.registered.sum()),
               "frames": rec.num_frames, "note": rec.reason, **_jsonable_stats(rec)}
    return Metric(name, x, minmax_score(x, REPROJECTION), unit=unit, details=details)


def _jsonable_stats(rec: sfm.Reconstruction) -> dict:
    return {"sfm": {k: (list(v) if isinstance(v, tuple) else v) for k, v in rec.stats.items()}}
