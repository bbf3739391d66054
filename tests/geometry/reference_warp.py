"""Plain float64 NumPy twin of `star_jax.geometry.warp.warp_frame` (kept next to the fast path's
tests, gsplat-style): sort splats by (pixel, depth, source index), first per pixel wins."""

import numpy as np


def warp_reference(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, out_hw=None, point_size=1, min_depth=1e-3):
    rgb = np.asarray(rgb)
    depth = np.asarray(depth, np.float64)
    H, W = depth.shape
    Ho, Wo = out_hw or (H, W)
    v, u = np.mgrid[:H, :W].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    d = depth.reshape(-1)
    valid = np.isfinite(d) & (d > min_depth)
    pts = (np.linalg.inv(np.asarray(K_src, np.float64)) @ pix.T).T * np.where(valid, d, 1.0)[:, None]
    T = np.asarray(w2c_tgt, np.float64) @ np.linalg.inv(np.asarray(w2c_src, np.float64))
    q = (T[:3, :3] @ pts.T).T + T[:3, 3]
    valid &= q[:, 2] > min_depth
    proj = (np.asarray(K_tgt, np.float64) @ q.T).T
    uv = proj[:, :2] / np.where(valid, q[:, 2], 1.0)[:, None]
    lo = -((point_size - 1) // 2)
    offs = [(du, dv) for dv in range(lo, lo + point_size) for du in range(lo, lo + point_size)]
    lin, z, src = [], [], []
    for du, dv in offs:
        ui = np.floor(uv[:, 0] + 0.5).astype(np.int64) + du
        vi = np.floor(uv[:, 1] + 0.5).astype(np.int64) + dv
        ok = valid & (ui >= 0) & (ui < Wo) & (vi >= 0) & (vi < Ho)
        lin.append((vi * Wo + ui)[ok]); z.append(q[ok, 2]); src.append(np.nonzero(ok)[0])
    lin, z, src = map(np.concatenate, (lin, z, src))
    order = np.lexsort((src, z, lin))
    lin, z, src = lin[order], z[order], src[order]
    first = np.ones_like(lin, bool)
    first[1:] = lin[1:] != lin[:-1]
    out = np.zeros((Ho * Wo, rgb.shape[-1]), rgb.dtype)
    mask = np.zeros(Ho * Wo, bool)
    zout = np.zeros(Ho * Wo)
    out[lin[first]] = rgb.reshape(-1, rgb.shape[-1])[src[first]]
    mask[lin[first]] = True
    zout[lin[first]] = z[first]
    return out.reshape(Ho, Wo, -1), mask.reshape(Ho, Wo), zout.reshape(Ho, Wo)
