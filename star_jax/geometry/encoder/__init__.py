"""The geometry encoder: Depth-Anything-3's any-view depth + camera network in Flax, and its
weight converter. Depth, confidence, rays and cameras of the reference video's frames.

    from star_jax.geometry.encoder import GeometryEncoder, encoder_variant, load_da3_checkpoint
    cfg = encoder_variant("small")
    params = load_da3_checkpoint("DA3-SMALL/model.safetensors", cfg)
    out = GeometryEncoder(cfg).apply({"params": params}, normalize_images(frames))   # (B, S, H, W, 3)

Files: variants.py (sizes), vit.py (backbone), dpt.py (depth / ray head), camera.py (camera
decoder and encoder, pose encoding), model.py (the whole), convert.py (weights), resample.py
(PyTorch-exact interpolation taps), ray_pose.py (cameras from the ray maps, NumPy on the host).
"""

from star_jax.geometry.encoder.convert import (
    checkpoint_variant,
    convert_da3_state,
    load_da3_checkpoint,
    params_to_da3_state,
)
from star_jax.geometry.encoder.model import GeometryEncoder, GeometryOutput, normalize_images
from star_jax.geometry.encoder.ray_pose import cameras_from_rays
from star_jax.geometry.encoder.variants import EncoderConfig, encoder_variant

__all__ = ["EncoderConfig", "GeometryEncoder", "GeometryOutput", "cameras_from_rays", "checkpoint_variant",
           "convert_da3_state", "encoder_variant", "load_da3_checkpoint", "normalize_images", "params_to_da3_state"]
