"""The interactive camera controller against closed forms."""

import math

import numpy as np
import pytest

from star_jax.geometry.controller import (
    CameraController,
    ControllerConfig,
    parse_key_script,
    parse_key_script_file,
    rotation_yaw_pitch,
)
from star_jax.errors import InputError
from star_jax.geometry.trajectory import TrajectoryError, orbit_rel_c2w

CFG = ControllerConfig(fps=10.0, max_speed=0.5, max_accel=1.0, clearance=0.2)


def test_free_flight_accelerates_then_cruises():
    """From rest, forward: v_k = min(a dt k, v_max) (scaled by the scene), x is its running sum."""
    ctl = CameraController(CFG, scene_scale=2.0)
    path = ctl.run([{"forward"}] * 30)
    dt, a, vmax = 0.1, 1.0 * 2.0, 0.5 * 2.0
    v = np.minimum(a * dt * np.arange(1, 31), vmax)
    np.testing.assert_allclose(path[:, 2, 3], np.cumsum(v) * dt, rtol=1e-12)
    np.testing.assert_allclose(path[:, :2, 3], 0.0, atol=1e-12)
    np.testing.assert_allclose(path[:, :3, :3], np.broadcast_to(np.eye(3), (30, 3, 3)))


def test_velocity_and_acceleration_are_bounded_under_any_keys():
    rng = np.random.default_rng(0)
    keys = ["forward", "back", "left", "right", "up", "down", "yaw_left", "yaw_right", "pitch_up", "pitch_down"]
    script = [set(rng.choice(keys, size=rng.integers(0, 4), replace=False)) for _ in range(300)]
    ctl = CameraController(CFG, scene_scale=3.0)
    pos = ctl.run(script)[:, :3, 3]
    v = np.diff(np.concatenate([np.zeros((1, 3)), pos]), axis=0) * CFG.fps
    assert np.linalg.norm(v, axis=1).max() <= CFG.max_speed * 3.0 + 1e-9
    dv = np.linalg.norm(np.diff(np.concatenate([np.zeros((1, 3)), v]), axis=0), axis=1)
    assert dv.max() <= CFG.max_accel * 3.0 / CFG.fps + 1e-9


def test_turning_matches_the_orbit_convention():
    """Held yaw_right: rate ramps at max_turn_accel to max_turn_rate; R = R_y(yaw), as in orbits."""
    ctl = CameraController(CFG)
    path = ctl.run([{"yaw_right"}] * 20)
    dt, acc, rate = 0.1, CFG.max_turn_accel, CFG.max_turn_rate
    yaw = np.cumsum(np.minimum(acc * dt * np.arange(1, 21), rate)) * dt
    np.testing.assert_allclose(ctl.yaw, yaw[-1], rtol=1e-12)
    orbit = np.asarray(orbit_rel_c2w(0.0, yaw[-1], 1.0), np.float64)
    np.testing.assert_allclose(path[-1, :3, :3], orbit[:3, :3], atol=1e-6)
    # a camera that turned right and moves "forward" moves toward +x
    ctl.step({"forward"})
    assert ctl.velocity[0] > 0


def test_pitch_is_clamped():
    ctl = CameraController(CFG)
    ctl.run([{"pitch_down"}] * 100)
    assert ctl.pitch == pytest.approx(CFG.max_pitch)
    np.testing.assert_allclose(rotation_yaw_pitch(0.0, ctl.pitch)[:, 2],
                               [0.0, math.sin(CFG.max_pitch), math.cos(CFG.max_pitch)], atol=1e-12)


def test_collision_guard_stops_before_a_wall():
    """A fronto-parallel wall at depth 2: flying forward forever stops at 2 - clearance, never past."""
    depth = np.full((48, 64), 2.0)
    K = np.array([[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    ctl = CameraController(CFG, scene_scale=1.0, guard_depth=depth, guard_K=K)
    z = ctl.run([{"forward"}] * 200)[:, 2, 3]
    stop = 2.0 - CFG.clearance
    assert z.max() <= stop + 1e-12
    assert z[-1] == pytest.approx(stop, abs=1e-3)
    assert np.all(np.diff(z) >= -1e-12)  # no bounce back
    # braking: the approach slows down before the wall instead of hitting it at full speed
    v = np.diff(z) * CFG.fps
    assert v[-60:].max() < 0.5 * CFG.max_speed
    # without the guard the same keys pass straight through
    free = CameraController(CFG).run([{"forward"}] * 200)[:, 2, 3]
    assert free[-1] > 5.0


def test_key_script_parsing_and_errors():
    keys = parse_key_script("# warm up\n2 forward\n1 forward+yaw_left\n1 idle\n")
    assert keys == [{"forward"}, {"forward"}, {"forward", "yaw_left"}, set()]
    with pytest.raises(TrajectoryError, match=r"<string>:2: unknown keys \['jump'\]"):
        parse_key_script("1 forward\n3 jump")
    with pytest.raises(TrajectoryError, match=":1: expected"):
        parse_key_script("forward 3")
    with pytest.raises(ValueError, match="unknown keys"):
        CameraController(CFG).step({"fly"})


@pytest.mark.parametrize("script, msg", [
    ("2 forward\n0 forward\n", r"s.txt:2: expected a frame count >= 1, found '0'"),
    ("x forward\n", r"s.txt:1: expected a frame count >= 1, found 'x'"),
    ("-3 forward\n", r"s.txt:1: expected a frame count >= 1, found '-3'"),
    ("1.5 forward\n", r"s.txt:1: expected a frame count >= 1, found '1.5'"),
    ("3 forward yaw_left\n", r"s.txt:1: expected '<frames> <key>\[\+<key>...\]', found '3 forward yaw_left'"),
    ("# a\n\n3 forward+\n", r"s.txt:3: expected key names joined by '\+', found an empty name in 'forward\+'"),
    ("3 Forward\n", r"s.txt:1: unknown keys \['Forward'\]; known: \["),
    ("# only a comment\n", r"s.txt: expected at least one '<frames> <key>' line, found none"),
    ("", r"s.txt: expected at least one '<frames> <key>' line, found none"),
    ("999999 forward\n2 idle\n", r"s.txt:2: expected at most 1000000 frames in all, found 1000001"),
])
def test_bad_key_scripts_name_the_line(tmp_path, script, msg):
    (tmp_path / "s.txt").write_text(script)
    with pytest.raises(TrajectoryError, match=msg):
        parse_key_script_file(tmp_path / "s.txt")


def test_key_script_file_unreadable(tmp_path):
    with pytest.raises(TrajectoryError, match=r"missing.txt: cannot read key script \(No such file"):
        parse_key_script_file(tmp_path / "missing.txt")
    (tmp_path / "bin.txt").write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(TrajectoryError, match=r"bin.txt: cannot read key script"):
        parse_key_script_file(tmp_path / "bin.txt")


@pytest.mark.parametrize("field, value", [("fps", 0.0), ("fps", float("nan")), ("max_speed", -1.0),
                                          ("max_turn_rate", float("inf")), ("clearance", -0.1)])
def test_controller_config_refuses_bad_values(field, value):
    """fps = 0 used to divide by zero at the first step; a negative speed flew backwards."""
    with pytest.raises(InputError, match=rf"ControllerConfig.{field}: expected a .*number.*, found {value}"):
        ControllerConfig(**{field: value})
    assert ControllerConfig(clearance=0.0).clearance == 0.0


def test_controller_input_errors_are_input_errors():
    for bad in (0.0, float("nan")):
        with pytest.raises(InputError, match="scene_scale: expected a positive finite number"):
            CameraController(CFG, scene_scale=bad)
    with pytest.raises(InputError, match=r"CameraController.step: unknown keys \['fly'\]"):
        CameraController(CFG).step({"fly"})
    with pytest.raises(InputError, match="needs both guard_depth"):
        CameraController(CFG, guard_depth=np.ones((4, 4)))
