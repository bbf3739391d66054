"""WorldScore's normalisations and aggregate, and the `Metric` record every estimator returns.

Every estimator in `star_jax.evaluation` (camera control, 3D consistency, photometric consistency,
motion magnitude, motion smoothness, the ground-truth metrics) returns a `Metric`: its raw value in
its own unit, the normalised score in [0, 1] (WorldScore's aspect score / 100), and, when it could not
be measured (too few frames, tracking lost, a degenerate path), `ok=False` with the reason and no
number. A failed metric is never averaged as a number: `aggregate` leaves it out and says so.

Normalisations (WorldScore `worldscore/benchmark/utils/utils.py` `aspect_info` and
`helpers/evaluator.py`):
- min-max, lower is better: score = 1 - (clip(x, lo, hi) - lo) / (hi - lo). 3D consistency
  (reprojection error, hi 1.0719), photometric consistency (flow forward-backward AEPE, hi 1.1920).
- camera control: the geometric mean of the min-max scores of the rotation error (deg, hi 15) and
  the translation error (hi 0.5): sqrt((1 - e_R / 15)(1 - e_t / 0.5)) after clipping.
- motion smoothness: the arithmetic mean of the min-max scores of the interpolation MSE (0..255
  pixel units, hi 82.4014, lower is better), SSIM (lo 0.9224, hi 1, higher is better) and LPIPS
  (hi 0.0228, lower is better); LPIPS needs downloaded weights, so it is left out here and the mean
  is over the two that are measured (the `Metric` says so).
- z-score, for motion magnitude (mean median flow, avg 3.2425, std 3.4505, z in [-0.8638, 2.7498],
  mapped to [0.25, 0.75], higher is better): s = 0.25 + 0.5 ((x - avg) / std - z_min) / (z_max - z_min),
  clipped to [0, 1].
- WorldScore-Static is the mean of its 7 aspects, Dynamic of 10 (`STATIC_ASPECTS`, `DYNAMIC_ASPECTS`).
  When an estimator breaks on a video, WorldScore stores the worst raw value: the aspect scores 0.
  Here a failure the video caused (`VIDEO_FAILURES`: tracking lost) scores 0 too, so a broken video
  cannot escape the penalty by failing; a failure of the inputs (too few frames, no cameras given)
  or a degenerate case (no translation to triangulate) leaves the aspect out.
  Aspects that need downloaded models (object control, content alignment, style consistency,
  subjective quality, motion accuracy) are not measured here; `aggregate` reports the mean over the
  aspects that were measured and lists the missing ones, so the number is never mistaken for the
  leaderboard's.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable, Mapping, Sequence

import numpy as np

STATIC_ASPECTS = ("camera_control", "object_control", "content_alignment", "3d_consistency",
                  "photometric_consistency", "style_consistency", "subjective_quality")
DYNAMIC_ASPECTS = STATIC_ASPECTS + ("motion_accuracy", "motion_magnitude", "motion_smoothness")

# (lo, hi, higher_is_better) per raw component, from WorldScore's aspect_info
CAMERA_ROTATION = (0.0, 15.0, False)  # mean geodesic angle, degrees
CAMERA_TRANSLATION = (0.0, 0.5, False)  # mean translation error after scale alignment
REPROJECTION = (0.0, 1.0719, False)  # pixels at WorldScore's resolution
FLOW_AEPE = (0.0, 1.1920, False)  # forward-backward end-point error, pixels
SMOOTH_MSE = (0.0, 82.4014, False)  # interpolation MSE, 0..255 units
SMOOTH_SSIM = (0.9224, 1.0, True)
SMOOTH_LPIPS = (0.0, 0.0228, False)
VIDEO_FAILURES = ("tracking lost",)  # reasons (prefixes) that score 0 in the aggregate, as WorldScore does
MOTION_MAGNITUDE_Z = {"avg": 3.2425, "std": 3.4505, "z_min": -0.8638, "z_max": 2.7498, "range": (0.25, 0.75)}


@dataclasses.dataclass(frozen=True)
class Metric:
    """One measured aspect. `raw` is the estimator's value (a float, or a dict of named components
    such as {"rotation_deg": .., "translation": ..}); `score` the normalised value in [0, 1];
    `details` JSON-able extras (per-frame series, counts, the estimator's settings)."""

    name: str
    raw: float | dict | None
    score: float | None
    unit: str = ""
    ok: bool = True
    reason: str = ""
    details: Mapping = dataclasses.field(default_factory=dict)

    @classmethod
    def failed(cls, name: str, reason: str, unit: str = "", **details) -> "Metric":
        """A metric that could not be measured: no number, and why."""
        return cls(name=name, raw=None, score=None, unit=unit, ok=False, reason=reason, details=details)

    def to_json(self) -> dict:
        return {"name": self.name, "ok": self.ok, "raw": _jsonable(self.raw), "score": _jsonable(self.score),
                "unit": self.unit, "reason": self.reason, "details": _jsonable(dict(self.details))}


def _jsonable(x):
    if isinstance(x, Mapping):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if not math.isfinite(float(x)) else float(x)
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def minmax_score(x: float, bounds: tuple[float, float, bool]) -> float:
    """WorldScore's empirical min-max normalisation of one raw value: clip to [lo, hi], map to
    [0, 1], flip when lower is better."""
    lo, hi, higher_is_better = bounds
    s = (min(max(float(x), lo), hi) - lo) / (hi - lo)
    return s if higher_is_better else 1.0 - s


def camera_control_score(rotation_deg: float, translation: float) -> float:
    """sqrt((1 - e_R / 15)(1 - e_t / 0.5)), each clipped: WorldScore's camera-control score."""
    return math.sqrt(minmax_score(rotation_deg, CAMERA_ROTATION) * minmax_score(translation, CAMERA_TRANSLATION))


def motion_smoothness_score(mse: float, ssim: float, lpips: float | None = None) -> float:
    """Mean of the min-max scores of the interpolation MSE (0..255 units), SSIM and, when measured,
    LPIPS."""
    parts = [minmax_score(mse, SMOOTH_MSE), minmax_score(ssim, SMOOTH_SSIM)]
    if lpips is not None:
        parts.append(minmax_score(lpips, SMOOTH_LPIPS))
    return float(np.mean(parts))


def motion_magnitude_score(mean_median_flow: float) -> float:
    """WorldScore's z-score normalisation of the mean median flow magnitude (pixels)."""
    z = MOTION_MAGNITUDE_Z
    x = ((float(mean_median_flow) - z["avg"]) / z["std"] - z["z_min"]) / (z["z_max"] - z["z_min"])
    lo, hi = z["range"]
    return min(1.0, max(0.0, lo + (hi - lo) * x))


def aggregate(metrics: Iterable[Metric], aspects: Sequence[str] = DYNAMIC_ASPECTS) -> dict:
    """WorldScore-style aggregate x 100 over the given aspects: the mean of the measured aspects'
    scores (an aspect whose estimator the video broke, `VIDEO_FAILURES`, counts as 0 and is listed
    under "scored_zero"), with the aspects that failed (and why) and those not measured beside it."""
    by_name = {m.name: m for m in metrics}
    measured = {a: by_name[a].score for a in aspects if a in by_name and by_name[a].ok}
    failed = {a: by_name[a].reason for a in aspects if a in by_name and not by_name[a].ok}
    zero = [a for a, why in failed.items() if why.startswith(VIDEO_FAILURES)]
    measured.update({a: 0.0 for a in zero})
    missing = [a for a in aspects if a not in by_name]
    value = 100.0 * float(np.mean(list(measured.values()))) if measured else None
    return {"score": value, "aspects": {a: 100.0 * s for a, s in measured.items()}, "failed": failed,
            "scored_zero": zero, "not_measured": missing,
            "note": (f"mean over {len(measured)} of {len(aspects)} WorldScore aspects; not comparable to the "
                     "leaderboard's number unless every aspect is measured")}
