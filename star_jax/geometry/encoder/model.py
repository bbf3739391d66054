"""The geometry encoder: Depth-Anything-3's any-view network (DepthAnything3Net) in Flax linen.

    cfg = encoder_variant("small")
    model = GeometryEncoder(cfg)
    params = model.init(rng, images)["params"]          # or convert_da3_state(torch_state, cfg)
    out = model.apply({"params": params}, normalize_images(frames))    # frames (B, S, H, W, 3) in [0, 1]

Output (`GeometryOutput`, all float32; H, W multiples of 14, h = H / 14, w = W / 14):
- depth, depth_conf (B, S, H, W): z-depth up to one unknown scale shared by the views, and its
  confidence (> 1).
- ray, ray_conf (B, S, 8h, 8w, 6) / (B, S, 8h, 8w): the auxiliary per-pixel ray map (world
  direction 0-2, camera centre 3-5) and its confidence. The package's default derives poses from
  the camera decoder (`w2c`, `K` here); its `use_ray_pose` solves them from the rays instead:
  `ray_pose.cameras_from_rays` on the host (NumPy, RANSAC).
- pose_enc (B, S, 9), w2c (B, S, 3, 4) OpenCV world-to-camera, K (B, S, 3, 3) in pixels of the
  input: cameras in the frame of the reference view (view 0 unless reordering picked another).

Given cameras (`w2c` (B, S, 4, 4) and `K`), the camera encoder turns them into the camera tokens
(pose-conditioned depth); the decoded cameras are then still returned. Not ported: the Gaussian-
splat head, the metric/nested models and their sky head (the any-view small/base have none).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import struct

from star_jax.errors import InputError
from star_jax.geometry.encoder.camera import CameraDecoder, CameraEncoder, pose_encoding_to_cameras
from star_jax.geometry.encoder.dpt import DualDPT
from star_jax.geometry.encoder.variants import EncoderConfig
from star_jax.geometry.encoder.vit import Backbone

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def normalize_images(frames: jnp.ndarray) -> jnp.ndarray:
    """(..., 3) RGB in [0, 1] -> ImageNet-normalised float32, the network's input."""
    return (jnp.asarray(frames, jnp.float32) - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


class GeometryOutput(struct.PyTreeNode):
    depth: jnp.ndarray
    depth_conf: jnp.ndarray
    ray: jnp.ndarray
    ray_conf: jnp.ndarray
    pose_enc: jnp.ndarray
    w2c: jnp.ndarray
    K: jnp.ndarray


class GeometryEncoder(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, images, w2c=None, K=None) -> GeometryOutput:
        """images (B, S, H, W, 3) ImageNet-normalised; optional cameras w2c (B, S, 4, 4), K (B, S, 3, 3)."""
        if images.ndim != 5 or images.shape[-1] != 3:
            raise InputError(f"geometry encoder: images must be (B, S, H, W, 3), found {images.shape}")
        if (w2c is None) != (K is None):
            raise InputError("geometry encoder: give both w2c and K, or neither")
        B, S, H, W, _ = images.shape
        hw = (H, W)
        cam_enc = CameraEncoder(self.cfg, name="cam_enc")
        if w2c is not None:
            if w2c.shape != (B, S, 4, 4) or K.shape != (B, S, 3, 3):
                raise InputError(f"geometry encoder: cameras w2c {w2c.shape} / K {K.shape}, expected "
                                 f"{(B, S, 4, 4)} / {(B, S, 3, 3)}")
            tokens = cam_enc(w2c, K, hw)
        else:
            tokens = None
            if self.is_initializing():  # create the camera encoder's parameters too
                eye = jnp.broadcast_to(jnp.eye(4), (B, S, 4, 4))
                cam_enc(eye, jnp.broadcast_to(jnp.diag(jnp.array([W, W, 1.0])), (B, S, 3, 3)), hw)
        feats, cam_tokens = Backbone(self.cfg, name="backbone")(images, tokens)
        out = DualDPT(self.cfg, name="head")(feats, hw)
        pose_enc = CameraDecoder(self.cfg, name="cam_dec")(cam_tokens[-1])
        w2c_out, K_out = pose_encoding_to_cameras(pose_enc, hw)
        return GeometryOutput(pose_enc=pose_enc, w2c=w2c_out, K=K_out, **out)


def abstract_params(cfg: EncoderConfig, views: int = 2, image_hw: tuple[int, int] = (28, 28)):
    """The params tree of `cfg` as ShapeDtypeStructs with logical partitioning boxes (nothing allocated)."""
    images = jax.ShapeDtypeStruct((1, views) + tuple(image_hw) + (3,), jnp.float32)
    return jax.eval_shape(lambda x: GeometryEncoder(cfg).init(jax.random.PRNGKey(0), x), images)["params"]
