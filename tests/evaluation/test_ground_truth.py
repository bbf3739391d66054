"""Ground-truth PSNR / SSIM against direct image_metrics calls, and revisit consistency on paths
whose revisits are planted (an out-and-back loop) or absent (a straight dolly, a still camera)."""

import math
import os

import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.evaluation.ground_truth import ground_truth_metrics, pooled_psnr, pose_distances, revisit_consistency
from star_jax.evaluation.image_metrics import psnr, ssim

T, H, W = 6, 24, 32


def _clip(seed, t=T, h=H, w=W):
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


def _noisy(x, sigma, seed):
    n = np.random.default_rng(seed).normal(0, sigma, x.shape)
    return np.clip(x.astype(np.float64) + n, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def gt_case():
    truth = _clip(0)
    frames = _noisy(truth, 20.0, 1)
    renders = _noisy(truth, 40.0, 2)
    masks = np.random.default_rng(3).random((T, H, W)) < 0.7
    masks[2] = True  # a frame without holes: its "holes" entries are None
    return frames, truth, renders, masks


def test_regions_equal_direct_image_metric_calls(gt_case):
    frames, truth, renders, masks = gt_case
    p, s = ground_truth_metrics(frames, truth, masks, renders)
    assert (p.name, s.name, p.score, s.score, p.ok, s.ok) == ("psnr", "ssim", None, None, True, True)
    for region, r in (("all", None), ("rendered", masks), ("holes", ~masks)):
        assert p.raw[region] == pytest.approx(psnr(frames, truth, r), rel=1e-10)
        assert s.raw[region] == pytest.approx(ssim(frames, truth, r), rel=1e-10)
        for i in (0, 4):
            ri = None if r is None else r[i]
            assert p.details["per_frame"][region][i] == pytest.approx(psnr(frames[i], truth[i], ri), rel=1e-10)
            assert s.details["per_frame"][region][i] == pytest.approx(ssim(frames[i], truth[i], ri), rel=1e-10)
    assert p.details["per_frame"]["holes"][2] is None and s.details["per_frame"]["holes"][2] is None
    assert p.raw["render_rendered"] == pytest.approx(psnr(renders, truth, masks), rel=1e-10)
    assert p.details["render_per_frame"][1] == pytest.approx(psnr(renders[1], truth[1], masks[1]), rel=1e-10)
    assert p.details["hole_fraction"] == pytest.approx(1 - masks.mean())
    assert p.raw["rendered"] > p.raw["render_rendered"]  # sigma 20 beats the sigma-40 "render"
    assert "not a WorldScore aspect" in p.details["normalisation"] and p.unit == "dB vs ground truth"


def test_pooled_psnr_is_the_clip_psnr():
    a, b = _clip(20), _noisy(_clip(20), 12, 21)
    b[1] = a[1]  # an exact frame: inf on its own, still pooled
    region = np.random.default_rng(22).random((T, H, W)) < 0.5
    region[3] = False  # an empty frame: NaN on its own, left out
    per = [psnr(a[i], b[i], region[i]) for i in range(T)]
    assert math.isinf(per[1]) and math.isnan(per[3])
    assert pooled_psnr(per, region.sum(axis=(1, 2))) == pytest.approx(psnr(a, b, region), rel=1e-10)
    assert pooled_psnr([math.inf, math.inf], [5, 5]) == math.inf and pooled_psnr([math.nan], [0]) is None


def test_without_masks_and_empty_regions():
    truth = _clip(4)
    p, s = ground_truth_metrics(truth, truth)
    assert p.raw == {"all": math.inf, "rendered": None, "holes": None} and s.raw["all"] == pytest.approx(1.0)
    assert p.details["hole_fraction"] is None
    p, s = ground_truth_metrics(_noisy(truth, 10, 5), truth, np.ones((T, H, W), np.uint8))  # 0 / 1 masks
    assert p.raw["holes"] is None and s.raw["holes"] is None and p.raw["rendered"] == p.raw["all"]
    tiny = _clip(6, t=2, h=8, w=8)  # SSIM needs 11 pixels a side: a failed metric, PSNR still measured
    p, s = ground_truth_metrics(tiny, tiny)
    assert p.ok and not s.ok and "at least 11" in s.reason and s.raw is None


def _yaw_w2c(yaw_deg, centre):
    """OpenCV w2c of a camera turned by yaw about its y axis, centred at `centre`."""
    a = math.radians(yaw_deg)
    R_c2w = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    m = np.eye(4)
    m[:3, :3] = R_c2w.T
    m[:3, 3] = -R_c2w.T @ np.asarray(centre, float)
    return m


K = np.array([[32.0, 0, 16], [0, 32, 12], [0, 0, 1]])  # W 32: rotation tolerance atan(0.02) = 1.15 deg


def _loop_path(jitter=True):
    """Out (frames 0-9), a detour (10-19), back (20-29): frame 29 - k returns to frame k, within
    0.3 deg and 0.02 units (tolerances 1.15 deg, 0.05 x extent ~ 0.5)."""
    rng = np.random.default_rng(7)
    out = [(5.0 * k, (0.5 * k, 0, 0)) for k in range(10)]
    detour = [(90.0, (5.0, 0, 1.0 + k)) for k in range(10)]
    back = [(y + (rng.uniform(-0.3, 0.3) if jitter else 0), np.add(c, rng.uniform(-0.01, 0.01, 3) if jitter else 0))
            for y, c in out[::-1]]
    return np.stack([_yaw_w2c(y, c) for y, c in out + detour + back])


def _loop_frames(w2c, seed=8):
    frames = _clip(seed, t=len(w2c))
    frames[20:] = frames[:10][::-1]  # identical revisits
    return frames


def test_pose_distances_closed_form():
    w2c = np.stack([_yaw_w2c(0, (0, 0, 0)), _yaw_w2c(30, (3, 4, 0))])
    centres, angles, dists = pose_distances(w2c)
    np.testing.assert_allclose(centres[1], [3, 4, 0], atol=1e-12)
    assert angles[0, 1] == pytest.approx(30.0) and dists[0, 1] == pytest.approx(5.0) and angles[1, 1] < 1e-6


def test_revisit_finds_exactly_the_planted_pairs_and_identical_ones_score_inf():
    w2c = _loop_path()
    frames = _loop_frames(w2c)
    m = revisit_consistency(frames, w2c, K, truth=frames, min_gap=5)
    assert m.ok, m.reason
    assert m.details["pairs"] == [[k, 29 - k] for k in range(10)]
    assert m.raw["pairs"] == 10 and m.raw["psnr"] == math.inf and m.raw["ssim"] == pytest.approx(1.0)
    assert m.raw["truth_psnr"] == math.inf and m.raw["psnr_gap"] == 0.0 and m.raw["ssim_gap"] == pytest.approx(0.0)
    assert max(m.details["pair_rotation_deg"]) < 0.31 and max(m.details["pair_translation"]) < 0.02
    # a larger min_gap drops the pairs closer in time (frames 9 and 20 are 11 apart)
    m12 = revisit_consistency(frames, w2c, K, min_gap=12)
    assert m12.details["pairs"] == [[k, 29 - k] for k in range(9)]


def test_perturbed_revisits_score_lower_and_the_gap_is_against_the_truth():
    w2c = _loop_path()
    truth = _loop_frames(w2c)
    scores = []
    for sigma in (5.0, 30.0):
        frames = truth.copy()
        frames[20:] = _noisy(truth[20:], sigma, 9)
        m = revisit_consistency(frames, w2c, K, truth=truth, min_gap=5, masks=np.ones(truth.shape[:3], bool))
        direct = psnr(frames[:10], frames[20:][::-1])
        assert m.raw["psnr"] == pytest.approx(direct, rel=1e-10) and m.raw["psnr_holes"] is None
        assert m.raw["truth_psnr"] == math.inf and m.raw["psnr_gap"] is None  # the ceiling is inf: no dB gap
        assert m.raw["ssim_gap"] == pytest.approx(m.raw["ssim"] - 1.0)
        assert m.raw["ssim"] == pytest.approx(ssim(frames[:10], frames[20:][::-1]), rel=1e-10)
        scores.append((m.raw["psnr"], m.raw["ssim"]))
    assert math.inf > scores[0][0] > scores[1][0] and 1.0 > scores[0][1] > scores[1][1]


def test_a_path_that_never_returns_fails_with_its_closest_approach():
    w2c = np.stack([_yaw_w2c(0, (0, 0, 0.1 * i)) for i in range(20)])  # a straight dolly
    m = revisit_consistency(_clip(10, t=20), w2c, K, min_gap=6)
    assert not m.ok and m.raw is None and m.score is None
    assert m.reason.startswith("no revisit") and "frames" in m.reason
    i, j = m.details["closest"]["frames"]
    assert j - i == 6 and m.details["closest"]["translation"] == pytest.approx(0.6)
    still = np.repeat(_yaw_w2c(10, (1, 2, 3))[None], 20, axis=0)
    m = revisit_consistency(_clip(10, t=20), still, K, min_gap=6)
    assert not m.ok and m.reason.startswith("degenerate path")
    m = revisit_consistency(_clip(10, t=5), w2c[:5], K, min_gap=6)
    assert not m.ok and m.reason.startswith("too few frames")


def test_a_turn_in_place_revisits_by_rotation_alone():
    yaws = [0, 10, 20, 30, 40, 40, 30, 20, 10, 0]
    w2c = np.stack([_yaw_w2c(y, (1, 0, 2)) for y in yaws])
    m = revisit_consistency(_clip(11, t=10), w2c, K, min_gap=3)
    assert m.ok and m.details["pairs"] == [[0, 9], [1, 8], [2, 7], [3, 6]]
    assert m.details["path_extent"] == 0.0


def test_pauses_at_one_pose_pair_one_to_one():
    """Out pauses 3 frames at a pose, back pauses 4 frames there: 3 pairs (no frame twice), among
    equal poses the farthest apart in time first; frames 5 and 7 (30 deg) are too close in time."""
    yaws = [0, 10, 20, 20, 20, 30, 40, 30, 20, 20, 20, 20, 10, 0]
    w2c = np.stack([_yaw_w2c(y, (0, 0, 0.01 * y)) for y in yaws])
    m = revisit_consistency(_clip(12, t=14), w2c, K, min_gap=3)
    pairs = {tuple(p) for p in m.details["pairs"]}
    assert {(0, 13), (1, 12)} <= pairs and len(pairs) == 5
    paused = sorted(p for p in pairs if yaws[p[0]] == 20)
    assert paused == [(2, 11), (3, 10), (4, 9)]  # frame 8 (also at 20 deg) is left without a partner


@pytest.mark.parametrize("kwargs, match", [
    ({"truth": _clip(0)[:, :, :16]}, r"truth: expected the frames' shape \(6, 24, 32, 3\), found \(6, 24, 16, 3\)"),
    ({"frames": _clip(0).astype(np.int32)}, "frames: expected uint8 .* found dtype int32"),
    ({"frames": np.where(np.arange(T)[:, None, None, None] == 3, np.nan, 0.5)
      * np.ones((T, H, W, 3))}, "frames: frame 3: expected values in \\[0, 1\\], found nan"),
    ({"masks": np.full((T, H, W), 0.5)}, "masks: expected bool .* found dtype float64"),
    ({"masks": np.ones((T, H, W + 1), bool)}, r"masks: expected \(T, H, W\) = \(6, 24, 32\)"),
    ({"renders": _clip(2)}, "renders: .* give masks"),
    ({"frames": _clip(0)[0]}, r"frames: expected a clip \(T, H, W, 3\), found shape \(24, 32, 3\)"),
])
def test_ground_truth_bad_inputs(kwargs, match):
    args = {"frames": _clip(1), "truth": _clip(0), "masks": None, "renders": None} | kwargs
    with pytest.raises(InputError, match=match):
        ground_truth_metrics(**args)


def test_revisit_bad_inputs():
    w2c, frames = _loop_path(), _loop_frames(_loop_path())
    bad = w2c.copy()
    bad[4, 0, 3] = np.nan
    with pytest.raises(InputError, match="w2c: matrix 4: expected finite numbers"):
        revisit_consistency(frames, bad, K)
    with pytest.raises(InputError, match=r"w2c: expected one camera per frame \(30\), found 29"):
        revisit_consistency(frames, w2c[:29], K)
    with pytest.raises(InputError, match=r"K: expected \(3, 3\) intrinsics .* found shape \(3, 4\)"):
        revisit_consistency(frames, w2c, np.eye(3, 4))
    assert revisit_consistency(frames, w2c, K[None], min_gap=5).raw["pairs"] == 10  # (T, 3, 3): the first
    with pytest.raises(InputError, match="focal lengths"):
        revisit_consistency(frames, w2c, np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="min_gap: expected an integer >= 1, found 0"):
        revisit_consistency(frames, w2c, K, min_gap=0)
    with pytest.raises(InputError, match="image_shift: expected a number in"):
        revisit_consistency(frames, w2c, K, image_shift=float("nan"))


def _seven_scenes(folder, frames):
    from PIL import Image

    rgb = np.stack([np.asarray(Image.open(os.path.join(folder, f"frame-{i:06d}.color.png")).reduce(4))
                    for i in frames])  # 120x160
    c2w = np.stack([np.loadtxt(os.path.join(folder, f"frame-{i:06d}.pose.txt")) for i in frames])
    K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")) * np.array([[0.25], [0.25], [1.0]])
    return rgb, np.linalg.inv(c2w), K


def test_revisits_on_real_frames_and_poses(shared_data):
    """7-Scenes redkitchen 150-174 played out and back (50 frames, true poses): the pairs are
    i <-> 49 - i; the returning pass shifted by 2 pixels (a drifting model) scores below the exact
    return and above frames of the way out that are not revisits. The real path 150-199 itself
    never returns: a failure naming the closest approach."""
    folder = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    rgb, w2c, K = _seven_scenes(folder, range(150, 200))
    m = revisit_consistency(rgb, w2c, K)
    assert not m.ok and m.reason.startswith("no revisit") and m.details["closest"]["translation"] > 0.05
    idx = np.concatenate([np.arange(25), np.arange(24, -1, -1)])
    loop, loop_w2c = rgb[idx], w2c[idx]
    exact = revisit_consistency(loop, loop_w2c, K)
    assert exact.details["pairs"] == [[i, 49 - i] for i in range(19)]  # j - i >= 12 (MIN_GAP)
    assert exact.raw["psnr"] == math.inf
    drift = loop.copy()
    drift[25:] = np.roll(loop[25:], 2, axis=2)
    m = revisit_consistency(drift, loop_w2c, K, truth=loop)
    unrelated = psnr(loop[0:7], loop[12:19])  # the way out 12 frames apart: not a revisit
    assert unrelated < m.raw["psnr"] < math.inf and m.raw["ssim"] < 1.0 and m.raw["ssim_gap"] < 0


def test_revisits_on_the_cache_loop_path():
    """benchmarks/cache_loop's loop (yaw 0 -> 30 -> 0 degrees, orbit radius 1, 4 blocks = 45
    frames, float32 cameras from data_pipelines.worlds): the revisits found from the poses alone
    are its way-out / way-back pairs i <-> 44 - i, those at least MIN_GAP = 12 frames apart."""
    from data_pipelines.worlds import WorldSpec, keyframes, look_at, random_scene
    from data_pipelines.worlds.sample import target_cameras

    spec = WorldSpec(height=96, width=160, num_frames=45, supersample=1)
    scene = random_scene(9)
    src = np.linalg.inv(look_at((scene.half_extent - 2.0, 1.5, 0.0), (0.0, 0.5, 0.0)))[None].astype(np.float32)
    w2c = np.asarray(target_cameras(scene, spec, np.repeat(src, 45, axis=0), keyframes([0.0] * 3, [0.0, 30.0, 0.0],
                                                                                        [1.0])))
    m = revisit_consistency(np.zeros((45, 96, 160, 3), np.uint8), w2c, spec.intrinsics())
    assert m.ok and m.details["pairs"] == [[i, 44 - i] for i in range(17)]
    assert m.details["path_turn_deg"] == pytest.approx(30.0, abs=1e-3)


def test_metrics_are_strict_json(gt_case):
    """Every number in raw / details is a plain float, int or None once to_json has run: no NumPy
    scalars, no NaN (strict JSON, as metrics.json is read by other tools)."""
    import json

    frames, truth, renders, masks = gt_case
    ms = ground_truth_metrics(frames, truth, masks, renders)
    w2c = _loop_path()
    ms.append(revisit_consistency(_loop_frames(w2c), w2c, K, truth=_loop_frames(w2c), min_gap=5,
                                  masks=np.ones((30, H, W), bool)))
    ms.append(revisit_consistency(_clip(10, t=20), np.stack([_yaw_w2c(0, (0, 0, 0.1 * i)) for i in range(20)]), K))
    for m in ms:
        json.dumps(m.to_json(), allow_nan=False)


def test_the_default_world_path_returns_through_a_moving_scene():
    """The embedded default world (what the default job generates): its 45-frame target path comes
    back (17 pairs, within 0.4 deg and 0.05 units), and its true frames differ between the passes
    (a sphere circles, a box slides): the truth's ceiling is a finite PSNR, and a generated video
    equal to the truth has no gap."""
    from star_jax.assets import default_world_path
    from star_jax.evaluate import read_frames
    from star_jax.geometry.trajectory import load_intrinsics_file, load_w2c_file

    truth = read_frames(default_world_path("target.mp4"))
    w2c = load_w2c_file(default_world_path("target_w2c.txt"))[: len(truth)]
    m = revisit_consistency(truth, w2c, load_intrinsics_file(default_world_path("K.txt")), truth=truth)
    assert m.ok and m.raw["pairs"] == 17 and max(m.details["pair_rotation_deg"]) < 0.4
    assert 15.0 < m.raw["truth_psnr"] < 30.0 and m.raw["psnr_gap"] == 0.0 and m.raw["ssim_gap"] == 0.0
