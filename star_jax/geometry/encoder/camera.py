"""Depth-Anything-3's camera decoder and camera encoder, and its 9-number pose encoding.

Pose encoding (B, S, 9) = [t (3), q (4, x y z w, scalar last), fov_h, fov_w] of the camera-to-world
pose (c2w): t the camera centre, q its rotation, fovs in radians; the principal point is the
image centre. `pose_encoding_to_cameras` gives OpenCV world-to-camera (w2c, 3x4) and K (3x3).

- `CameraDecoder`: the camera token of the last output block (B, S, F) -> pose encoding
  (MLP Linear-ReLU-Linear-ReLU, then heads for t, q and ReLU(fov)).
- `CameraEncoder`: given cameras (w2c (B, S, 4, 4), K (B, S, 3, 3)) -> one token per view
  (B, S, C) that replaces the learned camera tokens: Mlp(9 -> C/2 -> C), LayerNorm, a trunk of
  blocks attending across the S views, LayerNorm.
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from star_jax import sharding as sh
from star_jax.geometry.encoder.variants import EncoderConfig
from star_jax.geometry.encoder.vit import Block, dense, layer_norm


def quat_xyzw_to_matrix(q: jnp.ndarray) -> jnp.ndarray:
    """(..., 4) quaternions (x, y, z, w), not necessarily unit -> (..., 3, 3) rotations."""
    i, j, k, r = jnp.moveaxis(q, -1, 0)
    s = 2.0 / jnp.sum(q * q, -1)
    m = [1 - s * (j * j + k * k), s * (i * j - k * r), s * (i * k + j * r),
         s * (i * j + k * r), 1 - s * (i * i + k * k), s * (j * k - i * r),
         s * (i * k - j * r), s * (j * k + i * r), 1 - s * (i * i + j * j)]
    return jnp.stack(m, -1).reshape(q.shape[:-1] + (3, 3))


def matrix_to_quat_xyzw(m: jnp.ndarray) -> jnp.ndarray:
    """(..., 3, 3) rotations -> (..., 4) unit quaternions (x, y, z, w) with w >= 0 (pytorch3d's method)."""
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = jnp.moveaxis(m.reshape(m.shape[:-2] + (9,)), -1, 0)
    q_abs = jnp.sqrt(jnp.maximum(jnp.stack([1 + m00 + m11 + m22, 1 + m00 - m11 - m22,
                                            1 - m00 + m11 - m22, 1 - m00 - m11 + m22], -1), 0.0))
    cand = jnp.stack([
        jnp.stack([q_abs[..., 0] ** 2, m21 - m12, m02 - m20, m10 - m01], -1),
        jnp.stack([m21 - m12, q_abs[..., 1] ** 2, m10 + m01, m02 + m20], -1),
        jnp.stack([m02 - m20, m10 + m01, q_abs[..., 2] ** 2, m12 + m21], -1),
        jnp.stack([m10 - m01, m20 + m02, m21 + m12, q_abs[..., 3] ** 2], -1)], -2)  # rows: (r, i, j, k)
    cand = cand / (2.0 * jnp.maximum(q_abs[..., None], 0.1))
    best = jnp.take_along_axis(cand, jnp.argmax(q_abs, -1)[..., None, None], axis=-2)[..., 0, :]
    q = best[..., jnp.array([1, 2, 3, 0])]
    return jnp.where(q[..., 3:4] < 0, -q, q)


def pose_encoding_to_cameras(enc: jnp.ndarray, image_hw: tuple[int, int]) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(B, S, 9) -> (w2c (B, S, 3, 4), K (B, S, 3, 3)) for an image of size (H, W)."""
    H, W = image_hw
    R = quat_xyzw_to_matrix(enc[..., 3:7])  # camera-to-world rotation
    t = enc[..., :3]
    Rt = jnp.swapaxes(R, -1, -2)
    w2c = jnp.concatenate([Rt, -(Rt @ t[..., None])], -1)
    fy = (H / 2.0) / jnp.maximum(jnp.tan(enc[..., 7] / 2.0), 1e-6)
    fx = (W / 2.0) / jnp.maximum(jnp.tan(enc[..., 8] / 2.0), 1e-6)
    zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
    K = jnp.stack([fx, zero, zero + W / 2, zero, fy, zero + H / 2, zero, zero, one], -1)
    return w2c, K.reshape(enc.shape[:-1] + (3, 3))


def cameras_to_pose_encoding(w2c: jnp.ndarray, K: jnp.ndarray, image_hw: tuple[int, int]) -> jnp.ndarray:
    """(w2c (B, S, 3 or 4, 4), K (B, S, 3, 3)) -> (B, S, 9): the inverse of `pose_encoding_to_cameras`."""
    H, W = image_hw
    R, t = w2c[..., :3, :3], w2c[..., :3, 3]
    Rc = jnp.swapaxes(R, -1, -2)  # camera-to-world rotation
    centre = -(Rc @ t[..., None])[..., 0]
    fov_h = 2 * jnp.arctan((H / 2) / K[..., 1, 1])
    fov_w = 2 * jnp.arctan((W / 2) / K[..., 0, 0])
    return jnp.concatenate([centre, matrix_to_quat_xyzw(Rc), fov_h[..., None], fov_w[..., None]], -1)


class CameraDecoder(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, token):  # (B, S, F) -> (B, S, 9)
        cfg, F = self.cfg, token.shape[-1]
        x = nn.relu(dense(F, (sh.EMBED, sh.MLP), cfg, "backbone_0")(token))
        x = nn.relu(dense(F, (sh.MLP, sh.EMBED), cfg, "backbone_2")(x)).astype(jnp.float32)
        fov = nn.relu(dense(2, (sh.EMBED, None), cfg, "fc_fov_0")(x))
        return jnp.concatenate([dense(3, (sh.EMBED, None), cfg, "fc_t")(x),
                                dense(4, (sh.EMBED, None), cfg, "fc_qvec")(x), fov], -1).astype(jnp.float32)


class CameraEncoder(nn.Module):
    cfg: EncoderConfig

    @nn.compact
    def __call__(self, w2c, K, image_hw):  # (B, S, 4, 4), (B, S, 3, 3) -> (B, S, C)
        cfg, C = self.cfg, self.cfg.embed_dim
        x = cameras_to_pose_encoding(w2c.astype(jnp.float32), K.astype(jnp.float32), image_hw)
        x = dense(C // 2, (None, sh.MLP), cfg, "pose_branch_fc1")(x)
        x = dense(C, (sh.MLP, sh.EMBED), cfg, "pose_branch_fc2")(nn.gelu(x, approximate=False))
        x = layer_norm(cfg, 1e-5, "token_norm")(x).astype(x.dtype)
        for i in range(cfg.cam_enc_depth):
            x = Block(cfg, cfg.cam_enc_heads, 1e-5, name=f"trunk_{i}")(x)
        return layer_norm(cfg, 1e-5, "trunk_norm")(x).astype(x.dtype)
