"""Models: the STAR DiT (Wan2.1-style), its attention pieces, the Wan VAE, and the variants table."""

from star_jax.models.dit import KVCache, WanDiT, init_cache
from star_jax.models.vae import LatentDist, WanVAE, decode, encode, init_vae_params
from star_jax.models.variants import DiTConfig, VAEConfig, dit_variant, vae_variant

__all__ = ["DiTConfig", "KVCache", "LatentDist", "VAEConfig", "WanDiT", "WanVAE", "decode", "dit_variant", "encode",
           "init_cache", "init_vae_params", "vae_variant"]
