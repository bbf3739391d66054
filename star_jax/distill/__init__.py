"""Distillation of the teacher into the few-step causal student: DMD and JDMD directions and losses."""

from star_jax.distill.dmd import cfg_x0, dmd_direction, dmd_loss, jdmd_direction, sample_dmd_sigmas

__all__ = ["cfg_x0", "dmd_direction", "dmd_loss", "jdmd_direction", "sample_dmd_sigmas"]
