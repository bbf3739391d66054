"""Distillation of the teacher into the few-step causal student: DMD and JDMD directions and losses."""

from star_jax.distill.dmd import dmd_direction, dmd_loss, jdmd_direction, sample_dmd_sigmas

__all__ = ["dmd_direction", "dmd_loss", "jdmd_direction", "sample_dmd_sigmas"]
