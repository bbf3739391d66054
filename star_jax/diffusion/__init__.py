"""Diffusion schedules and samplers (flow matching, as Wan and Self-Forcing use)."""

from star_jax.diffusion.schedule import (
    FewStepSchedule,
    add_noise,
    flow_match_timestep_table,
    few_step_schedule,
    x0_from_flow,
)

__all__ = ["FewStepSchedule", "add_noise", "few_step_schedule", "flow_match_timestep_table", "x0_from_flow"]
