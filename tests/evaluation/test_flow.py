"""Flow-based WorldScore metrics (DIS flow) against known answers: a static scene rendered twice,
textures shifted by known sub-pixel and integer amounts (exact Fourier shifts), an occluding
object, constant-velocity vs jittered motion, and a float64 NumPy twin of WorldScore's
forward-backward error."""

import glob
import os

import numpy as np
import pytest
from scipy import ndimage

from star_jax.errors import InputError
from star_jax.evaluation import flow as fl
from star_jax.evaluation import worldscore as ws
from star_jax.io.video import VideoError

SEVEN_SCENES = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "shared", "data",
                                             "rgbd_7scenes_redkitchen"))


def texture(h, w, seed=0, sigma=2.0):
    """Seeded blurred noise (h, w, 3), zero mean unit std, periodic (so Fourier shifts are exact)."""
    rng = np.random.default_rng(seed)
    n = np.stack([ndimage.gaussian_filter(rng.standard_normal((h, w)), sigma, mode="wrap") for _ in range(3)], -1)
    return (n - n.mean()) / n.std()


def shifted(tex, sx, sy):
    """The texture moved by (+sx, +sy) pixels (band-limited, periodic) as uint8 RGB."""
    f = np.fft.fft2(tex, axes=(0, 1))
    out = [np.real(np.fft.ifft2(ndimage.fourier_shift(f[..., c], (sy, sx)))) for c in range(tex.shape[-1])]
    return np.clip(128 + 50 * np.stack(out, -1), 0, 255).round().astype(np.uint8)


def fb_error_twin(forward, backward, crop):
    """WorldScore's forward-backward error written pixel by pixel in float64."""
    f = np.asarray(forward, np.float64)[crop:-crop, crop:-crop]
    b = np.asarray(backward, np.float64)[crop:-crop, crop:-crop]
    h, w = f.shape[:2]
    total = 0.0
    for y in range(h):
        for x in range(w):
            qx, qy = x + f[y, x, 0], y + f[y, x, 1]
            ix = min(max(int(np.round(qx)), 0), w - 1)
            iy = min(max(int(np.round(qy)), 0), h - 1)
            total += np.hypot(qx + b[iy, ix, 0] - x, qy + b[iy, ix, 1] - y)
    return total / (h * w)


def test_fb_error_equals_float64_twin():
    rng = np.random.default_rng(1)
    h, w = 40, 56
    fwd = np.stack([ndimage.gaussian_filter(rng.normal(0, 6, (h, w)), 3) for _ in range(2)], -1)
    bwd = -fwd + rng.normal(0, 0.7, (h, w, 2))
    fwd[0, :] += 30.0  # some points leave the crop: their lookups are clipped into it
    for crop in (3, 15):
        got = fl.forward_backward_error(fwd.astype(np.float32), bwd.astype(np.float32), crop)
        assert got == pytest.approx(fb_error_twin(fwd.astype(np.float32), bwd.astype(np.float32), crop), rel=1e-5)
    # a perfectly consistent pair: a constant flow and its negation
    const = np.full((h, w, 2), 1.5, np.float32)
    assert fl.forward_backward_error(const, -const, 5) == pytest.approx(0.0, abs=1e-6)


def test_static_scene_rendered_twice():
    tex = texture(96, 128)
    frame = shifted(tex, 0, 0)
    noise = np.random.default_rng(2).integers(-2, 3, (5, *frame.shape))
    for frames in (np.stack([frame] * 5), np.clip(frame + noise, 0, 255).astype(np.uint8)):
        fs = fl.flows(frames)
        pc = fl.photometric_consistency(frames, fs)
        mm = fl.motion_magnitude(frames, fs)
        assert pc.ok and pc.raw < 0.05 and pc.score > 0.95, pc
        assert len(pc.details["per_pair"]) == 4
        assert mm.ok and mm.raw < 0.1
    # float frames in [0, 1] are the same frames
    moving = np.stack([shifted(tex, 1.5 * t, 0) for t in range(3)])
    assert fl.photometric_consistency(moving / 255.0).raw == fl.photometric_consistency(moving).raw


@pytest.mark.parametrize("shift", [(0.25, 0.0), (0.5, 0.5), (2.3, -1.7), (-3.0, 1.0)])
def test_known_shift_is_recovered(shift):
    sx, sy = shift
    tex = texture(120, 160, seed=3)
    frames = np.stack([shifted(tex, sx * t, sy * t) for t in range(3)])
    fs = fl.flows(frames)
    interior = fs.forward[:, 20:-20, 20:-20]
    assert np.abs(interior[..., 0] - sx).max() < 0.1 and np.abs(interior[..., 1] - sy).max() < 0.1
    assert np.abs(fs.backward[:, 20:-20, 20:-20] + np.array([sx, sy])).max() < 0.1
    mm = fl.motion_magnitude(frames, fs)
    assert mm.raw == pytest.approx(np.hypot(sx, sy), abs=0.06)
    assert mm.score == pytest.approx(ws.motion_magnitude_score(mm.raw))
    pc = fl.photometric_consistency(frames, fs)
    assert pc.raw < 0.05  # a pure translation is forward-backward consistent


def test_flow_units_are_scaled_back_from_the_working_size():
    tex = texture(120, 160, seed=4)
    frames = np.stack([shifted(tex, 4.0 * t, -2.0 * t) for t in range(2)])
    fs = fl.flows(frames, fl.FlowSettings(max_side=80))  # DIS runs at 60x80, flows come back at 120x160
    assert fs.work_hw == (60, 80) and fs.forward.shape == (1, 120, 160, 2)
    interior = fs.forward[0, 24:-24, 24:-24]
    assert np.median(interior[..., 0]) == pytest.approx(4.0, abs=0.15)
    assert np.median(interior[..., 1]) == pytest.approx(-2.0, abs=0.15)


def occluding_square(moving_background: bool, step: int = 2):
    """A textured square moving `step` px a frame over a textured background that either stays (the
    square covers and uncovers it: occlusion) or moves with it (no occlusion). (DIS tracks the
    square at 2-5 px a frame; at 10 px between frames it loses it in these 96x128 frames.)"""
    bg, fg = texture(96, 128, seed=5), texture(96, 128, seed=6, sigma=1.5)
    frames = []
    for t in range(5):
        img = shifted(bg, step * t if moving_background else 0.0, 0.0)
        img[30:66, 30 + step * t:66 + step * t] = shifted(fg, step * t, 0.0)[30:66, 30 + step * t:66 + step * t]
        frames.append(img)
    return np.stack(frames)


def test_occlusion_raises_the_forward_backward_error():
    with_occlusion = fl.photometric_consistency(occluding_square(False))
    without = fl.photometric_consistency(occluding_square(True))
    assert with_occlusion.ok and without.ok
    assert with_occlusion.raw > 0.02 and with_occlusion.raw > 5 * without.raw, (with_occlusion.raw, without.raw)
    # the square is tracked: the interpolated midpoint errs only along its edges
    frames = occluding_square(False)
    fs = fl.flows(frames[0::2])
    mid = fl.interpolate_midpoint(frames[0], frames[2], fs.forward[0], fs.backward[0])
    err = np.abs(mid.astype(float) - frames[1]).mean(-1)
    assert err[36:60, 38:62].mean() < 0.5 and err.mean() < 2.0 and err[26:70, 24:74].max() > 10


def test_constant_velocity_is_smooth_and_jitter_is_not():
    tex = texture(96, 128, seed=7)
    jumps = np.random.default_rng(8).uniform(-4, 4, (9, 2))
    steady = np.stack([shifted(tex, 1.5 * t, 0.5 * t) for t in range(9)])
    jittery = np.stack([shifted(tex, 1.5 * t + jumps[t, 0], 0.5 * t + jumps[t, 1]) for t in range(9)])
    good, bad = fl.motion_smoothness(steady), fl.motion_smoothness(jittery)
    assert good.ok and bad.ok
    assert len(good.details["per_triplet"]["ssim"]) == 4  # odd frames 1, 3, 5, 7
    assert good.score > 0.9, good
    assert bad.score < good.score - 0.4, (good.score, bad.score)
    assert bad.raw["mse"] > 10 * good.raw["mse"] and bad.raw["ssim"] < good.raw["ssim"]
    assert good.score == pytest.approx(ws.motion_smoothness_score(good.raw["mse_worldscore"], good.raw["ssim"]))
    assert good.details["lpips"] is None


def test_midpoint_of_a_translation_is_the_translated_frame():
    tex = texture(96, 128, seed=9)
    f0, f1, f2 = (shifted(tex, 3.0 * t, -1.0 * t) for t in range(3))
    fs = fl.flows(np.stack([f0, f2]))
    mid = fl.interpolate_midpoint(f0, f2, fs.forward[0], fs.backward[0])
    err = np.abs(mid.astype(float) - f1)[10:-10, 10:-10]
    assert err.mean() < 1.5 and np.abs(f0.astype(float) - f1)[10:-10, 10:-10].mean() > 10 * err.mean()


def test_worldscore_mse_wraps_like_uint8_arithmetic():
    a = np.full((4, 4, 3), 100, np.uint8)
    assert fl.worldscore_mse(a + 3, a) == 9.0
    assert fl.worldscore_mse(a, a + 3) == 9.0  # -3 wraps to 253, 253 ** 2 = 9 mod 256
    assert fl.worldscore_mse(a + 16, a) == 0.0  # 256 mod 256
    assert fl.worldscore_mse(a + 17, a) == 33.0  # 289 mod 256


def test_failures_are_explicit():
    tex = texture(64, 80)
    frame = shifted(tex, 0, 0)
    cases = {  # three frames each, so that smoothness fails for the same reason; clips.check_clip's messages
        "frames: expected at least 2 frames, found 1": [frame],
        "frames: expected frames of one size (H, W, 3), found sizes [(60, 80, 3), (64, 80, 3)]":
            [frame, frame, frame[:60]],
        "frames: frame 2: expected values in [0, 1], found nan":
            np.stack([frame / 255.0] * 2 + [np.full(frame.shape, np.nan)]),
        "frames: frame 0: expected values in [0, 1], found ": np.stack([frame * 1.0] * 3),
        "frames: expected uint8 (or float in [0, 1]) frames, found dtype int64": np.stack([frame.astype(np.int64)] * 3),
        "frames: frame 2: expected texture (grey-level std >= 1.0), found std 0.00":
            np.stack([frame, frame, np.full_like(frame, 90)]),
        "frames: expected a clip (T, H, W, 3), found shape (3, 64, 80)": np.zeros((3, 64, 80), np.uint8),
        "frames: expected more than 31 px a side, found 20x20": np.stack([frame[:20, :20]] * 3),
    }
    for needle, frames in cases.items():
        for metric in (fl.photometric_consistency(frames), fl.motion_magnitude(frames),
                       fl.motion_smoothness(frames)):
            assert not metric.ok and metric.raw is None and metric.score is None
            expected = ("frames: expected at least 3 frames, found 1" if metric.name == "motion_smoothness"
                        and len(frames) < 3 else needle)
            assert metric.reason.startswith(expected), (needle, metric.reason)
        with pytest.raises(VideoError, match="flows: frames: "):
            fl.flows(frames)
    two = fl.motion_smoothness(np.stack([frame] * 2))
    assert not two.ok and two.reason == "frames: expected at least 3 frames, found 2"
    constant = fl.flow_metrics(np.full((5, 64, 80, 3), 17, np.uint8))
    assert [m.name for m in constant] == ["photometric_consistency", "motion_magnitude", "motion_smoothness"]
    assert all(not m.ok and m.reason.startswith("frames: frame 0: expected texture") for m in constant)


def test_bad_settings_raise():
    with pytest.raises(InputError, match="preset"):
        fl.FlowSettings(preset="slow")
    with pytest.raises(InputError, match="max_side"):
        fl.FlowSettings(max_side=0)


def test_flow_set_must_match_the_frames():
    tex = texture(64, 80)
    frames = np.stack([shifted(tex, t, 0) for t in range(3)])
    fs = fl.flows(frames[:2])
    with pytest.raises(VideoError, match="flow_set"):
        fl.photometric_consistency(frames, fs)


@pytest.mark.skipif(not os.path.isdir(SEVEN_SCENES), reason="shared 7-Scenes frames absent")
def test_seven_scenes_real_frames():
    import cv2

    paths = sorted(glob.glob(os.path.join(SEVEN_SCENES, "frame-*.color.png")))[:9]
    frames = np.stack([cv2.resize(cv2.cvtColor(cv2.imread(p), cv2.COLOR_BGR2RGB), (320, 240),
                                  interpolation=cv2.INTER_AREA) for p in paths])
    pc, mm, sm = fl.flow_metrics(frames)
    assert pc.ok and mm.ok and sm.ok
    # a hand-held camera: real motion (px at 320x240), consistent flow but not perfect
    assert 0.5 < mm.raw < 20
    assert 0.05 < pc.raw < 1.5
    assert 0.0 < sm.raw["mse"] < 400 and 0.5 < sm.raw["ssim"] < 1.0
    # the same frame repeated is far more consistent than real motion
    still = fl.photometric_consistency(np.stack([frames[0]] * 3))
    assert still.raw < 0.2 * pc.raw
