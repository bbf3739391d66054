"""Structure from motion on scenes with a known answer: a ray-cast textured room along a known
camera path, the shared 7-Scenes frames with their true poses, and the bundle adjustment's
residuals against a float64 NumPy twin of the pinhole projection."""

from __future__ import annotations

import glob
import os

import cv2
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.evaluation import bundle_adjustment as ba
from star_jax.evaluation import sfm

SEVEN_SCENES = os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data", "rgbd_7scenes_redkitchen")

# ----------------------------------------------------------------------------------------------
# A textured room, ray-cast (the known-answer scene shared with test_camera_control)

# axis-aligned rectangles: (axis, position, (lo_a, hi_a), (lo_b, hi_b)) over the two other axes
_QUADS = (
    (2, 6.0, (-4.0, 4.0), (-2.0, 2.0)),  # back wall z = 6
    (0, -4.0, (-2.0, 2.0), (-2.0, 8.0)),  # left wall x = -4 (over y, z)
    (0, 4.0, (-2.0, 2.0), (-2.0, 8.0)),  # right wall
    (1, 2.0, (-4.0, 4.0), (-2.0, 8.0)),  # floor y = 2 (over x, z)
    (1, -2.0, (-4.0, 4.0), (-2.0, 8.0)),  # ceiling
    (2, 3.0, (-1.5, 0.3), (-0.6, 1.2)),  # a panel floating in the room
    (2, 4.2, (0.8, 2.2), (-1.2, 0.4)),  # another, further back
)


def _textures(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in _QUADS:
        tex = np.zeros((512, 512), np.float32)
        for cells, amp in ((8, 0.5), (32, 0.3), (128, 0.2)):
            tex += amp * cv2.resize(rng.random((cells, cells), np.float32), (512, 512), interpolation=cv2.INTER_CUBIC)
        out.append(tex)
    return out


def _bilinear(img: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    x0 = np.clip(np.floor(x).astype(int), 0, img.shape[1] - 2)
    y0 = np.clip(np.floor(y).astype(int), 0, img.shape[0] - 2)
    fx, fy = np.clip(x - x0, 0, 1), np.clip(y - y0, 0, 1)
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def render_room(c2w: np.ndarray, K: np.ndarray, hw: tuple[int, int], seed: int = 0) -> np.ndarray:
    """Frames (T, H, W, 3) uint8 of the textured room seen by cameras c2w (T, 4, 4) (OpenCV axes)."""
    H, W = hw
    tex = _textures(seed)
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    frames = []
    for m in c2w:
        d, o = rays @ m[:3, :3].T, m[:3, 3]
        best = np.full(len(d), np.inf)
        color = np.zeros(len(d), np.float32)
        for q, (axis, pos, ra, rb) in enumerate(_QUADS):
            a_ax, b_ax = [i for i in range(3) if i != axis]
            with np.errstate(divide="ignore", invalid="ignore"):
                t = (pos - o[axis]) / d[:, axis]
                p = o + t[:, None] * d
            hit = (t > 1e-6) & (t < best) & (p[:, a_ax] >= ra[0]) & (p[:, a_ax] <= ra[1]) \
                & (p[:, b_ax] >= rb[0]) & (p[:, b_ax] <= rb[1])
            ta = (p[hit, a_ax] - ra[0]) / (ra[1] - ra[0]) * 511
            tb = (p[hit, b_ax] - rb[0]) / (rb[1] - rb[0]) * 511
            color[hit] = _bilinear(tex[q], ta, tb)
            best[hit] = t[hit]
        img = (np.clip(color, 0, 1) * 255 + 0.5).astype(np.uint8).reshape(H, W)
        frames.append(np.repeat(img[..., None], 3, -1))
    return np.stack(frames)


def rot_y(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])


def room_path(T: int, yaw_deg: float = 12.0, lateral: float = 0.6, forward: float = 0.5) -> np.ndarray:
    """c2w (T, 4, 4): the camera slides right and forward while turning (positive yaw turns right)."""
    s = np.linspace(0.0, 1.0, T)
    c2w = np.tile(np.eye(4), (T, 1, 1))
    for i, a in enumerate(s):
        c2w[i, :3, :3] = rot_y(yaw_deg * a)
        c2w[i, :3, 3] = [lateral * a, 0.1 * np.sin(3 * a), forward * a]
    return c2w


ROOM_HW = (240, 320)
ROOM_K = np.array([[260.0, 0, 160.0], [0, 260.0, 120.0], [0, 0, 1]])


def relative_w2c(c2w: np.ndarray) -> np.ndarray:
    """w2c (T, 4, 4) relative to the first camera (frame 0 = identity)."""
    return np.linalg.inv(c2w) @ c2w[0]


def rotation_deg(Ra: np.ndarray, Rb: np.ndarray) -> np.ndarray:
    cos = (np.trace(Ra @ np.swapaxes(Rb, -1, -2), axis1=-2, axis2=-1) - 1) / 2
    return np.degrees(np.arccos(np.clip(cos, -1, 1)))


@pytest.fixture(scope="module")
def room():
    c2w = room_path(20)
    return render_room(c2w, ROOM_K, ROOM_HW), relative_w2c(c2w)


# ----------------------------------------------------------------------------------------------


def test_projection_matches_float64_twin_and_opencv():
    """The BA's pinhole projection equals a plain float64 loop (with skew) and cv2.projectPoints."""
    rng = np.random.default_rng(0)
    R = np.stack([cv2.Rodrigues(r)[0] for r in rng.normal(size=(50, 3)) * 0.5])
    t = rng.normal(size=(50, 3))
    X = rng.normal(size=(50, 3)) + [0, 0, 8]
    idx = np.arange(50)
    for skew in (0.5, 0.0):
        K = np.array([[300.0, skew, 150.0], [0, 310.0, 100.0], [0, 0, 1]])
        got = ba.reprojection_residuals(K, R, t, X, idx, idx, np.zeros((50, 2)))
        want = []
        for Ri, ti, xi in zip(R, t, X):
            q = K @ (Ri @ xi + ti)
            want.append(q[:2] / q[2])
        np.testing.assert_allclose(got, np.array(want), rtol=0, atol=1e-9)
    cv = [cv2.projectPoints(xi[None], cv2.Rodrigues(Ri)[0], ti, K, None)[0][0, 0] for Ri, ti, xi in zip(R, t, X)]
    np.testing.assert_allclose(got, np.array(cv), rtol=0, atol=1e-6)


def _central_differences(f, x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    cols = []
    for i in range(len(x)):
        e = np.zeros_like(x)
        e[i] = h
        cols.append((f(x + e) - f(x - e)) / (2 * h))
    return np.stack(cols, axis=1)


def _toy_problem(seed=0, C=6, P=120):
    rng = np.random.default_rng(seed)
    K = np.array([[400.0, 0, 200.0], [0, 400.0, 150.0], [0, 0, 1]])
    X = rng.uniform([-2, -1.5, 4], [2, 1.5, 8], size=(P, 3))
    w2c = np.tile(np.eye(4), (C, 1, 1))
    for c in range(1, C):
        w2c[c, :3, :3] = cv2.Rodrigues(rng.normal(size=3) * 0.05)[0]
        w2c[c, :3, 3] = [-0.3 * c, 0.05 * rng.normal(), 0.1 * rng.normal()]
    cam_idx, pt_idx = np.repeat(np.arange(C), P), np.tile(np.arange(P), C)
    uv = ba.reprojection_residuals(K, w2c[:, :3, :3], w2c[:, :3, 3], X, cam_idx, pt_idx, np.zeros((C * P, 2)))
    return K, w2c, X, cam_idx, pt_idx, uv, rng


def test_ba_residuals_match_twin_and_ba_lowers_error():
    K, w2c, X, cam_idx, pt_idx, uv, rng = _toy_problem()
    uv = uv + rng.normal(size=uv.shape) * 0.3
    # the residual function equals the twin's projection minus the observations
    R0, t0, free = w2c[:, :3, :3], w2c[:, :3, 3], np.arange(1, len(w2c))
    w = rng.normal(size=(len(free), 3)) * 0.1  # rotation updates: camera c turns to exp(w) R0
    x = np.concatenate([np.concatenate([w, t0[free]], 1).ravel(), X.ravel()])
    args = (K, R0, t0, free, len(X), cam_idx, pt_idx, uv)
    res = ba.ba_residuals(x, *args).reshape(-1, 2)
    R = np.concatenate([R0[:1], [cv2.Rodrigues(wi)[0] @ Ri for wi, Ri in zip(w, R0[1:])]])
    q = np.einsum("ij,mj->mi", K, np.einsum("mij,mj->mi", R[cam_idx], X[pt_idx]) + t0[cam_idx])
    np.testing.assert_allclose(res, q[:, :2] / q[:, 2:] - uv, atol=1e-9)
    # the analytic Jacobian blocks equal central differences (rotation updates at w = 0)
    x0 = np.concatenate([np.concatenate([np.zeros_like(w), t0[free]], 1).ravel(), X.ravel()])
    Jn = _central_differences(lambda x_: ba.ba_residuals(x_, *args), x0).reshape(len(uv), 2, -1)
    Jc, Jp = ba.ba_jacobian_blocks(K, R0, t0, X, cam_idx, pt_idx)
    m = np.flatnonzero(cam_idx > 0)  # observations of free cameras
    cols = 6 * (cam_idx[m] - 1)[:, None] + np.arange(6)
    np.testing.assert_allclose(Jc[m], Jn[m[:, None, None], np.arange(2)[None, :, None], cols[:, None, :]],
                               atol=1e-6 * np.abs(Jn).max())
    cols = 6 * len(free) + 3 * pt_idx[:, None] + np.arange(3)
    np.testing.assert_allclose(Jp, Jn[np.arange(len(uv))[:, None, None], np.arange(2)[None, :, None],
                                      cols[:, None, :]], atol=1e-6 * np.abs(Jn).max())
    # perturbed poses and points: BA brings the error back to the noise level
    w2c_p = w2c.copy()
    for c in range(1, len(w2c)):
        w2c_p[c, :3, :3] = cv2.Rodrigues(rng.normal(size=3) * 0.01)[0] @ w2c[c, :3, :3]
        w2c_p[c, :3, 3] += rng.normal(size=3) * 0.05
    X_p = X + rng.normal(size=X.shape) * 0.05
    before = np.linalg.norm(ba.reprojection_residuals(K, w2c_p[:, :3, :3], w2c_p[:, :3, 3], X_p, cam_idx, pt_idx, uv),
                            axis=1).mean()
    w2c_o, X_o, after = ba.bundle_adjust(K, w2c_p, X_p, cam_idx, pt_idx, uv, max_iters=50)
    after = np.linalg.norm(after, axis=1).mean()
    assert before > 5.0 and after < 0.45, (before, after)  # noise 0.3 px per axis: mean norm ~0.37
    np.testing.assert_array_equal(w2c_o[0], w2c_p[0])  # the gauge camera is held


def test_triangulate_exact():
    K, w2c, X, cam_idx, pt_idx, uv, _ = _toy_problem(1, C=3, P=30)
    uv = uv.reshape(3, 30, 2).transpose(1, 0, 2)
    got = sfm.triangulate(K, np.broadcast_to(w2c, (30, 3, 4, 4)), uv)
    np.testing.assert_allclose(got, X, atol=1e-8)


def test_room_path_recovered(room):
    frames, w2c_true = room
    rec = sfm.reconstruct(frames, ROOM_K)
    assert rec.ok and rec.model == "full", rec.reason
    assert rec.registered.all()
    np.testing.assert_allclose(rec.w2c[0], np.eye(4), atol=1e-12)
    rot_err = rotation_deg(rec.w2c[:, :3, :3], w2c_true[:, :3, :3])
    assert rot_err.max() < 0.5, rot_err
    # camera centres up to one scale
    c_rec = -np.einsum("tji,tj->ti", rec.w2c[:, :3, :3], rec.w2c[:, :3, 3])
    c_true = -np.einsum("tji,tj->ti", w2c_true[:, :3, :3], w2c_true[:, :3, 3])
    s = np.sum(c_rec * c_true) / np.sum(c_rec * c_rec)
    err = np.linalg.norm(s * c_rec - c_true, axis=1).max() / np.linalg.norm(c_true[-1])
    assert err < 0.03, err
    assert rec.mean_error_px < 0.5 and rec.mean_error_px <= rec.mean_error_before_px + 1e-9
    assert rec.stats["inlier_fraction"] > 0.95


def test_static_and_rotation_only_are_degenerate():
    T = 12
    still = render_room(np.tile(np.eye(4), (T, 1, 1)), ROOM_K, ROOM_HW)
    rec = sfm.reconstruct(still, ROOM_K)
    assert rec.ok and rec.model == "rotation" and "no translation to triangulate" in rec.reason
    assert np.isnan(rec.mean_error_px) and len(rec.points) == 0
    np.testing.assert_allclose(rec.w2c[:, :3, :3], np.broadcast_to(np.eye(3), (T, 3, 3)), atol=2e-3)
    pan = np.tile(np.eye(4), (T, 1, 1))
    pan[:, :3, :3] = [rot_y(a) for a in np.linspace(0, 10, T)]
    rec = sfm.reconstruct(render_room(pan, ROOM_K, ROOM_HW), ROOM_K)
    assert rec.ok and rec.model == "rotation", rec.reason
    err = rotation_deg(rec.w2c[:, :3, :3], np.linalg.inv(pan)[:, :3, :3])
    assert err.max() < 0.3, err


def test_noise_and_too_few_frames_fail_explicitly():
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 256, size=(10, 120, 160, 3), dtype=np.uint8)
    rec = sfm.reconstruct(noise)
    assert not rec.ok and rec.reason.startswith("tracking lost"), rec.reason
    rec = sfm.reconstruct(noise[:2])
    assert not rec.ok and "too few frames" in rec.reason


def test_bad_input_raises():
    with pytest.raises(InputError, match=r"sfm: frames: frame 1: expected values in \[0, 1\], found nan"):
        frames = np.zeros((4, 32, 32, 3), np.float32)
        frames[1, 3, 3, 0] = np.nan
        sfm.reconstruct(frames)
    with pytest.raises(InputError, match=r"sfm: frames: expected a clip \(T, H, W, 3\), found shape \(4, 32, 32\)"):
        sfm.reconstruct(np.zeros((4, 32, 32), np.uint8))
    with pytest.raises(InputError, match="intrinsics"):
        sfm.reconstruct(np.zeros((4, 32, 32, 3), np.uint8), K=np.eye(3) * np.nan)


def load_seven_scenes(step: int = 1):
    """(frames (T, 480, 640, 3) uint8, true w2c (T, 4, 4) relative to frame 0, K) or None."""
    files = sorted(glob.glob(os.path.join(SEVEN_SCENES, "frame-*.color.png")))
    if not files:
        return None
    files = files[::step]
    frames = np.stack([cv2.cvtColor(cv2.imread(f), cv2.COLOR_BGR2RGB) for f in files])
    c2w = np.stack([np.loadtxt(f.replace(".color.png", ".pose.txt")) for f in files])
    K = np.loadtxt(os.path.join(SEVEN_SCENES, "camera-intrinsics.txt"))
    return frames, relative_w2c(c2w), K


def test_seven_scenes_path():
    """Real Kinect frames (every 2nd of 50: 0.21 m and 32 deg of motion) with the dataset's nominal
    K (fx = 585, the depth camera's: 7-Scenes did not calibrate colour against depth). The recovered
    rotation drifts smoothly to 4.4-6.1 deg by the last frame whatever the tracker settings (LK window
    21 / 31, working side 512 / 640, 800 / 1000 corners, quality 0.005 / 0.001), and fx = 525 / 700
    gives 6.2 / 3.3 deg: a systematic error, not tracking noise. The reference is not clearly better:
    frame 0 warped by its depth into frame 49 leaves a mean grey-level error of 40.8 with the reference
    relative pose and 35.5 with our rotation in its place (10.7 vs 9.8 at frame 10, 21.6 vs 22.7 at
    frame 25). Thresholds: every rotation within 6.5 deg, the mean within 3 deg, camera centres
    within 20 % of the path's extent after one scale, the reprojection error under 1.5 px."""
    data = load_seven_scenes(step=2)
    if data is None:
        pytest.skip("shared 7-Scenes frames not present")
    frames, w2c_true, K = data
    rec = sfm.reconstruct(frames, K)
    assert rec.ok and rec.model == "full" and rec.registered.all(), rec.reason
    rot_err = rotation_deg(rec.w2c[:, :3, :3], w2c_true[:, :3, :3])
    c_rec = -np.einsum("tji,tj->ti", rec.w2c[:, :3, :3], rec.w2c[:, :3, 3])
    c_true = -np.einsum("tji,tj->ti", w2c_true[:, :3, :3], w2c_true[:, :3, 3])
    s = np.sum(c_rec * c_true) / np.sum(c_rec * c_rec)
    t_err = np.linalg.norm(s * c_rec - c_true, axis=1) / np.linalg.norm(c_true, axis=1).max()
    assert rot_err.max() < 6.5 and rot_err.mean() < 3.0 and t_err.max() < 0.20, (rot_err.max(), t_err.max())
    assert rec.mean_error_px < 1.5


def test_default_intrinsics_are_worldscores():
    """fx = fy = 500 at the area-512^2 resolution DROID-SLAM sees, centred; scaled with the frame."""
    np.testing.assert_allclose(sfm.default_intrinsics(512, 512), [[500, 0, 256], [0, 500, 256], [0, 0, 1]])
    K = sfm.default_intrinsics(480, 832)
    assert K[0, 0] == pytest.approx(500 * np.sqrt(480 * 832) / 512) and (K[0, 2], K[1, 2]) == (416, 240)
