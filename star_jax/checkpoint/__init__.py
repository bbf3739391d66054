"""Checkpoint conversion (Wan / diffusers safetensors -> Flax params) and orbax I/O."""

from star_jax.checkpoint.convert import (
    CheckpointError,
    check_against_model,
    convert_dit_state,
    load_dit_checkpoint,
    restore_params,
    save_params,
)

__all__ = ["CheckpointError", "check_against_model", "convert_dit_state", "load_dit_checkpoint",
           "restore_params", "save_params"]
