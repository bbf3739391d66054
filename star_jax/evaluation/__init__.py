"""Evaluation: image metrics (PSNR, SSIM, over all pixels or a region) for novel-view quality."""

from star_jax.evaluation.image_metrics import psnr, ssim, ssim_map

__all__ = ["psnr", "ssim", "ssim_map"]
