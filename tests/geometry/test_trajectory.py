"""Trajectory parsing, interpolation and orbit / dolly geometry, with closed-form expectations."""

import json
import os

import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.geometry import (
    TrajectoryError,
    intrinsics_matrix,
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
from star_jax.geometry.trajectory import (
    check_interpolation_mode,
    check_intrinsics,
    check_positive_finite,
    check_w2c,
    load_intrinsics_file,
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
        ("0 1\n0 x\n1 1\n", "<string>:2: yaw (degrees) line: expected numbers, found 'x'"),
        ("0 1\n\n0 1\n1 nan\n", "<string>:4: displacement line: expected finite numbers, found 'nan'"),
        ("0 1\n0 1\n1 inf\n", "<string>:3: displacement line: expected finite numbers, found 'inf'"),
        ("", "expected 3 non-empty lines (pitch, yaw, displacement), found an empty file"),
        ("  \n\n", "found an empty file"),
        ("0\n0\n\n1\n2\n", "found 4 (lines 1, 2, 4, 5)"),
        ("0 1,5\n0\n1\n", "<string>:1: pitch (degrees) line: expected numbers, found '1,5'"),
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
    with pytest.raises(TrajectoryError, match="matrix 1: not a rigid transform"):
        load_w2c_file(tmp_path / "scaled.npy")
    nan = np.tile(np.eye(4), (3, 1, 1))
    nan[2, 1, 3] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    with pytest.raises(TrajectoryError, match="nan.npy: matrix 2: expected finite numbers, found nan"):
        load_w2c_file(tmp_path / "nan.npy")


def test_trajectory_file_errors_name_the_file_and_line(tmp_path):
    p = tmp_path / "t.txt"
    p.write_text("0 10\n0 -10\n1 x 1\n")
    with pytest.raises(TrajectoryError, match=r"t.txt:3: displacement line: expected numbers, found 'x'"):
        parse_keyframe_file(p)
    p.write_bytes(b"\xff\xfe\x00 binary")
    with pytest.raises(TrajectoryError, match=r"t.txt: cannot read trajectory file"):
        parse_keyframe_file(p)


def test_unknown_interpolation_mode_is_refused_even_for_few_keyframes():
    """Before: a typo ('smoth') was only caught with more than 3 keyframes, else silently linear."""
    assert check_interpolation_mode("smooth") == "smooth"
    for k in ([1.0], [0.0, 1.0], [0.0, 1.0, 2.0, 3.0, 4.0]):
        with pytest.raises(TrajectoryError, match=r"interpolation mode: expected one of 'linear', 'smooth', found 'smoth'"):
            interpolate_keyframes(k, 5, mode="smoth")
    traj = parse_keyframe_text("0 10\n0 0\n1\n")
    with pytest.raises(TrajectoryError, match="found 'cubic'"):
        keyframes_to_rel_c2w(traj, 5, 1.0, mode="cubic")


def test_check_positive_finite():
    assert check_positive_finite(2, "x") == 2.0
    for bad in (0, -1, float("nan"), float("inf"), "two", None, True):
        with pytest.raises(TrajectoryError, match=r"^x: expected a positive finite number, found"):
            check_positive_finite(bad, "x")
    class OtherError(InputError):
        pass

    with pytest.raises(OtherError, match=r"^y: expected a positive finite number, found -2"):
        check_positive_finite(-2, "y", OtherError)


def _rigid(n):
    rel = np.asarray(orbit_rel_c2w(jnp.linspace(0, 0.3, n), 0.2, 1.5), np.float64)
    return np.linalg.inv(rel)


def _mirror(w2c, i):
    out = w2c.copy()
    out[i, :3, 0] *= -1  # flip one axis: R R^T = I still, det R = -1
    return out


def test_mirror_matrix_is_refused_in_every_format(tmp_path):
    """A det -1 matrix passed the old R R^T = I check and mirrored the render."""
    w2c = _mirror(_rigid(4), 2)
    R = w2c[2, :3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)  # orthonormal: only det tells
    np.save(tmp_path / "m.npy", w2c)
    with pytest.raises(TrajectoryError, match=r"m.npy: matrix 2: expected a proper rotation \(det R = \+1\), "
                                              r"found det R = -1.0000 \(a mirror"):
        load_w2c_file(tmp_path / "m.npy")
    (tmp_path / "m.json").write_text(json.dumps({"w2c": w2c.tolist()}))
    with pytest.raises(TrajectoryError, match=r"m.json: matrix 2: expected a proper rotation"):
        load_w2c_file(tmp_path / "m.json")
    # text: the error names the matrix's lines (a comment line shifts them)
    rows = w2c[:, :3].reshape(-1, 4)
    (tmp_path / "m.txt").write_text("# DA3 extrinsics\n" + "\n".join(" ".join(f"{v:.9f}" for v in r) for r in rows))
    with pytest.raises(TrajectoryError, match=r"m.txt:8: matrix 2 \(lines 8-10\): expected a proper rotation"):
        load_w2c_file(tmp_path / "m.txt")
    np.savetxt(tmp_path / "one.txt", w2c.reshape(4, 16))
    with pytest.raises(TrajectoryError, match=r"one.txt:3: matrix 2: expected a proper rotation"):
        load_w2c_file(tmp_path / "one.txt")
    # the unmirrored matrices pass, in float32 text precision too
    np.savetxt(tmp_path / "ok.txt", _rigid(4).astype(np.float32).reshape(4, 16))
    np.testing.assert_allclose(load_w2c_file(tmp_path / "ok.txt"), _rigid(4), atol=1e-6)


@pytest.mark.parametrize("edit, msg", [
    (lambda a: a.__setitem__((1, 3, 2), 0.5), r"matrix 1: expected last row 0 0 0 1, found 0 0 0.5 1"),
    (lambda a: a.__setitem__((3, slice(0, 3), slice(0, 3)), a[3, :3, :3] * 2), r"matrix 3: not a rigid transform"),
    (lambda a: a.__setitem__((0, 2, 3), np.inf), r"matrix 0: expected finite numbers, found inf"),
    (lambda a: a.__setitem__((2, slice(0, 3), slice(0, 3)), -a[2, :3, :3]), r"matrix 2: .* found det R = -1.0000"),
])
def test_check_w2c_names_the_matrix(edit, msg):
    a = _rigid(4)
    assert check_w2c(a, "cams").shape == (4, 4, 4)
    edit(a)
    with pytest.raises(TrajectoryError, match="^cams: " + msg):
        check_w2c(a, "cams")


@pytest.mark.parametrize("content, msg", [
    ("", r"e.txt: no camera matrices found"),
    ("# nothing\n\n", r"e.txt: no camera matrices found"),
    ("1 0 0 0\n0 1 0 0\n0 0 1 zero\n", r"e.txt:3: expected numbers, found 'zero'"),
    ("1 0 0\n0 1 0\n0 0 1\n0 0 0\n0 0 0\n", r"e.txt: expected lines of 16 or 12 numbers .* found 5 lines of 3"),
    ("1 0 0 0 0 1 0 0 0 0 1 0\n1 0 0 0 0 1 0 0 0 0 1\n", r"e.txt:2: expected 12 numbers \(as line 1\), found 11"),
])
def test_malformed_w2c_text_names_the_line(tmp_path, content, msg):
    (tmp_path / "e.txt").write_text(content)
    with pytest.raises(TrajectoryError, match=msg):
        load_w2c_file(tmp_path / "e.txt")


def test_intrinsics_formats_and_checks(tmp_path):
    K = np.asarray(intrinsics_matrix([500.0, 510.0], [505.0, 515.0], [320.0, 321.0], [240.0, 241.0]), np.float64)
    np.savetxt(tmp_path / "rows.txt", K.reshape(-1, 3))
    np.savetxt(tmp_path / "flat.txt", K.reshape(-1, 9))
    np.save(tmp_path / "k.npy", K)
    (tmp_path / "k.json").write_text(json.dumps({"K": K[0].tolist()}))
    for name in ("rows.txt", "flat.txt", "k.npy"):
        np.testing.assert_allclose(load_intrinsics_file(tmp_path / name), K, err_msg=name)
    np.testing.assert_allclose(load_intrinsics_file(tmp_path / "k.json"), K[:1])
    # 4 numbers a line used to reshape silently into 3x3 matrices when the count divided by 9
    (tmp_path / "four.txt").write_text("\n".join(["500 500 320 240"] * 9))
    with pytest.raises(TrajectoryError, match=r"four.txt: expected 3 rows of 3 numbers .* found 9 lines of 4"):
        load_intrinsics_file(tmp_path / "four.txt")
    bad = K.copy()
    bad[1, 1, 1] = -505.0
    np.savetxt(tmp_path / "neg.txt", bad.reshape(-1, 3))
    with pytest.raises(TrajectoryError, match=r"neg.txt:4: matrix 1: expected focal lengths fx, fy > 0, found fx = 510, fy = -505"):
        load_intrinsics_file(tmp_path / "neg.txt")
    bad = K[0].copy()
    bad[2] = [0, 0, 2]
    with pytest.raises(TrajectoryError, match=r"K: matrix 0: expected \[\[fx, s, cx\], \[0, fy, cy\], \[0, 0, 1\]\]"):
        check_intrinsics(bad, "K")
    bad[2, 2], bad[0, 2] = 1, np.nan
    with pytest.raises(TrajectoryError, match=r"K: matrix 0: expected finite intrinsics"):
        check_intrinsics(bad, "K")
    with pytest.raises(TrajectoryError, match=r"K: expected \(3, 3\) or \(N, 3, 3\) intrinsics, found shape \(3, 4\)"):
        check_intrinsics(np.zeros((3, 4)), "K")


def test_freeze_frame_error_states_the_range():
    with pytest.raises(TrajectoryError, match=r"freeze_frame: expected a reference frame index in \[0, 3\), found -2"):
        source_frame_indices(4, 3, freeze_frame=-2)
