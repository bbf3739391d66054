"""Checkpoint conversion (Wan / diffusers DiT and VAE weights -> Flax params) and orbax I/O."""

from star_jax.checkpoint.convert import (
    CheckpointError,
    check_against_model,
    convert_dit_state,
    load_dit_checkpoint,
    restore_params,
    save_params,
)
from star_jax.checkpoint.vae import convert_vae_state, load_vae_checkpoint

__all__ = ["CheckpointError", "check_against_model", "convert_dit_state", "load_dit_checkpoint",
           "convert_vae_state", "load_vae_checkpoint", "restore_params", "save_params"]
