"""clips.check_clip / check_masks: what they accept and return, each refusal's one-line message,
and that every estimator that takes frames (evaluate, ground_truth, flow, sfm, report) refuses a
bad clip with that same message."""

import numpy as np
import pytest

from star_jax import evaluate as ev
from star_jax.errors import InputError
from star_jax.evaluation import flow as fl
from star_jax.evaluation import ground_truth as gt
from star_jax.evaluation import sfm
from star_jax.evaluation.clips import RANGE_SLACK, check_clip, check_masks
from star_jax.evaluation.report import write_report
from star_jax.io.files import to_uint8


def _clip(t=3, h=12, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def test_accepted_clips_and_conversion():
    x = _clip()
    assert check_clip(x, "frames") is x and check_clip(x, "frames", uint8=True) is x  # uint8 passes untouched
    f = np.random.default_rng(1).random((2, 4, 5, 3))
    f[0, 0, 0] = [0.0, 1.0, 0.5 / 255.0]  # a tie at half a step rounds up, as io.files.to_uint8
    assert check_clip(f, "frames") is f  # float kept as given without uint8
    np.testing.assert_array_equal(check_clip(f, "frames", uint8=True), to_uint8(f))
    assert check_clip(f, "frames", uint8=True)[0, 0, 0].tolist() == [0, 255, 1]
    edge = np.full((1, 2, 2, 3), 1.0 + RANGE_SLACK / 2)  # decoder round-off just past 1 is clipped, not refused
    assert check_clip(edge, "frames", uint8=True).max() == 255
    listed = check_clip([x[0], x[1]], "frames", x[:2].shape)  # a list of frames is a clip
    np.testing.assert_array_equal(listed, x[:2])
    m = check_masks(np.ones((3, 12, 16), np.uint8), x.shape)
    assert m.dtype == bool and m.all()


@pytest.mark.parametrize("bad, kwargs, message", [
    (_clip()[0], {}, "frames: expected a clip (T, H, W, 3), found shape (12, 16, 3)"),
    (_clip()[..., :2], {}, "frames: expected a clip (T, H, W, 3), found shape (3, 12, 16, 2)"),
    (_clip(t=0), {}, "frames: expected at least 1 frame, found 0"),
    (_clip(t=2), {"min_frames": 3}, "frames: expected at least 3 frames, found 2"),
    (_clip(w=15), {"shape": (3, 12, 16, 3)}, "frames: expected the frames' shape (3, 12, 16, 3), found (3, 12, 15, 3)"),
    ([_clip()[0], _clip(h=10)[0]], {}, "frames: expected frames of one size (H, W, 3), found sizes [(10, 16, 3), "
                                       "(12, 16, 3)]"),
    (_clip().astype(np.int32), {}, "frames: expected uint8 (or float in [0, 1]) frames, found dtype int32"),
    (np.where(np.arange(3)[:, None, None, None] == 1, np.inf, 0.5) * np.ones((3, 12, 16, 3)), {},
     "frames: frame 1: expected values in [0, 1], found inf"),
    (np.where(np.arange(3)[:, None, None, None] == 2, -0.5, 0.5) * np.ones((3, 12, 16, 3)), {},
     "frames: frame 2: expected values in [0, 1], found -0.5"),
])
def test_each_refusal_is_one_line(bad, kwargs, message):
    with pytest.raises(InputError) as e:
        check_clip(bad, "frames", **kwargs)
    assert str(e.value) == message


def test_every_estimator_refuses_with_the_same_message():
    x = _clip(t=4, h=40, w=48).astype(np.float64) / 255.0
    x[2, 5, 5, 1] = 1.5
    want = "frame 2: expected values in [0, 1], found 1.5"
    calls = {"frames": lambda: ev.evaluate(x, skip=("geometry", "flow")),
             "sfm: frames": lambda: sfm.reconstruct(x),
             "report: frames": lambda: write_report("/nonexistent/r.png", [], x)}
    for name, call in calls.items():
        with pytest.raises(InputError) as e:
            call()
        assert str(e.value) == f"{name}: {want}"
    with pytest.raises(InputError) as e:
        gt.ground_truth_metrics(_clip(t=4, h=40, w=48), x)
    assert str(e.value) == f"truth: {want}"
    assert fl.motion_magnitude(x).reason == f"frames: {want}"  # flow fails the metric with the message
    with pytest.raises(InputError) as e:
        fl.flows(x)
    assert str(e.value) == f"flows: frames: {want}"
