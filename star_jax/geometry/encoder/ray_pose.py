"""Cameras from Depth-Anything-3's ray maps (the package's `use_ray_pose`), float64 NumPy on the host.

    w2c, K = cameras_from_rays(out.ray[0], out.ray_conf[0], (H, W))   # (S, 3, 4), (S, 3, 3)

The ray map (S, h, w, 6) gives, per pixel of an h x w grid over the image, a world-space ray
direction (channels 0-2) and the camera centre (3-5). As depth_anything_3/utils/ray_utils.py
(`get_extrinsic_from_camray`, 0.1.1) does, per view:
1. The grid's pixel centres in normalised image coordinates (the image spans [-1, 1] in x and y)
   are the source points; the directions divided by their z are the targets (rays with |z| <= 1e-4
   get weight 0). Weights are the ray confidences.
2. A RANSAC homography source -> target: 100 samples of 8 rays drawn from the 30% most confident
   (one table of sample positions for every view of a call, `sample_table`), each fitted by weighted
   DLT (SVD); inliers are rays whose reprojection is within 0.2; the sample whose inliers weigh
   most wins, and the homography is refitted on its inliers (at most 8000: above that, a random
   8000 of the 95% most confident, from `rng`).
3. The homography A (sign fixed to det > 0) is split A = R L by a QL decomposition: R the
   camera-to-world rotation, L / L[2, 2] lower triangular with the focal lengths 1 / L[0, 0],
   1 / L[1, 1] (image width 2) and the principal point L[2, :2] + 1 (image width 2).
4. The camera centre is the confidence-weighted mean of the ray origins.
K in pixels of the (H, W) input: fx = f_x W / 2, cx = pp_x W / 2 (and y with H); w2c = inverse pose.

For a centred principal point (what DA3 predicts), the solve is exact: synthetic rays of a known
camera give back its R, t and focal lengths. An off-centre principal point is not recovered: for
A = R K^-1 with K^-1 upper triangular, the package's QL step reads the principal point from the
wrong triangle. Kept as the package has it (parity); see tests/geometry/encoder/test_ray_pose.py.

Deviation: rays with a non-finite channel or confidence get weight 0 and zero coordinates (the
package would carry NaN into its SVD); too few usable rays, or too few inliers to refit, raise
InputError naming the view.
"""

from __future__ import annotations

import numpy as np

from star_jax.errors import InputError

N_ITER = 100  # RANSAC samples
SAMPLE_SIZE = 8  # rays per sample
SAMPLE_RATIO = 0.3  # samples are drawn from this fraction of the most confident rays
REPROJ_THRESHOLD = 0.2  # inlier distance, normalised coordinates of the target plane z = 1
MAX_INLIERS = 8000  # the refit's cap (the package's compute_optimal_rotation_intrinsics_batch)
Z_THRESHOLD = 1e-4


def ray_grid(h: int, w: int) -> np.ndarray:
    """(h, w, 2) pixel centres (x, y) of an h x w grid in normalised image coordinates ([-1, 1])."""
    y = np.linspace(-1 + 1 / h, 1 - 1 / h, h)
    x = np.linspace(-1 + 1 / w, 1 - 1 / w, w)
    return np.stack(np.meshgrid(x, y, indexing="xy"), -1)


def sample_table(num_rays: int, rng: np.random.Generator) -> np.ndarray:
    """(N_ITER, SAMPLE_SIZE) positions into the confidence-sorted candidates, one table per call."""
    n_sample = max(SAMPLE_SIZE, int(num_rays * SAMPLE_RATIO))
    return np.stack([rng.permutation(n_sample)[:SAMPLE_SIZE] for _ in range(N_ITER)])


def fit_homography(src: np.ndarray, dst: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted DLT: src, dst (..., n, 2), weight (..., n) -> H (..., 3, 3) with H[2, 2] = 1,
    dst ~ H [src, 1] (the right singular vector of the smallest singular value)."""
    w = np.sqrt(weight)[..., None]
    x, y, u, v = src[..., :1], src[..., 1:], dst[..., :1], dst[..., 1:]
    z = np.zeros_like(x)
    a1 = np.concatenate([-x * w, -y * w, -w, z, z, z, x * u * w, y * u * w, u * w], -1)
    a2 = np.concatenate([z, z, z, -x * w, -y * w, -w, x * v * w, y * v * w, v * w], -1)
    A = np.concatenate([a1, a2], -2)  # (..., 2n, 9)
    H = np.linalg.svd(A, full_matrices=A.shape[-2] < 9)[2][..., -1, :].reshape(A.shape[:-2] + (3, 3))
    return H / H[..., 2:3, 2:3]


def ql_decomposition(A: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(3, 3) -> (Q orthogonal, L lower triangular with a non-negative diagonal), A = Q L."""
    P = np.eye(3)[::-1]
    Qt, Rt = np.linalg.qr(A @ P)
    Q, L = Qt @ P, P @ Rt @ P
    s = np.where(np.diag(L) < 0, -1.0, 1.0)  # torch.sign: 0 stays 0 there; an exact 0 is degenerate anyway
    return Q * s[None], L * s[:, None]


def _ransac(src, dst, weight, table, rng, view):
    """One view: src (N, 2), dst (N, 2), weight (N,) -> the refitted homography (3, 3)."""
    order = np.argsort(-weight, kind="stable")
    picks = order[table]  # (N_ITER, SAMPLE_SIZE) ray indices: positions among the most confident
    H = fit_homography(src[picks], dst[picks], weight[picks])  # (N_ITER, 3, 3)
    x, y = src[None, :, 0], src[None, :, 1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        pz = H[:, 2, :1] * x + H[:, 2, 1:2] * y + H[:, 2, 2:]  # (N_ITER, N)
        du = (H[:, 0, :1] * x + H[:, 0, 1:2] * y + H[:, 0, 2:]) / pz - dst[None, :, 0]
        dv = (H[:, 1, :1] * x + H[:, 1, 1:2] * y + H[:, 1, 2:]) / pz - dst[None, :, 1]
        err = np.sqrt(du * du + dv * dv)
    inlier = err < REPROJ_THRESHOLD
    best = inlier[int(np.argmax((inlier * weight[None]).sum(-1)))]
    idx = np.flatnonzero(best)
    idx = idx[np.argsort(-weight[idx], kind="stable")]
    if len(idx) > MAX_INLIERS:
        idx = idx[: max(int(len(idx) * 0.95), MAX_INLIERS)]
        idx = idx[rng.permutation(len(idx))[:MAX_INLIERS]]
    if len(idx) < 4:
        raise InputError(f"ray-based pose, view {view}: {len(idx)} rays agree with the best homography, "
                         f"expected at least 4 (the ray map is not a camera's: is the checkpoint damaged?)")
    return fit_homography(src[idx], dst[idx], weight[idx])


def rays_to_camera_params(ray: np.ndarray, conf: np.ndarray, table: np.ndarray | None = None,
                          rng: np.random.Generator | None = None):
    """ray (S, h, w, 6), conf (S, h, w) -> (R (S, 3, 3) camera-to-world, centre (S, 3), focal (S, 2),
    principal point (S, 2)), focal and principal point for an image spanning 2 (the package's
    `camray_to_caminfo`). `table`: RANSAC sample positions (default: drawn from `rng`, seed 0)."""
    ray, conf = np.asarray(ray, np.float64), np.asarray(conf, np.float64)
    if ray.ndim != 4 or ray.shape[-1] != 6 or conf.shape != ray.shape[:-1]:
        raise InputError(f"ray-based pose: expected ray (S, h, w, 6) and conf (S, h, w), found {ray.shape} and "
                         f"{conf.shape}")
    S, h, w, _ = ray.shape
    rng = np.random.default_rng(0) if rng is None else rng
    table = sample_table(h * w, rng) if table is None else np.asarray(table)
    src = ray_grid(h, w).reshape(-1, 2)
    Rs, centres, focals, pps = [], [], [], []
    for s in range(S):
        r, weight = ray[s].reshape(-1, 6), conf[s].reshape(-1).copy()
        usable = np.all(np.isfinite(r), -1) & np.isfinite(weight)
        r, weight = np.where(usable[:, None], r, 0.0), np.where(usable, weight, 0.0)
        zok = np.abs(r[:, 2]) > Z_THRESHOLD  # the source points' z is 1
        weight[~zok] = 0.0
        if np.count_nonzero(weight > 0) < SAMPLE_SIZE:
            raise InputError(f"ray-based pose, view {s}: {np.count_nonzero(weight > 0)} usable rays (finite, "
                             f"|z| > {Z_THRESHOLD}, confidence > 0), expected at least {SAMPLE_SIZE}")
        dst = np.where(zok[:, None], r[:, :2] / np.where(zok, r[:, 2], 1.0)[:, None], r[:, :2])
        A = _ransac(src, dst, weight, table, rng, s)
        A = -A if np.linalg.det(A) < 0 else A
        R, L = ql_decomposition(A)
        L = L / L[2, 2]
        Rs.append(R)
        focals.append(1.0 / np.array([L[0, 0], L[1, 1]]))
        pps.append(np.array([L[2, 0], L[2, 1]]) + 1.0)
        centres.append((r[:, 3:] * weight[:, None]).sum(0) / weight.sum())
    return np.stack(Rs), np.stack(centres), np.stack(focals), np.stack(pps)


def cameras_from_rays(ray: np.ndarray, conf: np.ndarray, image_hw: tuple[int, int], table: np.ndarray | None = None,
                      rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray]:
    """ray (S, h, w, 6), conf (S, h, w) -> (w2c (S, 3, 4) OpenCV world-to-camera, K (S, 3, 3) in pixels
    of the (H, W) network input), as the package's forward with use_ray_pose=True."""
    H, W = image_hw
    R, centre, focal, pp = rays_to_camera_params(ray, conf, table, rng)
    Rt = np.swapaxes(R, -1, -2)
    w2c = np.concatenate([Rt, -(Rt @ centre[..., None])], -1)
    K = np.zeros(R.shape)
    K[:, 0, 0], K[:, 1, 1] = focal[:, 0] / 2 * W, focal[:, 1] / 2 * H
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = pp[:, 0] * W * 0.5, pp[:, 1] * H * 0.5, 1.0
    if not (np.all(np.isfinite(w2c)) and np.all(np.isfinite(K))):
        bad = sorted(set(np.flatnonzero(~np.isfinite(w2c).all((1, 2)) | ~np.isfinite(K).all((1, 2))).tolist()))
        raise InputError(f"ray-based pose, views {bad}: the solve gave non-finite cameras (degenerate ray map)")
    return w2c, K
