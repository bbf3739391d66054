"""star-jax: a JAX/Flax real-time 4D world simulator (STAR / InSpatio-World).

Subpackages:
  geometry     cameras, trajectories, depth warping (the explicit spatial constraint)
  models       Wan2.1-style causal DiT, Wan VAE, variants table
  checkpoint   weight conversion from Wan / diffusers safetensors to Flax params
  sharding     logical axis names, mesh rules

Importing this package never changes `jax.config`.
"""

__version__ = "0.1.0"
