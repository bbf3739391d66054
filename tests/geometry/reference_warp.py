"""Plain float64 NumPy twins of `star_jax.geometry.warp` (kept next to the fast path's tests,
gsplat-style).

`warp_reference`: the "star-jax-v0" recipe; sort splats by (pixel, depth, source index), the first
per pixel wins.
`warp_reference_release`: the InSpatio-World release's point renderer written out from its
behaviour (scripts/render_point_cloud.py `render_batch`, read through the search tool): world
points into the target camera, keep z > 0.1, intrinsics x2, each point a 5 x 5 square (point size
2) of torch.round(u + dx) positions, z-buffer by scatter-min, survivors z <= zbuf + 1e-4 written
in order (the last write wins), black background, then cv2.resize to the output size:
INTER_AREA (the 2 x 2 mean) for colour, INTER_NEAREST (the top-left sample) for the mask.
"""

import numpy as np


def _points_in_target(rgb, depth, K_src, w2c_src, w2c_tgt, min_depth):
    """Source pixels -> (camera-frame points of the target (N, 3), colours (N, C), valid (N,))."""
    depth = np.asarray(depth, np.float64)
    H, W = depth.shape
    v, u = np.mgrid[:H, :W].astype(np.float64)
    pix = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3)
    d = depth.reshape(-1)
    valid = np.isfinite(d) & (d > min_depth)
    cam = (np.linalg.inv(np.asarray(K_src, np.float64)) @ pix.T).T * np.where(valid, d, 1.0)[:, None]
    world = (cam - np.asarray(w2c_src, np.float64)[:3, 3]) @ np.asarray(w2c_src, np.float64)[:3, :3]
    w2c = np.asarray(w2c_tgt, np.float64)
    q = world @ w2c[:3, :3].T + w2c[:3, 3]
    return q, np.asarray(rgb).reshape(H * W, -1), valid


def warp_reference(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, out_hw=None, point_size=1, min_depth=1e-3):
    rgb = np.asarray(rgb)
    H, W = np.shape(depth)
    Ho, Wo = out_hw or (H, W)
    q, colours, valid = _points_in_target(rgb, depth, K_src, w2c_src, w2c_tgt, min_depth)
    valid &= q[:, 2] > min_depth
    proj = (np.asarray(K_tgt, np.float64) @ q.T).T
    uv = proj[:, :2] / np.where(valid, q[:, 2], 1.0)[:, None]
    lo = -((point_size - 1) // 2)
    offs = [(du, dv) for dv in range(lo, lo + point_size) for du in range(lo, lo + point_size)]
    lin, z, src = [], [], []
    for du, dv in offs:
        ui = np.round(uv[:, 0] + du).astype(np.int64)  # half to even, as the fast path
        vi = np.round(uv[:, 1] + dv).astype(np.int64)
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
    out[lin[first]] = colours[src[first]]
    mask[lin[first]] = True
    zout[lin[first]] = z[first]
    return out.reshape(Ho, Wo, -1), mask.reshape(Ho, Wo), zout.reshape(Ho, Wo)


def warp_reference_release(rgb, depth, K_src, w2c_src, K_tgt, w2c_tgt, out_hw=None, point_size=2,
                           ss_ratio=2.0, near=0.1, depth_epsilon=1e-4, min_depth=1e-3, return_canvas=False):
    """-> rgb (Ho, Wo, C) float64, mask (Ho, Wo) bool, and with return_canvas the supersampled
    canvas (rgb (Hs, Ws, C), mask (Hs, Ws)) before downsampling."""
    H, W = np.shape(depth)
    Ho, Wo = out_hw or (H, W)
    q, colours, valid = _points_in_target(rgb, depth, K_src, w2c_src, w2c_tgt, min_depth)
    Hs, Ws = int(Ho * ss_ratio), int(Wo * ss_ratio)
    K = np.asarray(K_tgt, np.float64).copy()
    K[:2] *= ss_ratio
    p = int(point_size * ss_ratio)
    p += p % 2 == 0
    keep = valid & (q[:, 2] > near)
    xyz, col = q[keep], colours[keep].astype(np.float64)
    z = xyz[:, 2]
    u_f = K[0, 0] * xyz[:, 0] / z + K[0, 2]
    v_f = K[1, 1] * xyz[:, 1] / z + K[1, 2]
    r = np.arange(-(p // 2), p // 2 + 1)
    dy, dx = np.meshgrid(r, r, indexing="ij")
    # point-major, offset-minor: the order in which the release writes its canvas
    u = np.round(u_f[:, None] + dx.reshape(-1)[None]).astype(np.int64).reshape(-1)
    v = np.round(v_f[:, None] + dy.reshape(-1)[None]).astype(np.int64).reshape(-1)
    zz = np.repeat(z, dx.size)
    order = np.arange(u.size)
    inb = (u >= 0) & (u < Ws) & (v >= 0) & (v < Hs)
    u, v, zz, order, src = u[inb], v[inb], zz[inb], order[inb], np.repeat(np.arange(len(z)), dx.size)[inb]
    idx = v * Ws + u
    zbuf = np.full(Hs * Ws, np.inf)
    np.minimum.at(zbuf, idx, zz)
    closest = zz <= zbuf[idx] + depth_epsilon
    idx, order, src = idx[closest], order[closest], src[closest]
    last = np.lexsort((order, idx))  # within a pixel, in write order; keep the last write
    idx, src = idx[last], src[last]
    final = np.ones_like(idx, bool)
    final[:-1] = idx[:-1] != idx[1:]
    canvas = np.zeros((Hs * Ws, col.shape[-1]))
    hit = np.zeros(Hs * Ws, bool)
    canvas[idx[final]] = col[src[final]]
    hit[idx[final]] = True
    canvas, hit = canvas.reshape(Hs, Ws, -1), hit.reshape(Hs, Ws)
    f = int(ss_ratio)
    out = canvas.reshape(Ho, f, Wo, f, -1).mean(axis=(1, 3))  # INTER_AREA at an integer factor
    mask = hit[::f, ::f]  # INTER_NEAREST: source index floor(f * i)
    return (out, mask, (canvas, hit)) if return_canvas else (out, mask)
