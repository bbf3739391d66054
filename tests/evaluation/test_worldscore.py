"""WorldScore's normalisations against values worked out by hand from its aspect table."""

import math

import pytest

from star_jax.evaluation import worldscore as ws


def test_minmax_clips_and_flips():
    assert ws.minmax_score(0.0, ws.FLOW_AEPE) == 1.0
    assert ws.minmax_score(1.192 / 2, ws.FLOW_AEPE) == pytest.approx(0.5)
    assert ws.minmax_score(5.0, ws.FLOW_AEPE) == 0.0  # clipped at the empirical max
    assert ws.minmax_score(0.9612, ws.SMOOTH_SSIM) == pytest.approx(0.5)  # higher is better
    assert ws.minmax_score(0.5, ws.SMOOTH_SSIM) == 0.0


def test_camera_control_is_the_geometric_mean():
    assert ws.camera_control_score(7.5, 0.25) == pytest.approx(0.5)
    assert ws.camera_control_score(3.0, 0.1) == pytest.approx(math.sqrt(0.8 * 0.8))
    assert ws.camera_control_score(20.0, 0.0) == 0.0  # one component at its clip zeroes the score


def test_motion_scores():
    # z = 0 of the reference distribution sits at 0.25 + 0.5 * 0.8638 / 3.6136
    assert ws.motion_magnitude_score(3.2425) == pytest.approx(0.25 + 0.5 * 0.8638 / 3.6136)
    assert ws.motion_magnitude_score(0.0) == pytest.approx(0.25 + 0.5 * (-3.2425 / 3.4505 + 0.8638) / 3.6136)
    assert ws.motion_magnitude_score(1e6) == 1.0
    assert ws.motion_smoothness_score(0.0, 1.0) == 1.0
    assert ws.motion_smoothness_score(82.4014 / 2, 0.9612) == pytest.approx(0.5)
    assert ws.motion_smoothness_score(0.0, 1.0, lpips=0.0228) == pytest.approx(2 / 3)


def test_aggregate_leaves_failures_out_and_says_so():
    ms = [ws.Metric("camera_control", {"rotation_deg": 7.5, "translation": 0.25}, 0.5),
          ws.Metric("photometric_consistency", 0.0, 1.0),
          ws.Metric.failed("3d_consistency", "fewer than 3 frames")]
    agg = ws.aggregate(ms)
    assert agg["score"] == pytest.approx(75.0)
    assert agg["failed"] == {"3d_consistency": "fewer than 3 frames"} and agg["scored_zero"] == []
    assert "motion_smoothness" in agg["not_measured"] and len(agg["not_measured"]) == 7
    js = ms[2].to_json()
    assert js["ok"] is False and js["raw"] is None and js["score"] is None
    assert ws.aggregate([ms[2]])["score"] is None


def test_a_video_that_breaks_tracking_scores_zero_there():
    ms = [ws.Metric("photometric_consistency", 0.0, 1.0),
          ws.Metric.failed("camera_control", "tracking lost: frames 3-9 could not be registered"),
          ws.Metric.failed("3d_consistency", "degenerate: no translation to triangulate")]
    agg = ws.aggregate(ms)
    assert agg["scored_zero"] == ["camera_control"] and agg["aspects"]["camera_control"] == 0.0
    assert agg["score"] == pytest.approx(50.0)  # the degenerate aspect is left out, the broken one counts 0
    assert set(agg["failed"]) == {"camera_control", "3d_consistency"}
