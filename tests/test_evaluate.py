"""`python -m star_jax.evaluate`: the embedded default world's true target video, evaluated against
its own camera path (a known answer), a navigate-style run folder, and explicit failures."""

import json
import os

import numpy as np
import pytest

from star_jax import cli
from star_jax import evaluate as ev
from star_jax.assets import default_world_path
from star_jax.geometry.trajectory import load_intrinsics_file, load_w2c_file
from star_jax.io import files as io

WORLD = {k: default_world_path(f) for k, f in
         (("video", "target.mp4"), ("w2c", "target_w2c.txt"), ("K", "K.txt"))}


@pytest.fixture(scope="module")
def world():
    frames = ev.read_frames(WORLD["video"])
    w2c = load_w2c_file(WORLD["w2c"])
    return frames, w2c[: len(frames)], load_intrinsics_file(WORLD["K"])


@pytest.fixture(scope="module")
def truth_eval(world):
    """The true frames with a little seeded noise as the 'generated' video, scored against the truth."""
    frames, w2c, K = world
    noisy = np.random.default_rng(0).normal(0, 2, frames.shape) + frames
    gen = np.clip(np.round(noisy), 0, 255).astype(np.uint8)
    mse = np.mean((gen.astype(np.float64) - frames) ** 2) / 255.0**2
    return ev.evaluate(gen, w2c=w2c, K=K, truth=frames), -10 * np.log10(mse)


def test_true_video_scores_as_its_own_path(truth_eval):
    r, expected_psnr = truth_eval
    cam = r.metric("camera_control")
    assert cam.ok, cam.reason
    # the true frames along their own commanded path: the recovered path is that path, within what
    # 96x160 frames (0.44 deg per pixel) with moving objects allow
    assert cam.raw["rotation_deg"] < 3.0 and cam.raw["translation"] < 0.1
    assert cam.score > 0.85
    photo = r.metric("photometric_consistency")
    assert photo.ok and photo.score > 0.5
    psnr = r.metric("psnr")
    assert psnr.ok and psnr.raw["all"] == pytest.approx(expected_psnr, abs=1e-6)
    agg = r.aggregate
    assert agg["score"] is not None and 0 < agg["score"] <= 100
    assert set(agg["aspects"]) >= {"camera_control", "photometric_consistency", "motion_smoothness"}
    assert "object_control" in agg["not_measured"]
    json.dumps(r.to_json(), allow_nan=False)  # metrics.json is strict JSON


def test_wrong_path_scores_lower(world, truth_eval):
    frames, w2c, K = world
    mirrored = w2c.copy()
    mirrored[:, 0, 3] *= -1.0  # the commanded translation mirrored left/right
    mirrored[:, :3, :3] = np.diag([-1.0, 1.0, 1.0]) @ w2c[:, :3, :3] @ np.diag([-1.0, 1.0, 1.0])
    r = ev.evaluate(frames, w2c=mirrored, K=K, skip=("flow", "ground_truth"))
    cam, ref = r.metric("camera_control"), truth_eval[0].metric("camera_control")
    assert not cam.ok or cam.score < ref.score - 0.1


def test_too_few_frames_fail_explicitly(world):
    frames, w2c, K = world
    r = ev.evaluate(frames[:2], w2c=w2c[:2], K=K)
    by = {m.name: m for m in r.metrics}
    assert not by["camera_control"].ok and by["camera_control"].reason
    assert not by["motion_smoothness"].ok and by["motion_smoothness"].reason
    for m in r.metrics:
        assert m.ok or (m.raw is None and m.score is None)
    assert set(r.aggregate["failed"]) >= {"camera_control", "motion_smoothness"}


def test_bad_inputs_are_named(world):
    frames, w2c, K = world
    with pytest.raises(ev.InputError, match="cameras, one per generated frame"):
        ev.evaluate(frames, w2c=w2c[:5], K=K)
    with pytest.raises(ev.InputError, match=r"truth: expected the frames' shape \(45, 96, 160, 3\), found \(45, 32"):
        ev.evaluate(frames, truth=frames[:, :32])
    bad = frames.astype(np.float32) / 255.0
    bad[3, 5, 5, 0] = np.nan
    with pytest.raises(ev.InputError, match=r"frames: frame 3: expected values in \[0, 1\], found nan"):
        ev.evaluate(bad)
    with pytest.raises(ev.InputError, match=r"masks: expected bool \(or 0 / 1\)"):
        ev.evaluate(frames, masks=np.full(frames.shape[:3], 0.5))
    with pytest.raises(ev.InputError, match="principal point"):
        ev.evaluate(frames, K=K * np.array([[4.0], [4.0], [1.0]]))


def _run_folder(path, frames, w2c, K):
    os.makedirs(path)
    io.write_mp4(os.path.join(path, "navigate.mp4"), frames, 15.0)
    io.write_npz(os.path.join(path, "cameras.npz"), w2c=w2c.astype(np.float32),
                 K=np.broadcast_to(K, (len(frames), 3, 3)).astype(np.float32),
                 masks=np.ones(frames.shape[:3], bool))
    io.write_json(os.path.join(path, "metadata.json"), {"fps": 15.0, "ground_truth": None})


def test_cli_on_a_run_folder(tmp_path, world):
    frames, w2c, K = world
    run = str(tmp_path / "run")
    _run_folder(run, frames[:21], w2c[:21], K)
    logs = []
    out = ev.main(["--run", run, "--skip", "flow"], log=logs.append)
    assert os.path.isfile(os.path.join(run, "metrics.json")) and os.path.isfile(os.path.join(run, "report.png"))
    with open(os.path.join(run, "metrics.json")) as f:
        saved = json.load(f)
    assert saved["metrics"]["camera_control"]["ok"] == out["metrics"]["camera_control"]["ok"]
    assert "photometric_consistency" not in saved["metrics"]
    assert "aggregate" in logs[0].lower()


def test_cli_user_errors_exit_2(tmp_path, capsys):
    assert cli.execute(ev.main, ["--run", str(tmp_path)]) == cli.EXIT_USER
    assert "navigate.mp4" in capsys.readouterr().err
    assert cli.execute(ev.main, ["--video", WORLD["video"], "--output_dir", str(tmp_path / "o"),
                                 "--skip", "colour"]) == cli.EXIT_USER
    assert "unknown group" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "o")


def test_threads_do_not_change_the_metrics(world):
    frames, w2c, K = world
    a = ev.evaluate(frames[:13], w2c=w2c[:13], K=K, truth=frames[:13], workers=1).to_json()
    b = ev.evaluate(frames[:13], w2c=w2c[:13], K=K, truth=frames[:13], workers=4).to_json()
    for name, m in a["metrics"].items():  # details also carry the estimators' own timings
        assert json.dumps([m["ok"], m["raw"], m["score"]]) == json.dumps(
            [b["metrics"][name][k] for k in ("ok", "raw", "score")]), name
    assert a["aggregate"] == b["aggregate"]
