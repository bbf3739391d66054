"""Trajectory parsing, interpolation and orbit / dolly geometry, with closed-form expectations."""

import os

import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.geometry import (
    TrajectoryError,
    foreground_depth,
    interpolate_keyframes,
    invert_rigid,
    keyframes_to_rel_c2w,
    load_w2c_file,
    orbit_rel_c2w,
    parse_keyframe_file,
    parse_keyframe_text,
    project,
    source_frame_indices,
    target_w2c,
    transform_points,
)


def test_parse_shared_trajectories(shared_data):
    circle = parse_keyframe_file(os.path.join(shared_data, "trajectories", "x_y_circle_cycle.txt"))
    assert not circle.is_dolly
    assert circle.pitch_deg.max() == 20 and circle.yaw_deg.min() == -20
    assert np.all(circle.displacement == 1)
    zoom = parse_keyframe_file(os.path.join(shared_data, "trajectories", "zoom_out_in.txt"))
    assert zoom.is_dolly and zoom.displacement.min() == -1 and zoom.displacement.max() == 1


@pytest.mark.parametrize(
    "text, where",
    [
        ("0 1\n0 1\n", "expected 3 non-empty lines"),
        ("0 1\n0 x\n1 1\n", "<string>:2: yaw (degrees) line has a non-number 'x'"),
        ("0 1\n\n0 1\n1 nan\n", "<string>:4: displacement line has a non-finite"),
    ],
)
def test_malformed_keyframes_name_the_line(text, where):
    with pytest.raises(TrajectoryError, match=where.replace("(", r"\(").replace(")", r"\)")):
        parse_keyframe_text(text)


def test_unreadable_trajectory_file(tmp_path):
    with pytest.raises(TrajectoryError, match="cannot read"):
        parse_keyframe_file(tmp_path / "missing.txt")


def test_linear_interpolation_closed_form():
    out = interpolate_keyframes([0.0, 10.0, 0.0], 5)
    np.testing.assert_allclose(out, [0, 5, 10, 5, 0])
    np.testing.assert_allclose(interpolate_keyframes([3.0], 4), [3, 3, 3, 3])
    out = interpolate_keyframes([0, 1, 2, 3, 4], 9, mode="smooth")  # a line: spline is exact
    np.testing.assert_allclose(out, np.linspace(0, 4, 9), atol=1e-9)


def _centre_pixel_and_distance(rel_c2w, r):
    K = jnp.asarray([[100.0, 0, 50], [0, 100.0, 40], [0, 0, 1]])
    target = jnp.asarray([[0.0, 0.0, r]])
    uv, _ = project(transform_points(invert_rigid(rel_c2w), target), K)
    dist = jnp.linalg.norm(rel_c2w[:3, 3] - target[0])
    return np.asarray(uv[0]), float(dist)


@pytest.mark.parametrize("pitch, yaw", [(0.3, 0.0), (0.0, -0.5), (0.2, 0.4), (-0.35, 0.1)])
def test_orbit_keeps_target_centred_at_constant_radius(pitch, yaw):
    r = 2.5
    rel = orbit_rel_c2w(pitch, yaw, r)
    uv, dist = _centre_pixel_and_distance(rel, r)
    np.testing.assert_allclose(uv, [50, 40], atol=1e-4)
    np.testing.assert_allclose(dist, r, rtol=1e-6)
    R = np.asarray(rel[:3, :3])
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)


def test_orbit_directions_follow_the_file_format():
    up = orbit_rel_c2w(np.deg2rad(10.0), 0.0, 1.0)
    left = orbit_rel_c2w(0.0, np.deg2rad(10.0), 1.0)
    assert up[1, 3] < 0 and abs(float(up[0, 3])) < 1e-7  # OpenCV y is down: orbit up = -y
    assert left[0, 3] < 0 and abs(float(left[1, 3])) < 1e-7  # orbit left = -x
    np.testing.assert_allclose(up[1, 3], -np.sin(np.deg2rad(10.0)), rtol=1e-6)


def test_dolly_and_rotation_only():
    traj = parse_keyframe_text("0 0\n0 0\n0 -1 1\n")
    rel = np.asarray(keyframes_to_rel_c2w(traj, 5, foreground_depth=2.0))
    np.testing.assert_allclose(rel[:, :3, :3], np.broadcast_to(np.eye(3), (5, 3, 3)), atol=1e-7)
    np.testing.assert_allclose(rel[:, :3, 3], [[0, 0, 0], [0, 0, -1], [0, 0, -2], [0, 0, 0], [0, 0, 2]], atol=1e-6)
    orbit = parse_keyframe_text("0 20\n0 -20\n1 1\n")
    rot = np.asarray(keyframes_to_rel_c2w(orbit, 3, 2.0, rotation_only=True))
    np.testing.assert_allclose(rot[:, :3, 3], 0.0)
    full = np.asarray(keyframes_to_rel_c2w(orbit, 3, 2.0))
    np.testing.assert_allclose(rot[:, :3, :3], full[:, :3, :3])
    with pytest.raises(TrajectoryError, match="foreground depth"):
        keyframes_to_rel_c2w(orbit, 3, 0.0)


def test_target_w2c_relative_to_first_or_time_aligned_source():
    rel = orbit_rel_c2w(jnp.array([0.0, 0.1, 0.2]), 0.0, 1.0)
    src_c2w = np.tile(np.eye(4, dtype=np.float32), (3, 1, 1))
    src_c2w[:, 0, 3] = [0.0, 1.0, 2.0]  # the source camera slides along x
    static = np.asarray(target_w2c(rel, jnp.asarray(src_c2w), relative_to_source=False))
    moving = np.asarray(target_w2c(rel, jnp.asarray(src_c2w), relative_to_source=True))
    np.testing.assert_allclose(np.linalg.inv(static)[:, 0, 3], [0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(np.linalg.inv(moving)[:, 0, 3], [0, 1, 2], atol=1e-6)
    np.testing.assert_allclose(np.linalg.inv(moving), src_c2w @ np.asarray(rel), atol=1e-5)
    with pytest.raises(TrajectoryError, match="source pose per target"):
        target_w2c(rel, jnp.asarray(src_c2w[:2]), relative_to_source=True)


def test_foreground_depth_is_median_of_central_window():
    d = np.full((30, 30), 10.0)
    d[10:20, 10:20] = 2.0
    d[15, 15] = 0.0  # hole ignored
    assert foreground_depth(d) == 2.0
    with pytest.raises(TrajectoryError, match="no valid"):
        foreground_depth(np.zeros((4, 4)))


def test_freeze_frame_and_time_aligned_indices():
    np.testing.assert_array_equal(source_frame_indices(5, 3), [0, 1, 2, 2, 2])
    np.testing.assert_array_equal(source_frame_indices(4, 10, freeze_frame=7), [7, 7, 7, 7])
    with pytest.raises(TrajectoryError, match="freeze_frame"):
        source_frame_indices(4, 3, freeze_frame=3)


def test_w2c_file_formats(tmp_path):
    rel = np.asarray(orbit_rel_c2w(jnp.linspace(0, 0.3, 4), 0.1, 1.0), np.float64)
    w2c = np.linalg.inv(rel)
    np.save(tmp_path / "a.npy", w2c)
    np.savetxt(tmp_path / "b.txt", w2c.reshape(4, 16))  # one matrix per line
    np.savetxt(tmp_path / "c.txt", w2c[:, :3].reshape(-1, 4))  # DA3 stacked 3x4 rows
    np.savetxt(tmp_path / "d.txt", w2c.reshape(-1, 4))  # stacked 4x4 rows
    for name in ("a.npy", "b.txt", "c.txt", "d.txt"):
        np.testing.assert_allclose(load_w2c_file(tmp_path / name), w2c, atol=1e-6, err_msg=name)


def test_bad_w2c_files_are_named(tmp_path):
    (tmp_path / "ragged.txt").write_text("1 0 0 0\n0 1 0\n")
    with pytest.raises(TrajectoryError, match=r"ragged.txt:2: expected 4 numbers"):
        load_w2c_file(tmp_path / "ragged.txt")
    bad = np.tile(np.eye(4), (2, 1, 1))
    bad[1, 0, 0] = 3.0
    np.save(tmp_path / "scaled.npy", bad)
    with pytest.raises(TrajectoryError, match="matrix 1 is not a rigid transform"):
        load_w2c_file(tmp_path / "scaled.npy")
    nan = np.tile(np.eye(4), (3, 1, 1))
    nan[2, 1, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(TrajectoryError, match="matrix 2 has non-finite"):
        load_w2c_file(tmp_path / "nan.npy")
