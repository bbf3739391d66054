"""Camera control and 3D consistency on videos with a known answer (the ray-cast room of test_sfm):
the true path scores near 1, a wrong one clearly lower, a video that does not move when motion was
commanded scores low, degenerate and untrackable videos say why; WorldScore's alignment and unit
conversion against closed forms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from star_jax.evaluation import camera_control as cc
from star_jax.evaluation import sfm
from star_jax.geometry.trajectory import TrajectoryError
from tests.evaluation.test_sfm import ROOM_HW, ROOM_K, render_room, room_path, rot_y

T = 16


def _world(c2w: np.ndarray) -> np.ndarray:
    """The commanded w2c of cameras c2w in a world frame where the first camera is not the identity."""
    G = np.eye(4)
    G[:3, :3] = cv2.Rodrigues(np.array([0.2, -0.5, 0.1]))[0]
    G[:3, 3] = [3.0, -1.0, 2.0]
    return np.linalg.inv(G @ c2w)


@pytest.fixture(scope="module")
def room():
    c2w = room_path(T)
    frames = render_room(c2w, ROOM_K, ROOM_HW)
    return frames, c2w, sfm.reconstruct(frames, ROOM_K)


def test_fit_scale_minimises_sum_of_norms():
    rng = np.random.default_rng(0)
    g = rng.normal(size=(20, 3))
    p = 0.4 * g + 0.1 * rng.normal(size=(20, 3))
    c = cc.fit_scale(g, p)
    grid = np.linspace(0, 5, 50001)
    costs = [np.linalg.norm(g - s * p, axis=1).sum() for s in grid]
    assert abs(c - grid[int(np.argmin(costs))]) < 2e-4
    assert cc.fit_scale(g, -p) == pytest.approx(0.0, abs=1e-6)  # c >= 0: a backwards path gains nothing
    assert cc.fit_scale(np.zeros((5, 3)), p[:5]) == 0.0  # rotation-only commanded path: WorldScore's c = 0


def test_align_paths_closed_forms():
    c2w = room_path(8, yaw_deg=20, lateral=2.0, forward=1.0)
    rec = c2w.copy()
    rec[:, :3, 3] *= 0.3  # the same path at another scale, in another world frame
    a = cc.align_paths(_world(rec), _world(c2w))
    np.testing.assert_allclose(a["rotation_deg"], 0, atol=1e-5)
    np.testing.assert_allclose(a["translation"], 0, atol=1e-6)
    extent = np.linalg.norm(c2w[:, :3, 3] - c2w[0, :3, 3], axis=1).max()
    assert a["translation_unit"] == pytest.approx(extent)
    np.testing.assert_allclose(a["recovered_positions"], a["commanded_positions"], atol=1e-6)
    # a recovered path that did not move: e_t = |g_t| / extent; the rotations still count
    still = np.tile(np.eye(4), (8, 1, 1))
    b = cc.align_paths(still, _world(c2w))
    np.testing.assert_allclose(b["translation"], np.linalg.norm(c2w[:, :3, 3] - c2w[0, :3, 3], axis=1) / extent,
                               atol=1e-9)
    np.testing.assert_allclose(b["rotation_deg"], np.linspace(0, 20, 8), atol=1e-6)
    # a pan commanded: the translation error is 0 whatever the video did (WorldScore's c = 0)
    pan = np.tile(np.eye(4), (8, 1, 1))
    pan[:, :3, :3] = [rot_y(x) for x in np.linspace(0, 20, 8)]
    d = cc.align_paths(_world(c2w), _world(pan))
    assert d["commanded_rotation_only"] and d["scale"] == 0 and np.abs(d["translation"]).max() < 1e-12


def test_worldscore_reprojection_unit():
    assert cc.worldscore_reprojection(8.0, (512, 512)) == pytest.approx(1.0)
    assert cc.worldscore_reprojection(4.0, (256, 256)) == pytest.approx(1.0)
    assert cc.worldscore_reprojection(8.0, (288, 512)) == pytest.approx(512 / np.sqrt(288 * 512))


def test_true_path_scores_high_and_wrong_path_low(room):
    frames, c2w, rec = room
    m = cc.camera_control(frames, _world(c2w), ROOM_K, rec)
    assert m.ok and m.raw["rotation_deg"] < 0.5 and m.raw["translation"] < 0.03, m.raw
    assert m.score > 0.95
    assert m.details["commanded_positions"].shape == (T, 3) and m.details["registered"] == T
    np.testing.assert_allclose(m.details["recovered_positions"], m.details["commanded_positions"],
                               atol=0.03 * np.linalg.norm(c2w[-1, :3, 3] - c2w[0, :3, 3]))
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])  # yaw and lateral motion mirrored
    wrong = cc.camera_control(frames, _world(mirror @ c2w @ mirror), ROOM_K, rec)
    assert wrong.ok and wrong.score < 0.5 and wrong.raw["rotation_deg"] > 5.0, wrong.raw
    m3 = cc.consistency_3d(frames, ROOM_K, rec)
    assert m3.ok and m3.raw < 0.05 and m3.score > 0.95, m3.raw
    assert m3.to_json()["raw"] == pytest.approx(m3.raw)


def test_static_video_when_motion_was_commanded(room):
    frames, c2w, _ = room
    still = np.repeat(frames[:1], T, axis=0)
    rec = sfm.reconstruct(still, ROOM_K)
    m = cc.camera_control(still, _world(c2w), ROOM_K, rec)
    assert m.ok and m.details["model"] == "rotation" and m.score < 0.5, (m.raw, m.score)
    m3 = cc.consistency_3d(still, ROOM_K, rec)
    assert not m3.ok and m3.score is None and m3.reason.startswith("degenerate: no translation")
    # commanded to stand still as well: nothing to fault
    ok = cc.camera_control(still, np.tile(np.eye(4), (T, 1, 1)), ROOM_K, rec)
    assert ok.ok and ok.score > 0.99


def test_non_rigid_video_is_less_consistent(room):
    """The room under a growing smooth non-rigid warp (up to 3 px): its tracks fit no rigid scene,
    so the reprojection error grows and the 3D-consistency score drops."""
    frames, c2w, rec = room
    H, W = ROOM_HW
    u, v = np.meshgrid(np.arange(W, dtype=np.float32), np.arange(H, dtype=np.float32))
    warped = []
    for i, f in enumerate(frames):
        a = 3.0 * i / (T - 1)
        du = a * np.sin(2 * np.pi * v / 90.0 + i)
        dv = a * np.cos(2 * np.pi * u / 110.0 - i)
        warped.append(cv2.remap(f, u + du, v + dv, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT))
    m_rigid = cc.consistency_3d(frames, ROOM_K, rec)
    m_warp = cc.consistency_3d(np.stack(warped), ROOM_K)
    assert m_warp.ok, m_warp.reason
    assert m_warp.raw > 3 * m_rigid.raw and m_warp.score < m_rigid.score, (m_warp.raw, m_rigid.raw)


def test_untrackable_videos_fail_with_reason(room):
    frames, c2w, _ = room
    noise = np.random.default_rng(0).integers(0, 256, size=(6,) + frames.shape[1:], dtype=np.uint8)
    m = cc.camera_control(noise, _world(c2w[:6]), ROOM_K)
    assert not m.ok and m.score is None and m.reason.startswith("tracking lost")
    shuffled = frames[np.random.default_rng(1).permutation(T)]
    m = cc.camera_control(shuffled, _world(c2w), ROOM_K)
    assert (not m.ok and m.reason) or m.score < 0.5, (m.ok, m.reason, m.score)


def test_bad_commanded_cameras_raise(room):
    frames, c2w, rec = room
    with pytest.raises(TrajectoryError, match="one w2c per frame"):
        cc.camera_control(frames, _world(c2w)[:-1], ROOM_K, rec)
    bad = _world(c2w)
    bad[3, 0, 0] = np.nan
    with pytest.raises(TrajectoryError, match="matrix 3"):
        cc.camera_control(frames, bad, ROOM_K, rec)


def test_frames_that_cannot_be_registered_are_named(room):
    """The last 3 of 16 frames replaced by noise: 13 frames (81 %) register, the metric is measured
    on them and names the others; with the last 4 replaced (75 % < 80 %) it fails and names them."""
    frames, c2w, _ = room
    noisy = frames.copy()
    noisy[-3:] = np.random.default_rng(2).integers(0, 256, size=noisy[-3:].shape, dtype=np.uint8)
    m = cc.camera_control(noisy, _world(c2w), ROOM_K)
    assert m.ok and m.details["registered"] == T - 3 and m.details["sfm"]["unregistered"] == [13, 14, 15]
    assert "frames 13-15 could not be registered" in m.details["note"]
    assert np.isnan(m.details["rotation_deg_per_frame"][-3:]).all() and m.score > 0.9
    noisy[-4] = noisy[-1]
    m = cc.camera_control(noisy, _world(c2w), ROOM_K)
    assert not m.ok and m.reason == "tracking lost: 4 of 16 frames could not be registered (frames 12-15)"
