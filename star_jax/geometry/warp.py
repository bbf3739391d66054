"""Depth-image forward warping with a z-buffer: the explicit spatial constraint of STAR.

Each source pixel with valid depth is lifted to a 3-D point, moved into the target camera and
splatted onto the nearest target pixel (optionally a `point_size` x `point_size` footprint).
Where several points land on one pixel the nearest one wins (ties: the lowest source index, so
the result is deterministic). Pixels that receive no point are invalid: the mask the model sees.

Everything is scatter-min / gather over flat arrays: jit-compatible, vmap-able over frames, and
no Python loop over pixels.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from star_jax.geometry.cameras import invert_rigid, project, transform_points, unproject


class WarpResult(NamedTuple):
    """Output of a warp. Leading dims are the caller's batch dims (e.g. T frames)."""

    rgb: jnp.ndarray  # (..., Ho, Wo, C): colour of the winning point, 0 where invalid
    mask: jnp.ndarray  # (..., Ho, Wo) bool: True where some point landed
    depth: jnp.ndarray  # (..., Ho, Wo): target-camera z-depth of the winner, 0 where invalid


def _splat_offsets(point_size: int):
    lo = -((point_size - 1) // 2)
    r = jnp.arange(lo, lo + point_size)
    dv, du = jnp.meshgrid(r, r, indexing="ij")
    return du.reshape(-1), dv.reshape(-1)


def warp_frame(
    rgb: jnp.ndarray,
    depth: jnp.ndarray,
    K_src: jnp.ndarray,
    w2c_src: jnp.ndarray,
    K_tgt: jnp.ndarray,
    w2c_tgt: jnp.ndarray,
    out_hw: tuple[int, int] | None = None,
    point_size: int = 1,
    min_depth: float = 1e-3,
) -> WarpResult:
    """Renders one source frame into a target camera.

    Args:
      rgb: (H, W, C) source colours (any float/int dtype; the output keeps it).
      depth: (H, W) source z-depth; <= min_depth or non-finite = no point.
      K_src, K_tgt: (3, 3) intrinsics. w2c_src, w2c_tgt: (4, 4) world-to-camera.
      out_hw: target (Ho, Wo); defaults to (H, W).
      point_size: side of the square footprint each point covers (1 = single pixel).
    """
    if rgb.ndim != 3 or depth.shape != rgb.shape[:2]:
        raise ValueError(f"warp_frame: rgb (H, W, C) and depth (H, W) must agree, got {rgb.shape}, {depth.shape}")
    if point_size < 1:
        raise ValueError(f"point_size must be >= 1, got {point_size}")
    H, W = depth.shape
    Ho, Wo = out_hw if out_hw is not None else (H, W)
    n_src, n_out = H * W, Ho * Wo
    C = rgb.shape[-1]

    depth = depth.astype(jnp.float32)
    pts = unproject(depth, K_src.astype(jnp.float32)).reshape(n_src, 3)
    src_to_tgt = w2c_tgt.astype(jnp.float32) @ invert_rigid(w2c_src.astype(jnp.float32))
    uv, z = project(transform_points(src_to_tgt, pts), K_tgt.astype(jnp.float32), eps=min_depth)
    valid = (jnp.isfinite(depth) & (depth > min_depth)).reshape(n_src) & jnp.isfinite(uv).all(-1)

    du, dv = _splat_offsets(point_size)
    uv = jnp.where(valid[:, None], uv, 0.0)
    ui = jnp.floor(uv[:, 0] + 0.5).astype(jnp.int32)[:, None] + du[None]  # (N, P)
    vi = jnp.floor(uv[:, 1] + 0.5).astype(jnp.int32)[:, None] + dv[None]
    ok = valid[:, None] & (ui >= 0) & (ui < Wo) & (vi >= 0) & (vi < Ho)
    dump = n_out  # one extra slot that swallows every rejected splat
    lin = jnp.where(ok, vi * Wo + ui, dump).reshape(-1)
    zs = jnp.where(ok, z[:, None], jnp.inf).reshape(-1)

    zbuf = jnp.full((n_out + 1,), jnp.inf, jnp.float32).at[lin].min(zs)
    src_idx = jnp.broadcast_to(jnp.arange(n_src, dtype=jnp.int32)[:, None], ok.shape).reshape(-1)
    is_front = ok.reshape(-1) & (zs <= zbuf[lin])
    winner = jnp.full((n_out + 1,), n_src, jnp.int32).at[lin].min(jnp.where(is_front, src_idx, n_src))
    winner = winner[:n_out]
    mask = winner < n_src
    colours = rgb.reshape(n_src, C)[jnp.minimum(winner, n_src - 1)]
    out_rgb = jnp.where(mask[:, None], colours, jnp.zeros_like(colours))
    out_depth = jnp.where(mask, zbuf[:n_out], 0.0)
    return WarpResult(out_rgb.reshape(Ho, Wo, C), mask.reshape(Ho, Wo), out_depth.reshape(Ho, Wo))


def warp_frames(
    rgb: jnp.ndarray,
    depth: jnp.ndarray,
    K_src: jnp.ndarray,
    w2c_src: jnp.ndarray,
    K_tgt: jnp.ndarray,
    w2c_tgt: jnp.ndarray,
    out_hw: tuple[int, int] | None = None,
    point_size: int = 1,
    min_depth: float = 1e-3,
) -> WarpResult:
    """`warp_frame` batched over frames: rgb (T, H, W, C), depth (T, H, W), K (T, 3, 3) or (3, 3),
    w2c (T, 4, 4) -> WarpResult with leading T. Jit it with `out_hw`/`point_size` static."""
    T = rgb.shape[0]
    if depth.shape[0] != T:
        raise ValueError(f"warp_frames: {T} rgb frames but {depth.shape[0]} depth maps")

    def per_t(x):
        return jnp.broadcast_to(x, (T,) + x.shape[-2:]) if x.ndim == 2 else x

    fn = lambda r, d, ks, ws, kt, wt: warp_frame(r, d, ks, ws, kt, wt, out_hw, point_size, min_depth)
    return jax.vmap(fn)(rgb, depth, per_t(K_src), per_t(w2c_src), per_t(K_tgt), per_t(w2c_tgt))
