"""Inference: STAR conditions, the autoregressive rollout (a jitted scan over blocks), sessions."""

from star_jax.inference.conditions import (
    CONVENTIONS,
    Conditioning,
    StarConditions,
    encode_conditions,
    get_conditioning,
    mask_to_latent,
)
from star_jax.inference.rollout import RolloutState, init_rollout_state, rollout, star_block, star_block_jit

__all__ = ["CONVENTIONS", "Conditioning", "RolloutState", "StarConditions", "encode_conditions", "get_conditioning",
           "init_rollout_state", "mask_to_latent", "rollout", "star_block", "star_block_jit"]
from star_jax.inference.model import (
    StarModel,
    load_star_model,
    load_text_embedding,
    random_star_model,
    write_star_model_json,
)
from star_jax.inference.session import BlockOutput, NavigationSession

__all__ += ["BlockOutput", "NavigationSession", "StarModel", "load_star_model", "load_text_embedding",
            "random_star_model", "write_star_model_json"]
