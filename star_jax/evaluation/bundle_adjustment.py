"""Bundle adjustment for a pinhole camera with known intrinsics (float64 NumPy, CPU).

    w2c, points, residuals = bundle_adjust(K, w2c, points, cam_idx, pt_idx, uv, fixed_cams=(0,))

Observation m is point pt_idx[m] seen at pixel uv[m] by camera cam_idx[m] (w2c, OpenCV axes:
x_cam = R X + t, pixel = K x_cam / z). Levenberg-Marquardt on a Huber cost (iteratively reweighted),
each step solved through the Schur complement on the cameras; a camera's rotation is updated as
exp(w) R (w = 0 at every linearisation), so the analytic Jacobian needs no axis-angle derivative.
`ba_residuals` (a packed parameter vector, rotations exp(w) R0) is the form the Jacobian blocks are
checked against by central differences in the tests.
"""

from __future__ import annotations

import numpy as np


def rotation_matrices(rvec: np.ndarray) -> np.ndarray:
    """Axis-angle (N, 3) -> rotation matrices (N, 3, 3) (Rodrigues)."""
    theta = np.linalg.norm(rvec, axis=1)
    k = rvec / np.where(theta < 1e-12, 1.0, theta)[:, None]
    Kx = _skew(k)
    s, c = np.sin(theta)[:, None, None], np.cos(theta)[:, None, None]
    return np.eye(3) + s * Kx + (1.0 - c) * (Kx @ Kx)


def _skew(v: np.ndarray) -> np.ndarray:
    z = np.zeros(len(v))
    return np.stack([np.stack([z, -v[:, 2], v[:, 1]], -1), np.stack([v[:, 2], z, -v[:, 0]], -1),
                     np.stack([-v[:, 1], v[:, 0], z], -1)], -2)


def _unpack(x, R0, t0, free, n_points):
    """Packed [free cameras (F, 6) = (rotation update w, t), points (P, 3)] -> per-camera R (C, 3, 3),
    t (C, 3), update w (C, 3), points. A camera's rotation is exp(w) R0: w stays small, so the
    axis-angle Jacobian is well conditioned; held cameras keep w = 0."""
    w = np.zeros((len(R0), 3))
    t = t0.copy()
    cam = x[:6 * len(free)].reshape(-1, 6)
    w[free], t[free] = cam[:, :3], cam[:, 3:]
    return rotation_matrices(w) @ R0, t, w, x[6 * len(free):].reshape(n_points, 3)


def ba_residuals(x: np.ndarray, K: np.ndarray, R0: np.ndarray, t0: np.ndarray, free: np.ndarray, n_points: int,
                 cam_idx: np.ndarray, pt_idx: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Residuals (2M,) = project - observed of observation m (point pt_idx[m] in camera cam_idx[m])."""
    R, t, _, X = _unpack(x, R0, t0, free, n_points)
    return reprojection_residuals(K, R, t, X, cam_idx, pt_idx, uv).ravel()


def reprojection_residuals(K: np.ndarray, R: np.ndarray, t: np.ndarray, X: np.ndarray, cam_idx: np.ndarray,
                           pt_idx: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Projected - observed pixels (M, 2) of points X (P, 3) in cameras x_cam = R X + t (C, 3, 3), (C, 3)."""
    q = (np.einsum("mij,mj->mi", R[cam_idx], X[pt_idx]) + t[cam_idx]) @ K.T
    return q[:, :2] / q[:, 2:] - uv


def ba_jacobian_blocks(K: np.ndarray, R: np.ndarray, t: np.ndarray, X: np.ndarray, cam_idx: np.ndarray,
                       pt_idx: np.ndarray):
    """Jacobian blocks of the pixel of point X[pt_idx[m]] in camera cam_idx[m] (x_cam = R X + t) with
    respect to that camera's update (w, dt), R -> exp(w) R, t -> t + dt, at w = 0 (M, 2, 6), and to
    the point (M, 2, 3)."""
    Xr = np.einsum("mij,mj->mi", R[cam_idx], X[pt_idx])
    Xc = Xr + t[cam_idx]
    z = Xc[:, 2]
    dpi = np.zeros((len(z), 2, 3))  # d pixel / d x_cam
    dpi[:, 0, 0], dpi[:, 0, 1] = K[0, 0] / z, K[0, 1] / z
    dpi[:, 0, 2] = -(K[0, 0] * Xc[:, 0] + K[0, 1] * Xc[:, 1]) / z ** 2
    dpi[:, 1, 1], dpi[:, 1, 2] = K[1, 1] / z, -K[1, 1] * Xc[:, 1] / z ** 2
    J_cam = np.concatenate([-dpi @ _skew(Xr), dpi], axis=2)
    return J_cam, dpi @ R[cam_idx]


def _sum_by(idx: np.ndarray, vals: np.ndarray, n: int) -> np.ndarray:
    """Sums rows of vals (M, ...) into n bins by idx (M,) -> (n, ...)."""
    flat = vals.reshape(len(vals), int(np.prod(vals.shape[1:])))
    out = np.stack([np.bincount(idx, flat[:, j], minlength=n) for j in range(flat.shape[1])], axis=1)
    return out.reshape((n,) + vals.shape[1:])


def _huber_cost(err: np.ndarray, delta: float) -> float:
    return float(np.sum(np.where(err <= delta, 0.5 * err ** 2, delta * (err - 0.5 * delta))))


def bundle_adjust(K: np.ndarray, w2c: np.ndarray, points: np.ndarray, cam_idx: np.ndarray, pt_idx: np.ndarray,
                  uv: np.ndarray, fixed_cams=(0,), huber_px: float = 1.0, max_iters: int = 20, tol: float = 1e-6):
    """Jointly refines poses w2c (C, 4, 4) and points (P, 3) to observations uv (M, 2) of point
    pt_idx[m] in camera cam_idx[m], intrinsics K fixed, the cameras `fixed_cams` held (the gauge).

    Levenberg-Marquardt on the Huber cost (scale `huber_px`; iteratively reweighted), each step
    solved by the Schur complement on the cameras (the points' 3x3 blocks eliminated), every
    observation counted once per (camera, point). Stops after `max_iters` steps or when a step
    lowers the cost by less than `tol` relative. Returns (w2c (C, 4, 4), points (P, 3), residuals (M, 2))."""
    C, P = len(w2c), len(points)
    R, t, X = np.array(w2c[:, :3, :3]), np.array(w2c[:, :3, 3]), np.array(points, np.float64)
    slot = np.arange(C)
    slot[np.asarray(fixed_cams, int)] = -1
    free = np.flatnonzero(slot >= 0)
    slot[free] = np.arange(len(free))
    F = len(free)
    mc = np.flatnonzero(slot[cam_idx] >= 0)  # observations in free cameras
    # rows / columns of each (free) observation's 6x3 block in the dense (6F, 3P) matrix W
    w_rows = (6 * slot[cam_idx[mc]])[:, None, None] + np.arange(6)[None, :, None]
    w_cols = (3 * pt_idx[mc])[:, None, None] + np.arange(3)[None, None, :]

    def residual(R, t, X):
        return reprojection_residuals(K, R, t, X, cam_idx, pt_idx, uv)

    r = residual(R, t, X)
    err = np.linalg.norm(r, axis=1)
    cost, lam = _huber_cost(err, huber_px), 1e-3
    for _ in range(max_iters):
        w = np.minimum(1.0, huber_px / np.maximum(err, 1e-12))
        Jc, Jp = ba_jacobian_blocks(K, R, t, X, cam_idx, pt_idx)
        wJp = w[:, None, None] * Jp
        V = _sum_by(pt_idx, np.einsum("mki,mkj->mij", wJp, Jp), P)
        gp = _sum_by(pt_idx, np.einsum("mki,mk->mi", wJp, r), P)
        Jc, wJc = Jc[mc], w[mc, None, None] * Jc[mc]
        U = _sum_by(slot[cam_idx[mc]], np.einsum("mki,mkj->mij", wJc, Jc), F)
        gc = _sum_by(slot[cam_idx[mc]], np.einsum("mki,mk->mi", wJc, r[mc]), F)
        W = np.einsum("mki,mkj->mij", wJc, Jp[mc])  # (Mc, 6, 3)
        while True:
            Vd = V + lam * (V * np.eye(3)) + 1e-9 * np.eye(3)
            Vinv = np.linalg.inv(Vd)
            Ud = U + lam * (U * np.eye(6)) + 1e-9 * np.eye(6)
            Y = W @ Vinv[pt_idx[mc]]  # (Mc, 6, 3): W V^-1, block by block
            Wd, Yd = np.zeros((6 * F, 3 * P)), np.zeros((6 * F, 3 * P))
            Wd[w_rows, w_cols], Yd[w_rows, w_cols] = W, Y
            S = np.zeros((F, F, 6, 6))
            S[np.arange(F), np.arange(F)] = Ud
            S = S.transpose(0, 2, 1, 3).reshape(6 * F, 6 * F) - Yd @ Wd.T
            rhs = -gc + _sum_by(slot[cam_idx[mc]], np.einsum("mij,mj->mi", Y, gp[pt_idx[mc]]), F)
            dc = np.linalg.solve(S, rhs.ravel()).reshape(F, 6) if F else np.zeros((0, 6))
            dp = -gp - _sum_by(pt_idx[mc], np.einsum("mij,mi->mj", W, dc[slot[cam_idx[mc]]]), P)
            dp = np.einsum("pij,pj->pi", Vinv, dp)
            R_new, t_new = R.copy(), t.copy()
            R_new[free] = rotation_matrices(dc[:, :3]) @ R[free]
            t_new[free] = t[free] + dc[:, 3:]
            X_new = X + dp
            r_new = residual(R_new, t_new, X_new)
            err_new = np.linalg.norm(r_new, axis=1)
            cost_new = _huber_cost(err_new, huber_px) if np.isfinite(err_new).all() else np.inf
            if cost_new < cost:
                break
            lam *= 10.0
            if lam > 1e8:
                return _pack(R, t), X, r
        done = cost - cost_new < tol * cost
        R, t, X, r, err, cost, lam = R_new, t_new, X_new, r_new, err_new, cost_new, max(lam / 10.0, 1e-7)
        if done:
            break
    return _pack(R, t), X, r


def _pack(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    out = np.tile(np.eye(4), (len(R), 1, 1))
    out[:, :3, :3], out[:, :3, 3] = R, t
    return out
