"""Pinhole cameras: intrinsics, rigid transforms, (un)projection and Plücker ray maps.

All functions are pure `jnp` code, jit- and vmap-compatible, and broadcast over leading
batch dimensions. Conventions are in `star_jax.geometry` (OpenCV axes, w2c / c2w names).
"""

from __future__ import annotations

import jax.numpy as jnp


def intrinsics_matrix(fx, fy, cx, cy, dtype=jnp.float32) -> jnp.ndarray:
    """Builds K (..., 3, 3) from focal lengths and principal point (pixels)."""
    fx, fy, cx, cy = (jnp.asarray(v, dtype) for v in (fx, fy, cx, cy))
    fx, fy, cx, cy = jnp.broadcast_arrays(fx, fy, cx, cy)
    zero, one = jnp.zeros_like(fx), jnp.ones_like(fx)
    rows = [
        jnp.stack([fx, zero, cx], -1),
        jnp.stack([zero, fy, cy], -1),
        jnp.stack([zero, zero, one], -1),
    ]
    return jnp.stack(rows, -2)


def resize_intrinsics(K: jnp.ndarray, scale_xy, crop_xy=(0.0, 0.0)) -> jnp.ndarray:
    """Intrinsics after resizing an image by `scale_xy` then cropping `crop_xy` pixels off its
    top-left corner (offsets in resized pixels).

    With pixel centres at integer coordinates, a resize by s maps u -> s * (u + 0.5) - 0.5.
    """
    sx, sy = scale_xy
    ox, oy = crop_xy
    K = jnp.asarray(K)
    fx = K[..., 0, 0] * sx
    fy = K[..., 1, 1] * sy
    cx = (K[..., 0, 2] + 0.5) * sx - 0.5 - ox
    cy = (K[..., 1, 2] + 0.5) * sy - 0.5 - oy
    return intrinsics_matrix(fx, fy, cx, cy, dtype=K.dtype)


def invert_rigid(T: jnp.ndarray) -> jnp.ndarray:
    """Closed-form inverse of rigid transforms T (..., 4, 4): [R t] -> [R^T  -R^T t]."""
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    Rt = jnp.swapaxes(R, -1, -2)
    t_inv = -jnp.einsum("...ij,...j->...i", Rt, t)
    top = jnp.concatenate([Rt, t_inv[..., None]], axis=-1)
    bottom = jnp.broadcast_to(jnp.asarray([0, 0, 0, 1], T.dtype), top.shape[:-2] + (1, 4))
    return jnp.concatenate([top, bottom], axis=-2)


def transform_points(T: jnp.ndarray, points: jnp.ndarray) -> jnp.ndarray:
    """Applies T (..., 4, 4) to points (..., N, 3) -> (..., N, 3). T broadcasts over N."""
    R = T[..., :3, :3]
    t = T[..., :3, 3]
    return jnp.einsum("...ij,...nj->...ni", R, points) + t[..., None, :]


def pixel_grid(height: int, width: int, dtype=jnp.float32) -> jnp.ndarray:
    """Pixel centres (H, W, 2) as (u, v) = (column, row)."""
    v, u = jnp.meshgrid(jnp.arange(height, dtype=dtype), jnp.arange(width, dtype=dtype), indexing="ij")
    return jnp.stack([u, v], axis=-1)


def unproject(depth: jnp.ndarray, K: jnp.ndarray) -> jnp.ndarray:
    """Lifts a z-depth map (..., H, W) to camera-frame points (..., H, W, 3).

    Point = depth * K^{-1} [u, v, 1]^T. Invalid depth gives invalid points; mask them yourself.
    """
    H, W = depth.shape[-2:]
    uv = pixel_grid(H, W, depth.dtype)
    fx = K[..., 0, 0][..., None, None]
    fy = K[..., 1, 1][..., None, None]
    cx = K[..., 0, 2][..., None, None]
    cy = K[..., 1, 2][..., None, None]
    x = (uv[..., 0] - cx) / fx * depth
    y = (uv[..., 1] - cy) / fy * depth
    return jnp.stack([x, y, depth], axis=-1)


def project(points: jnp.ndarray, K: jnp.ndarray, eps: float = 1e-8):
    """Projects camera-frame points (..., N, 3) with K (..., 3, 3).

    Returns (uv (..., N, 2), z (..., N)). Points with z <= eps get uv = +inf so that callers
    never confuse them with on-screen points.
    """
    z = points[..., 2]
    safe_z = jnp.where(z > eps, z, 1.0)
    fx = K[..., 0, 0][..., None]
    fy = K[..., 1, 1][..., None]
    cx = K[..., 0, 2][..., None]
    cy = K[..., 1, 2][..., None]
    u = fx * points[..., 0] / safe_z + cx
    v = fy * points[..., 1] / safe_z + cy
    uv = jnp.stack([u, v], axis=-1)
    uv = jnp.where((z > eps)[..., None], uv, jnp.inf)
    return uv, z


def plucker_rays(K: jnp.ndarray, c2w: jnp.ndarray, height: int, width: int) -> jnp.ndarray:
    """Plücker ray map (..., H, W, 6) = (o x d, d) for every pixel centre, d unit-norm in world."""
    uv = pixel_grid(height, width, K.dtype)
    fx = K[..., 0, 0][..., None, None]
    fy = K[..., 1, 1][..., None, None]
    cx = K[..., 0, 2][..., None, None]
    cy = K[..., 1, 2][..., None, None]
    d_cam = jnp.stack(
        [(uv[..., 0] - cx) / fx, (uv[..., 1] - cy) / fy, jnp.ones_like(uv[..., 0] + fx)], axis=-1
    )
    R = c2w[..., :3, :3]
    o = c2w[..., :3, 3]
    d = jnp.einsum("...ij,...hwj->...hwi", R, d_cam)
    d = d / jnp.linalg.norm(d, axis=-1, keepdims=True)
    o = jnp.broadcast_to(o[..., None, None, :], d.shape)
    return jnp.concatenate([jnp.cross(o, d), d], axis=-1)
