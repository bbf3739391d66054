"""Models: the STAR DiT (Wan2.1-style), its attention pieces, and the variants table."""

from star_jax.models.dit import KVCache, WanDiT, init_cache
from star_jax.models.variants import DiTConfig, VAEConfig, dit_variant, vae_variant

__all__ = ["DiTConfig", "KVCache", "VAEConfig", "WanDiT", "dit_variant", "init_cache", "vae_variant"]
