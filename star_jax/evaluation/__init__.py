"""Evaluation: what a generated video is worth.

    worldscore.py    the `Metric` record, WorldScore's normalisations and aggregate
    flow.py          photometric consistency, motion magnitude, motion smoothness (OpenCV DIS flow)
    sfm.py           a small incremental SfM (tracks, PnP, bundle adjustment) with known intrinsics
    camera_control.py  camera control (recovered vs commanded path) and 3D consistency (BA reprojection)
    ground_truth.py  PSNR / SSIM against the truth (all, in the render mask, in the holes); revisits
    report.py        the one-page report.png
    image_metrics.py PSNR and SSIM over a region
    realism.py       a weight-free realism distance (Frechet distance of patch statistics)
    clips.py         the one check of a clip of frames (T, H, W, 3) and its render masks

`python -m star_jax.evaluate` runs them all on a video (star_jax/evaluate.py).
"""

from star_jax.evaluation.image_metrics import psnr, ssim, ssim_map
from star_jax.evaluation.realism import (
    RealismConfig,
    frechet_distance,
    gaussian_stats,
    patch_features,
    realism_distance,
)
from star_jax.evaluation.worldscore import Metric, aggregate

__all__ = ["Metric", "RealismConfig", "aggregate", "frechet_distance", "gaussian_stats", "patch_features", "psnr",
           "realism_distance", "ssim", "ssim_map"]
