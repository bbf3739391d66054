"""Plain float64 NumPy twins of the "star-jax-v1" (triangle mesh) and "inspatio-1.5" (bilinear
splat) renders of `star_jax.geometry.warp`, written from their descriptions (the module docstring
of `star_jax.geometry.splat`; issue 15 for the 1.5 render), one triangle / one point at a time.

Both return (rgb (Ho, Wo, C) float64, mask (Ho, Wo) bool, depth (Ho, Wo) float64).
"""

import numpy as np

from tests.geometry.reference_warp import _points_in_target


def _project(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, min_depth, near):
    H, W = np.shape(depth)
    q, colours, valid = _points_in_target(rgb, depth, K_src, w2c_src, w2c_tgt, min_depth)
    valid &= q[:, 2] > near
    z = np.where(valid, q[:, 2], 1.0)
    proj = (np.asarray(K_tgt, np.float64) @ q.T).T
    uv = proj[:, :2] / z[:, None]
    return uv.reshape(H, W, 2), z.reshape(H, W), valid.reshape(H, W), colours.reshape(H, W, -1).astype(np.float64)


def mesh_reference(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, out_hw=None, depth_cut=0.05, window=4,
                   min_depth=1e-3, near=1e-3):
    """Every quad's two triangles rasterised in turn (over at most the window x window pixels from
    the top-left of the quad's box); then every point at its rounded pixel with its depth times
    (1 + depth_cut); strictly nearer candidates replace, so ties keep the first."""
    depth = np.asarray(depth, np.float64)
    H, W = depth.shape
    Ho, Wo = out_hw or (H, W)
    uv, z, valid, col = _project(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, min_depth, near)
    key = np.full((Ho, Wo), np.inf)
    out = np.zeros((Ho, Wo, col.shape[-1]))
    zout = np.zeros((Ho, Wo))
    for i in range(H - 1):
        for j in range(W - 1):
            verts = {"a": (i, j), "b": (i, j + 1), "c": (i + 1, j), "d": (i + 1, j + 1)}
            tris = []
            for names in ("abc", "bdc"):
                vs = [verts[n] for n in names]
                ds = [depth[v] for v in vs]
                if all(valid[v] for v in vs) and max(ds) <= (1 + depth_cut) * min(ds):
                    tris.append(vs)
            if not tris:
                continue
            pts = np.array([uv[v] for t in tris for v in t])
            x0, x1 = int(np.ceil(pts[:, 0].min())), int(np.floor(pts[:, 0].max()))
            y0, y1 = int(np.ceil(pts[:, 1].min())), int(np.floor(pts[:, 1].max()))
            x1, y1 = min(x1, x0 + window - 1), min(y1, y0 + window - 1)  # the window clips a wide quad
            for py in range(max(y0, 0), min(y1, Ho - 1) + 1):
                for px in range(max(x0, 0), min(x1, Wo - 1) + 1):
                    for t in tris:
                        P = np.array([uv[v] for v in t])
                        # solve p = P0 + s (P1 - P0) + r (P2 - P0) for the weights (1 - s - r, s, r)
                        M = np.stack([P[1] - P[0], P[2] - P[0]], 1)
                        if abs(np.linalg.det(M)) < 1e-12:
                            continue
                        s, r = np.linalg.solve(M, np.array([px, py], np.float64) - P[0])
                        w = np.array([1 - s - r, s, r])
                        if w.min() < -1e-5:
                            continue
                        zp = 1.0 / sum(w[k] / z[t[k]] for k in range(3))
                        if zp < key[py, px]:
                            key[py, px] = zp
                            out[py, px] = sum(w[k] * col[t[k]] for k in range(3))
                            zout[py, px] = zp
                        break  # the first triangle that covers the centre takes it
    for i in range(H):
        for j in range(W):
            if not valid[i, j]:
                continue
            px, py = int(np.round(uv[i, j, 0])), int(np.round(uv[i, j, 1]))
            if 0 <= px < Wo and 0 <= py < Ho and z[i, j] * (1 + depth_cut) < key[py, px]:
                key[py, px] = z[i, j] * (1 + depth_cut)
                out[py, px] = col[i, j]
                zout[py, px] = z[i, j]
    return out, np.isfinite(key), zout


def bilinear_reference(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, out_hw=None, softness=50.0, z_max=1000.0,
                       min_depth=1e-3):
    """Issue 15's 1.5 render: each point with source depth > min_depth and target z > 0 adds
    colour, depth and weight to the pixels floor / ceil around it (an integer coordinate: both
    taps the same pixel, each with weight 1), weight = bilinear / exp(softness log(1 + z') /
    max log(1 + z')), z' = clip(z, 0, z_max); then the weighted means, mask = weight > 0."""
    H, W = np.shape(depth)
    Ho, Wo = out_hw or (H, W)
    uv, z, valid, col = _project(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, min_depth, 0.0)
    return bilinear_points(uv[valid], z[valid], col[valid], (Ho, Wo), softness, z_max)


def bilinear_points(uv, z, col, out_hw, softness=50.0, z_max=1000.0):
    """The splat of points already in the target camera: uv (N, 2), z (N,) > 0, col (N, C)."""
    Ho, Wo = out_hw
    uv, z, col = (np.asarray(x, np.float64) for x in (uv, z, col))
    lz = np.log1p(np.clip(z, 0, z_max))
    soft = np.exp(lz / max(lz.max(initial=0.0), 1e-6) * softness)
    wsum = np.zeros((Ho, Wo))
    csum = np.zeros((Ho, Wo, col.shape[-1]))
    zsum = np.zeros((Ho, Wo))
    for (u, v), zi, ci, si in zip(uv, z, col, soft):
        for x, wx in ((np.floor(u), 1 - (u - np.floor(u))), (np.ceil(u), 1 - (np.ceil(u) - u))):
            for y, wy in ((np.floor(v), 1 - (v - np.floor(v))), (np.ceil(v), 1 - (np.ceil(v) - v))):
                if 0 <= x < Wo and 0 <= y < Ho:
                    w = wx * wy / si
                    wsum[int(y), int(x)] += w
                    csum[int(y), int(x)] += w * ci
                    zsum[int(y), int(x)] += w * zi
    mask = wsum > 0
    safe = np.where(mask, wsum, 1.0)
    return np.where(mask[..., None], csum / safe[..., None], 0.0), mask, np.where(mask, zsum / safe, 0.0)
