"""Scripted moves (navigate's --moves): the token table, good and bad, and the camera motion they
give on the interactive controller (forward along the view axis by speed x frames within the
smoothing ramp, turn-right yaws right, pitch stays bounded)."""

import numpy as np
import pytest

from star_jax.geometry.controller import (
    CameraController,
    MoveSpeeds,
    moves_controller_config,
    parse_moves,
)
from star_jax.geometry.trajectory import TrajectoryError


@pytest.mark.parametrize("text, frames, first, last", [
    ("forward:3", 3, {"forward": 1.0}, {"forward": 1.0}),
    ("forward:36 turn-right+forward:36 look-up:12", 84, {"forward": 1.0}, {"pitch_up": 1.0}),
    ("turn-left+back*0.5:2", 2, {"yaw_left": 1.0, "back": 0.5}, {"yaw_left": 1.0, "back": 0.5}),
    ("still:4 left*2e0+up:1", 5, {}, {"left": 2.0, "up": 1.0}),
    ("look-down:1 right:1 down:1 turn-left:1 still:1", 5, {"pitch_down": 1.0}, {}),
])
def test_parse_good_moves(text, frames, first, last):
    keys = parse_moves(text)
    assert len(keys) == frames and keys[0] == first and keys[-1] == last
    assert parse_moves(text.split()) == keys  # a list of tokens, as a command line gives them


def test_parse_splits_at_token_boundaries():
    keys = parse_moves("forward:2 turn-right+forward:3")
    assert keys[:2] == [{"forward": 1.0}] * 2 and keys[2:] == [{"yaw_right": 1.0, "forward": 1.0}] * 3


@pytest.mark.parametrize("text, message", [
    ("forward:36 jump:4", r"--moves: move 2 'jump:4': unknown move 'jump'; expected one of forward"),
    ("forward", r"move 1 'forward': expected 'name\[\*scale\]\[\+name...\]:frames'"),
    ("forward:0", r"move 1 'forward:0': expected a frame count in \[1, "),
    ("forward:-3", r"move 1 'forward:-3': expected 'name"),
    ("look-up:2 forward*0:3", r"move 2 'forward\*0:3': forward: expected a scale > 0 after '\*', found '0'"),
    ("forward*x:3", r"move 1 'forward\*x:3': unknown move 'forward\*x'"),
    ("forward*1e999:3", r"forward: expected a scale > 0 after '\*', found '1e999'"),
    ("forward+:3", r"move 1 'forward\+:3': unknown move ''"),
    ("still+forward:3", r"move 1 'still\+forward:3': expected 'still' alone"),
    ("forward+forward*2:3", r"expected each move once, found 'forward' twice"),
    ("Forward:3", r"unknown move 'Forward'"),
    ("", r"--moves: expected at least one move"),
    ("forward:1 left:2000000", r"move 2 'left:2000000': expected a frame count in \[1, 1000000\] in all"),
])
def test_bad_moves_name_the_token_and_its_position(text, message):
    with pytest.raises(TrajectoryError, match=message) as e:
        parse_moves(text)
    assert "\n" not in str(e.value)


def test_speeds_are_checked():
    with pytest.raises(TrajectoryError, match="moves speeds: speed"):
        MoveSpeeds(speed=0.0)
    with pytest.raises(TrajectoryError, match="max_pitch_deg: expected degrees in \\(0, 90\\)"):
        MoveSpeeds(max_pitch_deg=95.0)


SPEEDS = MoveSpeeds(speed=0.02, turn_deg=2.0, max_pitch_deg=30.0, ramp_frames=4.0)
SCALE = 2.5  # the scene's median depth, metres


def _run(text, speeds=SPEEDS):
    ctl = CameraController(moves_controller_config(speeds, fps=15.0), SCALE)
    return ctl.run(parse_moves(text))


def test_forward_moves_along_the_view_axis_by_speed_times_frames():
    path = _run("forward:36")
    pos = path[:, :3, 3]
    want = SPEEDS.speed * SCALE * 36
    assert abs(pos[-1, 2] - want) <= SPEEDS.speed * SCALE * SPEEDS.ramp_frames  # within the ramp
    assert pos[-1, 2] < want  # the ramp only ever costs distance
    np.testing.assert_allclose(pos[:, :2], 0.0, atol=1e-12)
    np.testing.assert_allclose(path[:, :3, :3], np.broadcast_to(np.eye(3), (36, 3, 3)), atol=1e-12)
    step = np.diff(pos[:, 2])
    np.testing.assert_allclose(step[10:], SPEEDS.speed * SCALE, rtol=1e-9)  # full speed after the ramp
    assert (np.diff(step) >= -1e-12).all()  # smooth: never faster than the ramp allows, never jerks back
    double = _run("forward*2:36")[-1, 2, 3]
    assert abs(double - 2 * want) <= 2 * SPEEDS.speed * SCALE * SPEEDS.ramp_frames


def test_turn_right_yaws_right_and_forward_follows_the_view():
    path = _run("turn-right:30")
    yaw = np.degrees(np.arctan2(path[:, 0, 2], path[:, 2, 2]))  # the view axis (third column) toward +x
    assert yaw[-1] > 0 and abs(yaw[-1] - SPEEDS.turn_deg * 30) <= SPEEDS.turn_deg * SPEEDS.ramp_frames
    assert (np.diff(yaw) >= 0).all()
    np.testing.assert_allclose(path[:, :3, 3], 0.0, atol=1e-12)  # turning in place
    left = _run("turn-left:30")
    np.testing.assert_allclose(np.degrees(np.arctan2(left[-1, 0, 2], left[-1, 2, 2])), -yaw[-1], atol=1e-9)
    # turn right, then walk forward: the camera moves toward +x (to the right of where it started)
    walk = _run("turn-right:45 forward:30")
    assert walk[-1, 0, 3] > 0.5 * abs(walk[-1, 2, 3]) > 0
    view = walk[-1, :3, 2]
    move = walk[-1, :3, 3] - walk[44, :3, 3]
    assert np.dot(move / np.linalg.norm(move), view) > 0.999  # along the turned view axis


def test_pitch_stays_bounded():
    path = _run("look-up:60 look-down:100")
    pitch = np.degrees(np.arcsin(-path[:, 1, 2]))  # > 0: the view axis tilts up (toward -y)
    assert pitch.max() == pytest.approx(SPEEDS.max_pitch_deg, abs=1e-9)
    assert pitch.min() == pytest.approx(-SPEEDS.max_pitch_deg, abs=1e-9)
    assert np.argmax(pitch) < 60 and pitch[59] == pytest.approx(SPEEDS.max_pitch_deg)
    assert (np.abs(pitch) <= SPEEDS.max_pitch_deg + 1e-9).all()


def test_still_coasts_to_a_stop():
    path = _run("forward:20 still:10")
    v = np.diff(path[:, 2, 3])
    assert v[19] > 0 and v[-1] == pytest.approx(0.0, abs=1e-12) and (np.diff(v[19:]) <= 1e-12).all()
