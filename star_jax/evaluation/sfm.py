"""A small incremental structure-from-motion for one video with known intrinsics (weight-free).

    rec = reconstruct(frames, K)   # frames (T, H, W, 3) uint8, K (3, 3) at the frames' resolution
    rec.w2c[rec.registered]        # (T, 4, 4) float64 world-to-camera, frame 0 = identity
    rec.mean_error_px              # mean reprojection error after bundle adjustment (working px)

The stand-in for WorldScore's DROID-SLAM (camera control, 3D consistency). Steps, all on CPU:
1. Frames are resized so the longest side is `SfmConfig.max_side` (K scaled with them) and turned
   grey. Features: Shi-Tomasi corners tracked frame to frame by pyramidal Lucas-Kanade with a
   forward-backward check, topped up with new corners away from the live ones.
2. Two-view init with frame 0: the first frame j whose tracks shared with frame 0 have a median
   triangulation angle >= `init_angle_deg` (else the largest >= `min_angle_deg`): essential matrix
   (RANSAC), recoverPose, triangulation. World = frame 0's camera.
3. Frames are registered one by one, most 2D-3D matches first, by PnP-RANSAC + LM refinement;
   each new frame triangulates the tracks it shares with a registered frame; a global bundle
   adjustment runs whenever the registered set has doubled.
4. Final: every track seen by >= 2 registered frames is triangulated (linear, all its views; one
   landing behind a camera, a low-parallax track, restarts far out on its first ray), then one
   bundle adjustment (`bundle_adjustment.bundle_adjust`: intrinsics fixed, camera 0 fixed, Huber
   loss over pixel residuals) over all poses and the `ba_max_points` points seen most often, then
   every point refined alone with the poses held. The
   reported error is the mean over ALL those observations, none rejected (a track whose content
   moves non-rigidly counts with its full error, capped at `error_cap_px`; an observation still
   behind its camera after the adjustment counts at the cap), as DROID-SLAM averages over every
   pixel with valid depth, not over a filtered inlier set.

Failure is explicit (`ok=False` and `reason`): fewer than 3 frames, tracking lost (too few tracks
shared with frame 0, or frames that cannot be registered: named), no frame pair with parallax that
is not a pure rotation. A video whose tracks are all explained by a rotation (static camera, pan,
tripod) has no translation to triangulate: `model="rotation"`, rotations from the chained rotation
fit of bearings (Kabsch), positions zero, no points, errors NaN; camera control can still score
it (a static video when motion was commanded scores low), 3D consistency reports the degeneracy.
Runtime: see benchmarks/eval_geometry.py (45 frames of 480x832 on 2 shared CPU cores).
"""

from __future__ import annotations

import dataclasses
import time

import cv2
import numpy as np

from star_jax.errors import InputError
from star_jax.evaluation.bundle_adjustment import bundle_adjust, reprojection_residuals
from star_jax.evaluation.clips import check_clip


@dataclasses.dataclass(frozen=True)
class SfmConfig:
    """Settings; pixel thresholds are at the working resolution (longest side `max_side`)."""

    max_side: int = 512
    max_features: int = 1000
    min_distance: int = 6  # px between corners
    quality: float = 0.001  # goodFeaturesToTrack quality level (low: generated videos are smooth)
    lk_window: int = 21
    lk_levels: int = 3
    fb_threshold_px: float = 1.0  # forward-backward LK disagreement
    ransac_px: float = 1.0  # essential matrix RANSAC threshold
    pnp_px: float = 3.0  # PnP RANSAC threshold and the triangulation check
    init_angle_deg: float = 3.0  # wanted median triangulation angle of the init pair
    min_angle_deg: float = 0.75  # least median angle to initialise; per point to triangulate it
    rotation_px: float = 0.75  # median residual of a pure-rotation fit below which a pair has no parallax
    min_tracks: int = 40  # tracks an init pair / a PnP registration needs
    min_registered_fraction: float = 0.8
    error_cap_px: float = 16.0  # per-observation cap of the reported error (2 px at WorldScore's 1/8 res)
    huber_px: float = 1.0
    ba_iters: int = 8  # LM steps of the bundle adjustments during registration
    final_ba_iters: int = 20
    ba_max_points: int = 600  # the joint BA uses the points seen most often; the rest are refined alone


@dataclasses.dataclass(frozen=True)
class Reconstruction:
    """Result of `reconstruct`. Poses and points live in frame 0's camera frame (OpenCV axes).

    w2c: (T, 4, 4) float64, w2c[0] = I; NaN rows for frames not registered.
    registered: (T,) bool.
    points: (N, 3) float64 triangulated track points (empty for the rotation model).
    obs_frame, obs_point: (M,) int, the frame and the point of each observation.
    residuals: (M, 2) float64, projected - observed, pixels at the working resolution.
    mean_error_before_px / mean_error_px: mean capped residual norm before / after the final BA,
        over these M observations and those still behind their camera after it (counted at the
        cap, not in `residuals`; `stats["behind_camera_observations"]`).
    K: (3, 3) intrinsics at the working resolution `size_hw`; `resize` = working / input scale.
    model: "full" (6-DoF poses + points), "rotation" (no translation to triangulate) or "none".
    """

    w2c: np.ndarray
    registered: np.ndarray
    points: np.ndarray
    obs_frame: np.ndarray
    obs_point: np.ndarray
    residuals: np.ndarray
    mean_error_before_px: float
    mean_error_px: float
    K: np.ndarray
    size_hw: tuple[int, int]
    resize: float
    model: str
    ok: bool
    reason: str = ""
    stats: dict = dataclasses.field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return len(self.registered)


def default_intrinsics(height: int, width: int) -> np.ndarray:
    """WorldScore's camera: fx = fy = 500 at the resolution of area 512^2 (DROID-SLAM's input), the
    principal point at the image centre; returned at (height, width)."""
    f = 500.0 * np.sqrt(height * width) / 512.0
    return np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])


# ----------------------------------------------------------------------------------------------
# Tracking

@dataclasses.dataclass(frozen=True)
class Tracks:
    """Observations of feature tracks: frame (M,), track (M,), uv (M, 2) working pixels; sorted by frame."""

    frame: np.ndarray
    track: np.ndarray
    uv: np.ndarray
    num_tracks: int


def track_features(gray: np.ndarray, cfg: SfmConfig) -> Tracks:
    """KLT tracks through grey frames (T, h, w) uint8 with a forward-backward check."""
    lk = dict(winSize=(cfg.lk_window, cfg.lk_window), maxLevel=cfg.lk_levels,
              criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
    h, w = gray.shape[1:]
    frames, tracks, uvs = [], [], []
    pts = np.zeros((0, 2), np.float32)
    ids = np.zeros((0,), np.int64)
    next_id = 0
    for t in range(len(gray)):
        if t > 0 and len(pts):
            p1, st, _ = cv2.calcOpticalFlowPyrLK(gray[t - 1], gray[t], pts.reshape(-1, 1, 2), None, **lk)
            p0, st2, _ = cv2.calcOpticalFlowPyrLK(gray[t], gray[t - 1], p1, None, **lk)
            p1, p0 = p1.reshape(-1, 2), p0.reshape(-1, 2)
            good = ((st[:, 0] == 1) & (st2[:, 0] == 1) & (np.linalg.norm(p0 - pts, axis=1) < cfg.fb_threshold_px)
                    & (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1))
            pts, ids = p1[good], ids[good]
        if len(pts) < cfg.max_features:
            mask = np.full((h, w), 255, np.uint8)
            for u, v in pts:
                cv2.circle(mask, (int(round(u)), int(round(v))), cfg.min_distance, 0, -1)
            new = cv2.goodFeaturesToTrack(gray[t], cfg.max_features - len(pts), cfg.quality, cfg.min_distance,
                                          mask=mask, blockSize=7)
            if new is not None:
                new = new.reshape(-1, 2).astype(np.float32)
                pts = np.concatenate([pts, new])
                ids = np.concatenate([ids, np.arange(next_id, next_id + len(new))])
                next_id += len(new)
        frames.append(np.full(len(pts), t))
        tracks.append(ids.copy())
        uvs.append(pts.astype(np.float64))
    return Tracks(np.concatenate(frames), np.concatenate(tracks), np.concatenate(uvs), next_id)


# ----------------------------------------------------------------------------------------------
# Two-view geometry

def _bearings(K: np.ndarray, uv: np.ndarray) -> np.ndarray:
    b = np.linalg.solve(K, np.concatenate([uv, np.ones((len(uv), 1))], axis=1).T).T
    return b / np.linalg.norm(b, axis=1, keepdims=True)


def fit_rotation(K: np.ndarray, uv_a: np.ndarray, uv_b: np.ndarray, iters: int = 5):
    """Rotation R (3, 3) with bearing_b ~ R bearing_a (a camera turning in place, frame a -> b),
    robust Kabsch (Cauchy reweighting); returns (R, residual px (N,) in frame b)."""
    ba, bb = _bearings(K, uv_a), _bearings(K, uv_b)
    wts = np.ones(len(ba))
    for _ in range(iters):
        U, _, Vt = np.linalg.svd((bb * wts[:, None]).T @ ba)
        R = U @ np.diag([1.0, 1.0, np.linalg.det(U @ Vt)]) @ Vt
        q = (K @ (ba @ R.T).T).T
        err = np.linalg.norm(q[:, :2] / q[:, 2:] - uv_b, axis=1)
        wts = 1.0 / (1.0 + (err / (2.0 * max(np.median(err), 1e-3))) ** 2)
    return R, err


def triangulate(K: np.ndarray, w2c: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Linear (DLT) triangulation of points seen in V views: w2c (N, V, 4, 4), uv (N, V, 2) -> (N, 3)."""
    Pm = K @ w2c[..., :3, :]  # (N, V, 3, 4)
    A = np.concatenate([uv[..., 0:1] * Pm[..., 2, :] - Pm[..., 0, :], uv[..., 1:2] * Pm[..., 2, :] - Pm[..., 1, :]],
                       axis=1)
    A = A / np.linalg.norm(A, axis=-1, keepdims=True)
    X = np.linalg.svd(A)[2][:, -1]
    return X[:, :3] / X[:, 3:]


def _angles_deg(c2w_a: np.ndarray, c2w_b: np.ndarray, X: np.ndarray) -> np.ndarray:
    ra, rb = X - c2w_a[:3, 3], X - c2w_b[:3, 3]
    cos = np.sum(ra * rb, 1) / (np.linalg.norm(ra, axis=1) * np.linalg.norm(rb, axis=1) + 1e-300)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _depths(w2c: np.ndarray, X: np.ndarray) -> np.ndarray:
    return X @ w2c[:3, 2] + w2c[2, 3]


def _reproj(K, w2c, X, uv):
    q = (K @ (X @ w2c[:3, :3].T + w2c[:3, 3]).T).T
    return np.linalg.norm(q[:, :2] / q[:, 2:] - uv, axis=1)


# ----------------------------------------------------------------------------------------------
# Incremental reconstruction

class _State:
    """Mutable working state of `reconstruct` (poses, per-track points, observation index)."""

    def __init__(self, tracks: Tracks, T: int, K: np.ndarray, cfg: SfmConfig):
        self.tr, self.T, self.K, self.cfg = tracks, T, K, cfg
        self.w2c = np.full((T, 4, 4), np.nan)
        self.registered = np.zeros(T, bool)
        self.X = np.full((tracks.num_tracks, 3), np.nan)
        self.rows = [np.flatnonzero(tracks.frame == t) for t in range(T)]
        self.lookup = [dict(zip(tracks.track[r].tolist(), r.tolist())) for r in self.rows]

    def common(self, a: int, b: int):
        ta, tb = self.tr.track[self.rows[a]], self.tr.track[self.rows[b]]
        ids, ia, ib = np.intersect1d(ta, tb, return_indices=True)
        return ids, self.tr.uv[self.rows[a][ia]], self.tr.uv[self.rows[b][ib]]

    def observations(self, min_views: int = 2):
        """Rows of observations in registered frames of tracks with >= min_views such rows."""
        rows = np.flatnonzero(self.registered[self.tr.frame])
        counts = np.bincount(self.tr.track[rows], minlength=self.tr.num_tracks)
        return rows[counts[self.tr.track[rows]] >= min_views]

    def triangulate_new(self, t: int) -> None:
        """Triangulates tracks seen in frame t and, first, in an earlier registered frame."""
        K, cfg = self.K, self.cfg
        ids = self.tr.track[self.rows[t]]
        ids = ids[~np.isfinite(self.X[ids, 0])]
        if not len(ids):
            return
        rows = self.observations()
        rows = rows[np.isin(self.tr.track[rows], ids) & (self.tr.frame[rows] != t)]
        if not len(rows):
            return
        # the first registered observation of each track: the widest baseline in a video
        order = np.lexsort((self.tr.frame[rows], self.tr.track[rows]))
        rows = rows[order]
        first = rows[np.r_[True, self.tr.track[rows][1:] != self.tr.track[rows][:-1]]]
        tid = self.tr.track[first]
        rt = np.array([self.lookup[t][i] for i in tid.tolist()])
        fa = self.tr.frame[first]
        w2c = np.stack([self.w2c[fa], np.broadcast_to(self.w2c[t], self.w2c[fa].shape)], axis=1)
        uv = np.stack([self.tr.uv[first], self.tr.uv[rt]], axis=1)
        X = triangulate(K, w2c, uv)
        c2w_t = np.linalg.inv(self.w2c[t])
        keep = np.ones(len(X), bool)
        for f in np.unique(fa):
            sel = fa == f
            c2w_f = np.linalg.inv(self.w2c[f])
            Xs = X[sel]
            keep[sel] = ((_depths(self.w2c[f], Xs) > 0) & (_depths(self.w2c[t], Xs) > 0)
                         & (_angles_deg(c2w_f, c2w_t, Xs) >= cfg.min_angle_deg)
                         & (_reproj(K, self.w2c[f], Xs, uv[sel, 0]) < cfg.pnp_px)
                         & (_reproj(K, self.w2c[t], Xs, uv[sel, 1]) < cfg.pnp_px))
        self.X[tid[keep]] = X[keep]

    def register(self, t: int) -> bool:
        rows = self.rows[t]
        ids = self.tr.track[rows]
        has = np.isfinite(self.X[ids, 0])
        if has.sum() < self.cfg.min_tracks:
            return False
        obj, img = self.X[ids[has]], self.tr.uv[rows[has]]
        ok, rvec, tvec, inl = cv2.solvePnPRansac(obj, img, self.K, None, iterationsCount=200,
                                                 reprojectionError=self.cfg.pnp_px, confidence=0.999,
                                                 flags=cv2.SOLVEPNP_SQPNP)
        if not ok or inl is None or len(inl) < max(self.cfg.min_tracks, 0.3 * len(obj)):
            return False
        inl = inl[:, 0]
        rvec, tvec = cv2.solvePnPRefineLM(obj[inl], img[inl], self.K, None, rvec, tvec)
        m = np.eye(4)
        m[:3, :3], m[:3, 3] = cv2.Rodrigues(rvec)[0], tvec[:, 0]
        self.w2c[t], self.registered[t] = m, True
        return True

    def adjust(self, max_iters: int, all_tracks: bool = False):
        """Global BA over registered frames and their points; with `all_tracks`, first triangulates
        every track seen by >= 2 registered frames. Returns (rows, residuals before, after, behind)."""
        rows = self.observations()
        if all_tracks:
            self._triangulate_all(rows)
        rows = rows[np.isfinite(self.X[self.tr.track[rows], 0])]
        counts = np.bincount(self.tr.track[rows], minlength=self.tr.num_tracks)
        rows = rows[counts[self.tr.track[rows]] >= 2]
        # a point behind any of its cameras cannot be projected. In the final pass (all tracks) such a
        # DLT point (a low-parallax track) restarts far out on its first ray; otherwise it is dropped
        bad = self._behind(rows)
        if all_tracks and bad.any():
            ids, first = np.unique(self.tr.track[rows], return_index=True)
            sel = bad[ids]
            good_rows = rows[~bad[self.tr.track[rows]]]
            far = 10.0 * (np.median(self._depth(good_rows)) if len(good_rows) else 1.0)
            r = rows[first[sel]]
            c2w = np.linalg.inv(self.w2c[self.tr.frame[r]])
            ray = np.linalg.solve(self.K, np.concatenate([self.tr.uv[r], np.ones((len(r), 1))], 1).T).T * far
            self.X[ids[sel]] = np.einsum("mij,mj->mi", c2w[:, :3, :3], ray) + c2w[:, :3, 3]
            bad = self._behind(rows)
        behind = rows[bad[self.tr.track[rows]]]
        rows = rows[~bad[self.tr.track[rows]]]
        frames = np.flatnonzero(self.registered)
        cam_of = -np.ones(self.T, int)
        cam_of[frames] = np.arange(len(frames))
        pids, pt_idx = np.unique(self.tr.track[rows], return_inverse=True)
        cam_idx = cam_of[self.tr.frame[rows]]
        uv = self.tr.uv[rows]
        fixed = (int(cam_of[0]),) if self.registered[0] else (0,)
        before = reprojection_residuals(self.K, self.w2c[frames, :3, :3], self.w2c[frames, :3, 3], self.X[pids],
                                        cam_idx, pt_idx, uv)
        # poses from the points seen most often (cost ~ points x cameras^2), then every point alone
        n_obs = np.bincount(pt_idx, minlength=len(pids))
        keep = np.zeros(len(pids), bool)
        keep[np.argsort(-n_obs, kind="stable")[:self.cfg.ba_max_points]] = True
        sub = keep[pt_idx]
        new_id = np.cumsum(keep) - 1
        w2c, _, _ = bundle_adjust(self.K, self.w2c[frames], self.X[pids[keep]], cam_idx[sub], new_id[pt_idx[sub]],
                                  uv[sub], fixed, self.cfg.huber_px, max_iters)
        _, X, after = bundle_adjust(self.K, w2c, self.X[pids], cam_idx, pt_idx, uv, np.arange(len(frames)),
                                    self.cfg.huber_px, max_iters)
        self.w2c[frames], self.X[pids] = w2c, X
        if not all_tracks:
            self.X[bad] = np.nan
        flipped = self._depth(rows) <= 0  # behind a camera after the adjustment
        return rows[~flipped], before[~flipped], after[~flipped], np.concatenate([behind, rows[flipped]])

    def _depth(self, rows: np.ndarray) -> np.ndarray:
        """z of each observation's point in its camera (M,)."""
        Xr = self.X[self.tr.track[rows]]
        return np.einsum("mj,mj->m", Xr, self.w2c[self.tr.frame[rows], 2, :3]) + self.w2c[self.tr.frame[rows], 2, 3]

    def _behind(self, rows: np.ndarray) -> np.ndarray:
        """(num_tracks,) True for tracks whose point is behind a camera observing it in rows."""
        bad = np.zeros(self.tr.num_tracks, bool)
        bad[self.tr.track[rows][self._depth(rows) <= 0]] = True
        return bad

    def _triangulate_all(self, rows: np.ndarray) -> None:
        ids, counts = np.unique(self.tr.track[rows], return_counts=True)
        order = np.argsort(self.tr.track[rows], kind="stable")
        rows = rows[order]
        starts = np.r_[0, np.cumsum(counts)]
        for v in np.unique(counts):  # one batch per view count
            sel = np.flatnonzero(counts == v)
            idx = starts[sel][:, None] + np.arange(v)
            r = rows[idx]
            self.X[ids[sel]] = triangulate(self.K, self.w2c[self.tr.frame[r]], self.tr.uv[r])


def _failed(T, K, hw, resize, reason, model="none", **stats) -> Reconstruction:
    return Reconstruction(np.full((T, 4, 4), np.nan), np.zeros(T, bool), np.zeros((0, 3)), np.zeros(0, int),
                          np.zeros(0, int), np.zeros((0, 2)), float("nan"), float("nan"), K, hw, resize, model,
                          False, reason, stats)


def _prepare(frames, K, max_side: int):
    frames = check_clip(frames, "sfm: frames", uint8=True)
    T, H, W = frames.shape[:3]
    K = default_intrinsics(H, W) if K is None else np.asarray(K, np.float64)
    if K.shape != (3, 3) or not np.isfinite(K).all() or K[0, 0] <= 0 or K[1, 1] <= 0:
        raise InputError(f"sfm: expected finite intrinsics K (3, 3) with fx, fy > 0, found {K.tolist()}")
    s = min(1.0, max_side / max(H, W))
    h, w = int(round(H * s)), int(round(W * s))
    sx, sy = w / W, h / H
    Kw = K.copy()
    Kw[0, :] *= sx
    Kw[1, :] *= sy
    Kw[0, 2] += 0.5 * sx - 0.5  # pixel centres at integers (as geometry.resize_intrinsics)
    Kw[1, 2] += 0.5 * sy - 0.5
    gray = np.stack([cv2.resize(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY), (w, h), interpolation=cv2.INTER_AREA)
                     for f in frames])
    return gray, Kw, (h, w), s


def reconstruct(frames: np.ndarray, K: np.ndarray | None = None, config: SfmConfig = SfmConfig()) -> Reconstruction:
    """Camera path and points of a video (T, H, W, 3) uint8 (or float in [0, 1]) with intrinsics K
    (3, 3) at (H, W) (None: `default_intrinsics`). See the module docstring."""
    t0 = time.perf_counter()
    cfg = config
    gray, K, hw, resize = _prepare(frames, K, cfg.max_side)
    T = len(gray)
    if T < 3:
        return _failed(T, K, hw, resize, f"too few frames: {T} (need >= 3)")
    tracks = track_features(gray, cfg)
    st = _State(tracks, T, K, cfg)
    stats = {"tracks": int(tracks.num_tracks), "observations": int(len(tracks.frame))}

    # two-view init with frame 0
    best, rot_only, rot_pairs, rigid = None, True, [], False
    for j in range(1, T):
        ids, ua, ub = st.common(0, j)
        if len(ids) < cfg.min_tracks:
            break
        R, rerr = fit_rotation(K, ua, ub)
        rot_pairs.append(j)
        if np.median(rerr) < cfg.rotation_px:
            continue
        rot_only = False
        E, inl = cv2.findEssentialMat(ua, ub, K, cv2.RANSAC, 0.999, cfg.ransac_px)
        if E is None or E.shape != (3, 3):
            continue
        n, R, t, inl = cv2.recoverPose(E, ua, ub, K, mask=inl.copy())
        inl = inl[:, 0] > 0
        if n < cfg.min_tracks:
            continue
        rigid = True
        w2c_b = np.eye(4)
        w2c_b[:3, :3], w2c_b[:3, 3] = R, t[:, 0]
        X = triangulate(K, np.stack([np.broadcast_to(np.eye(4), (inl.sum(), 4, 4)),
                                     np.broadcast_to(w2c_b, (inl.sum(), 4, 4))], 1),
                        np.stack([ua[inl], ub[inl]], 1))
        angle = float(np.median(_angles_deg(np.eye(4), np.linalg.inv(w2c_b), X)))
        if best is None or angle > best[0]:
            best = (angle, j, ids[inl], X, w2c_b)
        if angle >= cfg.init_angle_deg:
            break
    stats["init_candidates"] = len(rot_pairs)
    if not rot_pairs:
        return _failed(T, K, hw, resize, f"tracking lost: frames 0 and 1 share fewer than {cfg.min_tracks} tracks",
                       **stats)
    if best is None or best[0] < cfg.min_angle_deg:
        if rot_only:
            return _rotation_model(st, hw, resize, t0, stats)
        if not rigid:
            return _failed(T, K, hw, resize, f"tracking lost: the tracks frames 1-{rot_pairs[-1]} share with frame 0 "
                           f"fit neither a rotation nor a rigid motion (fewer than {cfg.min_tracks} "
                           "essential-matrix inliers)", **stats)
        return _failed(T, K, hw, resize, "degenerate: no frame pair with enough parallax to initialise "
                       f"(best median triangulation angle {0.0 if best is None else best[0]:.2f} deg < "
                       f"{cfg.min_angle_deg} deg) and the motion is not a pure rotation either", **stats)
    angle, j, ids, X, w2c_b = best
    st.w2c[0], st.w2c[j] = np.eye(4), w2c_b
    st.registered[[0, j]] = True
    st.X[ids] = X
    st.X[ids[(_depths(np.eye(4), X) <= 0) | (_depths(w2c_b, X) <= 0)]] = np.nan
    stats.update(init_pair=(0, int(j)), init_angle_deg=angle)
    st.adjust(cfg.ba_iters)

    # incremental registration, most 2D-3D matches first
    failed, last_ba = set(), 2
    while True:
        todo = [t for t in range(T) if not st.registered[t] and t not in failed]
        if not todo:
            break
        n3d = [np.isfinite(st.X[tracks.track[st.rows[t]], 0]).sum() for t in todo]
        t = todo[int(np.argmax(n3d))]
        if st.register(t):
            st.triangulate_new(t)
            failed.clear()  # new points may let a failed frame register now
            if st.registered.sum() >= 2 * last_ba:
                st.adjust(cfg.ba_iters)
                last_ba = st.registered.sum()
        else:
            failed.add(t)
    lost = np.flatnonzero(~st.registered).tolist()
    stats["unregistered"] = lost
    if st.registered.sum() < max(3, cfg.min_registered_fraction * T):
        return _failed(T, K, hw, resize, f"tracking lost: {len(lost)} of {T} frames could not be registered "
                       f"(frames {_ranges(lost)})", **stats)

    rows, before, after, behind = st.adjust(cfg.final_ba_iters, all_tracks=True)
    cap = cfg.error_cap_px
    n_all = len(rows) + len(behind)
    e_before = (np.minimum(np.linalg.norm(before, axis=1), cap).sum() + cap * len(behind)) / max(n_all, 1)
    e_after = (np.minimum(np.linalg.norm(after, axis=1), cap).sum() + cap * len(behind)) / max(n_all, 1)
    pids, obs_point = np.unique(tracks.track[rows], return_inverse=True)
    norms = np.linalg.norm(after, axis=1)
    stats.update(points=int(len(pids)), ba_observations=int(len(rows)), behind_camera_observations=int(len(behind)),
                 inlier_fraction=float(np.mean(norms < cfg.pnp_px)) if len(norms) else 0.0,
                 median_error_px=float(np.median(norms)) if len(norms) else float("nan"),
                 seconds=time.perf_counter() - t0)
    reason = "" if not lost else f"frames {_ranges(lost)} could not be registered"
    return Reconstruction(st.w2c, st.registered.copy(), st.X[pids], tracks.frame[rows], obs_point, after,
                          float(e_before), float(e_after), K, hw, resize, "full", True, reason, stats)


def _rotation_model(st: _State, hw, resize, t0, stats) -> Reconstruction:
    """Every pair is explained by a rotation: chain rotation fits (to the earliest registered frame
    sharing enough tracks); positions stay at the origin."""
    T, K, cfg = st.T, st.K, st.cfg
    st.w2c[0], st.registered[0] = np.eye(4), True
    errs = []
    for t in range(1, T):
        for r in range(t):
            if not st.registered[r]:
                continue
            ids, ua, ub = st.common(r, t)
            if len(ids) >= cfg.min_tracks:
                R, err = fit_rotation(K, ua, ub)
                st.w2c[t] = np.eye(4)
                st.w2c[t, :3, :3] = R @ st.w2c[r, :3, :3]
                st.registered[t] = True
                errs.append(err)
                break
    lost = np.flatnonzero(~st.registered).tolist()
    stats.update(unregistered=lost, seconds=time.perf_counter() - t0,
                 rotation_fit_median_px=float(np.median(np.concatenate(errs))) if errs else float("nan"))
    if st.registered.sum() < max(3, cfg.min_registered_fraction * T):
        return _failed(T, K, hw, resize, f"tracking lost: {len(lost)} of {T} frames could not be registered "
                       f"(frames {_ranges(lost)})", model="rotation", **stats)
    return Reconstruction(st.w2c, st.registered.copy(), np.zeros((0, 3)), np.zeros(0, int), np.zeros(0, int),
                          np.zeros((0, 2)), float("nan"), float("nan"), K, hw, resize, "rotation", True,
                          "degenerate: no translation to triangulate (static camera or rotation only); "
                          "rotations from the pure-rotation fit, positions at the origin", stats)


def _ranges(idx) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    out, idx = [], list(idx)
    i = 0
    while i < len(idx):
        j = i
        while j + 1 < len(idx) and idx[j + 1] == idx[j] + 1:
            j += 1
        out.append(f"{idx[i]}" if i == j else f"{idx[i]}-{idx[j]}")
        i = j + 1
    return ", ".join(out)
