"""The two splat kernels of `star_jax.geometry.warp` beyond its square z-buffer splat.

Both take the source pixel grid already moved into the target camera, at output resolution:
uv (H, W, 2) target pixel coordinates (pixel centres at integers), z (H, W) target-camera depth,
valid (H, W) (a point exists and lies in front of the camera), colours (H, W, C) float32, and
return (rgb (Ho, Wo, C) float32, mask (Ho, Wo) bool, depth (Ho, Wo) float32), 0 where the mask
is False. Everything is scatter / gather over flat arrays with static shapes (jit, vmap).

`mesh_splat` ("star-jax-v1"): the source pixel grid as a triangle mesh. The 2 x 2 pixel quad
(i, j) is cut along its (i, j+1)-(i+1, j) diagonal into triangles (a, b, c) and (b, d, c) with
a = (i, j), b = (i, j+1), c = (i+1, j), d = (i+1, j+1). A triangle exists when its three vertices
are valid and its source depths agree, max / min <= 1 + depth_cut (else it spans a depth edge:
the disocclusion stays a hole). Each quad tests the output pixel centres of its bounding box, a
static window x window block from its top-left integer corner: a quad whose box is wider or
taller (magnified more than ~window - 1 times, or stretched over an uncut edge) is drawn only
there, so a zoom beyond the window leaves seams, as a square splat does beyond its size. A pixel
centre inside a triangle (barycentric weights >= -1e-5, so shared edges leave no seam) gets its
colour by screen-space barycentric interpolation of the vertex colours and its depth by
perspective-correct interpolation (1 / z linear in screen space, exact on a planar triangle).
Every valid point is also splatted to its rounded pixel, with its depth pushed back by the factor
1 + depth_cut in the z-test: it shows only where no triangle covers the pixel (isolated points,
thin structures whose triangles were all cut) or where it lies in front of the surface there by
more than the cut. Nearest wins; ties go to the lowest candidate index (triangles before points).

`bilinear_splat` ("inspatio-1.5"): the InSpatio-World 1.5 release's forward splat
(pipeline/depth_warper.py, `bilinear_splatting`, as render_scene.py calls it). Each point adds to
the 4 pixels around it, at x0 = floor(u), x1 = ceil(u) (and y), with weights (1 - (u - x0)) and
(1 - (x1 - u)): an integer coordinate puts weight 1 on both (identical) taps, as the release does.
Each weight is divided by exp(softness * log(1 + z') / max log(1 + z')) with z' = clip(z, 0,
z_max) and the max over the view's valid points (at least 1e-6), so within one view nearer points
dominate a pixel softly. Colour and depth are the weighted means; mask = summed weight > 0.
"""

from __future__ import annotations

import jax.numpy as jnp

_INSIDE_TOL = 1e-5  # barycentric slack: pixel centres on a shared edge belong to both triangles
_COORD_CLIP = 2.0**24  # far off-screen stays off-screen and int32-safe


# --------------------------------------------------------------------- triangle mesh
def _weight_planes(A, B, C):
    """Barycentric weights of triangle (A, B, C) as affine functions of the pixel position:
    w(x, y) = k0 + kx x + ky y for each vertex, per triangle, and whether the triangle has area.
    A, B, C: (u, v) pairs of arrays, relative to the quad's window corner (small numbers)."""
    area = (B[0] - A[0]) * (C[1] - A[1]) - (B[1] - A[1]) * (C[0] - A[0])
    ok = area != 0
    inv = 1.0 / jnp.where(ok, area, 1.0)
    planes = []
    for P, Q in ((B, C), (C, A), (A, B)):  # the weight of the vertex opposite edge P -> Q
        kx, ky = -(Q[1] - P[1]) * inv, (Q[0] - P[0]) * inv
        planes.append((-(kx * P[0] + ky * P[1]), kx, ky))
    return ok, planes


def _raster(quad, ox, oy):
    """Which triangle of each quad covers the pixel centre at window offset (ox, oy), its weights
    over (a, b, c, d) and the perspective-correct depth. quad: per-quad arrays broadcastable with ox."""
    def weights(planes):
        return [k0 + kx * ox + ky * oy for k0, kx, ky in planes]

    w1a, w1b, w1c = weights(quad["p1"])
    w2b, w2d, w2c = weights(quad["p2"])
    in1 = quad["t1"] & (w1a >= -_INSIDE_TOL) & (w1b >= -_INSIDE_TOL) & (w1c >= -_INSIDE_TOL)
    in2 = quad["t2"] & (w2b >= -_INSIDE_TOL) & (w2d >= -_INSIDE_TOL) & (w2c >= -_INSIDE_TOL) & ~in1
    zero = jnp.zeros_like(w1a)
    w = [jnp.where(in1, w1a, zero), jnp.where(in1, w1b, jnp.where(in2, w2b, zero)),
         jnp.where(in1, w1c, jnp.where(in2, w2c, zero)), jnp.where(in2, w2d, zero)]
    iza, izb, izc, izd = quad["inv_z"]
    inv_z = w[0] * iza + w[1] * izb + w[2] * izc + w[3] * izd
    covered = (in1 | in2) & (inv_z > 0)
    return covered, w, 1.0 / jnp.where(covered, inv_z, 1.0)


def mesh_splat(uv, z, valid, src_depth, colours, out_hw, depth_cut: float, window: int):
    """Triangle-mesh render (module docstring). src_depth (H, W): the cut's source depths."""
    H, W = z.shape
    if H < 2 or W < 2:
        raise ValueError(f"mesh_splat: a triangle mesh needs at least 2 x 2 source pixels, got {H} x {W}")
    Ho, Wo = out_hw
    n_out, C = Ho * Wo, colours.shape[-1]
    uv = jnp.clip(jnp.where(valid[..., None], uv, 0.0), -_COORD_CLIP, _COORD_CLIP)
    zs = jnp.where(valid, z, 1.0)
    ds = jnp.where(valid, src_depth, 1.0)

    def corners(x):
        return x[:-1, :-1].reshape(-1), x[:-1, 1:].reshape(-1), x[1:, :-1].reshape(-1), x[1:, 1:].reshape(-1)

    ua, ub, uc, ud = corners(uv[..., 0])
    va, vb, vc, vd = corners(uv[..., 1])
    oka, okb, okc, okd = corners(valid)
    da, db, dc, dd = corners(ds)

    def agrees(*ds_):
        return jnp.maximum(jnp.maximum(ds_[0], ds_[1]), ds_[2]) <= (1.0 + depth_cut) * jnp.minimum(
            jnp.minimum(ds_[0], ds_[1]), ds_[2])

    t1 = oka & okb & okc & agrees(da, db, dc)
    t2 = okb & okd & okc & agrees(db, dd, dc)
    big = jnp.float32(_COORD_CLIP)

    def box(xa, xb, xc, xd):
        lo = jnp.minimum(jnp.minimum(jnp.where(t1, xa, big), jnp.where(t2, xd, big)), jnp.minimum(xb, xc))
        hi = jnp.maximum(jnp.maximum(jnp.where(t1, xa, -big), jnp.where(t2, xd, -big)), jnp.maximum(xb, xc))
        return jnp.ceil(lo).astype(jnp.int32), jnp.floor(hi).astype(jnp.int32)

    x0, x1 = box(ua, ub, uc, ud)
    y0, y1 = box(va, vb, vc, vd)
    fx, fy = x0.astype(jnp.float32), y0.astype(jnp.float32)
    rel = [(u_ - fx, v_ - fy) for u_, v_ in ((ua, va), (ub, vb), (uc, vc), (ud, vd))]
    ok1, p1 = _weight_planes(rel[0], rel[1], rel[2])
    ok2, p2 = _weight_planes(rel[1], rel[3], rel[2])
    quad = {"p1": p1, "p2": p2, "t1": t1 & ok1, "t2": t2 & ok2, "inv_z": tuple(1.0 / x for x in corners(zs))}

    off = jnp.arange(window, dtype=jnp.int32)
    ox = jnp.tile(off, window)[None]
    oy = jnp.repeat(off, window)[None]
    px, py = x0[:, None] + ox, y0[:, None] + oy  # (Nq, window^2)
    expand = lambda v: tuple(expand(x) for x in v) if isinstance(v, (tuple, list)) else v[:, None]
    covered, _, zt = _raster({k: expand(v) for k, v in quad.items()}, ox.astype(jnp.float32), oy.astype(jnp.float32))
    ok_t = covered & (px <= x1[:, None]) & (py <= y1[:, None]) & (px >= 0) & (px < Wo) & (py >= 0) & (py < Ho)
    lin_t = jnp.where(ok_t, py * Wo + px, n_out).reshape(-1)
    key_t = jnp.where(ok_t, zt, jnp.inf).reshape(-1)

    # every valid point at its rounded pixel, pushed back by the cut factor
    pu = jnp.round(uv[..., 0]).astype(jnp.int32).reshape(-1)
    pv = jnp.round(uv[..., 1]).astype(jnp.int32).reshape(-1)
    ok_p = valid.reshape(-1) & (pu >= 0) & (pu < Wo) & (pv >= 0) & (pv < Ho)
    lin_p = jnp.where(ok_p, pv * Wo + pu, n_out)
    key_p = jnp.where(ok_p, zs.reshape(-1) * (1.0 + depth_cut), jnp.inf)

    lin = jnp.concatenate([lin_t, lin_p])
    key = jnp.concatenate([key_t, key_p])
    n_t, n_cand = lin_t.shape[0], lin.shape[0]
    zbuf = jnp.full((n_out + 1,), jnp.inf, jnp.float32).at[lin].min(key)
    survives = jnp.isfinite(key) & (key <= zbuf[lin])
    best = jnp.full((n_out + 1,), n_cand, jnp.int32).at[lin].min(
        jnp.where(survives, jnp.arange(n_cand, dtype=jnp.int32), n_cand))[:n_out]
    hit = best < n_cand
    is_tri = best < n_t

    # the winners, recomputed: triangle candidates by their quad and window offset, points directly
    cand = jnp.clip(best, 0, n_t - 1)
    q, k = cand // (window * window), cand % (window * window)
    take = lambda v: tuple(take(x) for x in v) if isinstance(v, (tuple, list)) else v[q]
    _, w, zw = _raster({k_: take(v) for k_, v in quad.items()}, (k % window).astype(jnp.float32),
                       (k // window).astype(jnp.float32))
    i, j = q // (W - 1), q % (W - 1)
    a_idx = i * W + j
    flat = colours.reshape(H * W, C).astype(jnp.float32)
    tri_rgb = sum(w_[:, None] * flat[idx] for w_, idx in zip(w, (a_idx, a_idx + 1, a_idx + W, a_idx + W + 1)))
    p = jnp.clip(best - n_t, 0, H * W - 1)
    rgb = jnp.where(is_tri[:, None], tri_rgb, flat[p])
    depth = jnp.where(is_tri, zw, zs.reshape(-1)[p])
    rgb = jnp.where(hit[:, None], rgb, 0.0).reshape(Ho, Wo, C)
    depth = jnp.where(hit, depth, 0.0).reshape(Ho, Wo)
    return rgb, hit.reshape(Ho, Wo), depth


# --------------------------------------------------------------------- the 1.5 release's bilinear splat
def bilinear_splat(uv, z, valid, colours, out_hw, softness: float, z_max: float):
    """4-tap soft-depth splat of the 1.5 release (module docstring)."""
    Ho, Wo = out_hw
    n_out, C = Ho * Wo, colours.shape[-1]
    valid = valid.reshape(-1)
    u = jnp.clip(jnp.where(valid, uv[..., 0].reshape(-1), -2.0), -_COORD_CLIP, _COORD_CLIP)
    v = jnp.clip(jnp.where(valid, uv[..., 1].reshape(-1), -2.0), -_COORD_CLIP, _COORD_CLIP)
    z = z.reshape(-1)
    log_z = jnp.log1p(jnp.clip(jnp.where(valid, z, 0.0), 0.0, z_max))
    log_max = jnp.maximum(jnp.max(jnp.where(valid, log_z, 0.0)), 1e-6)
    soft = jnp.exp(log_z / log_max * softness)
    x0, x1, y0, y1 = jnp.floor(u), jnp.ceil(u), jnp.floor(v), jnp.ceil(v)
    taps = [(x0, y0, (1 - (u - x0)) * (1 - (v - y0))), (x0, y1, (1 - (u - x0)) * (1 - (y1 - v))),
            (x1, y0, (1 - (x1 - u)) * (1 - (v - y0))), (x1, y1, (1 - (x1 - u)) * (1 - (y1 - v)))]
    xs = jnp.stack([t[0] for t in taps], 1).astype(jnp.int32)  # (N, 4)
    ys = jnp.stack([t[1] for t in taps], 1).astype(jnp.int32)
    w = jnp.stack([t[2] for t in taps], 1) / soft[:, None]
    ok = valid[:, None] & (xs >= 0) & (xs < Wo) & (ys >= 0) & (ys < Ho)
    lin = jnp.where(ok, ys * Wo + xs, n_out).reshape(-1)
    w = jnp.where(ok, w, 0.0).reshape(-1)
    col = jnp.where(valid[:, None], colours.reshape(-1, C).astype(jnp.float32), 0.0)
    col = jnp.repeat(col, 4, axis=0)
    zz = jnp.repeat(jnp.where(valid, z, 0.0), 4)
    wsum = jnp.zeros((n_out + 1,), jnp.float32).at[lin].add(w)[:n_out]
    csum = jnp.zeros((n_out + 1, C), jnp.float32).at[lin].add(col * w[:, None])[:n_out]
    zsum = jnp.zeros((n_out + 1,), jnp.float32).at[lin].add(zz * w)[:n_out]
    mask = wsum > 0
    safe = jnp.where(mask, wsum, 1.0)
    rgb = jnp.where(mask[:, None], csum / safe[:, None], 0.0).reshape(Ho, Wo, C)
    depth = jnp.where(mask, zsum / safe, 0.0).reshape(Ho, Wo)
    return rgb, mask.reshape(Ho, Wo), depth
