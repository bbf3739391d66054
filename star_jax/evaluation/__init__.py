"""Evaluation: image metrics (PSNR, SSIM, over all pixels or a region) for novel-view quality, and
a weight-free realism distance (Frechet distance of patch texture / colour statistics)."""

from star_jax.evaluation.image_metrics import psnr, ssim, ssim_map
from star_jax.evaluation.realism import (
    RealismConfig,
    frechet_distance,
    gaussian_stats,
    patch_features,
    realism_distance,
)

__all__ = ["RealismConfig", "frechet_distance", "gaussian_stats", "patch_features", "psnr", "realism_distance", "ssim",
           "ssim_map"]
