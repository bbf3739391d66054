"""The navigation main job end to end on a generated clip: random weights, then the same weights
through converted orbax checkpoints (same video), key-script control, the render-coverage floor
and the metadata's provenance. Inputs are explicit (not the config's default world, no ground
truth); the default job on the embedded model is tests/test_tiny_model.py's."""

import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.video import VideoSpec, load_video
from experiments.navigate import get_config
from star_jax.checkpoint import save_params
from star_jax.errors import InputError
from star_jax.inference.model import random_star_model
from star_jax.navigate import run, total_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    t = np.arange(12)[:, None, None, None]
    y, x = np.mgrid[:48, :80]
    frames = ((x[None, :, :, None] * 3 + y[None, :, :, None] * 2 + t * 9 + np.array([0, 80, 160])) % 256)
    path = str(d / "clip.mp4")
    io.write_mp4(path, frames.astype(np.uint8), 15)
    return path


@pytest.fixture(scope="module")
def orbit(tmp_path_factory):
    path = tmp_path_factory.mktemp("traj") / "orbit.txt"
    path.write_text("0 10 0\n0 15 0\n1 1 1\n")  # pitch, yaw (degrees), radius x foreground depth
    return str(path)


def _config(clip, out, trajectory="", **kw):
    c = get_config("variant=tiny,blocks=2,height=32,width=64,random_weights")
    with c.unlocked():
        c.video = clip
        c.trajectory = trajectory
        c.output_dir = str(out)
        c.ground_truth = ""
        for k, v in kw.items():
            c[k] = v
    return c


def test_navigate_random_then_checkpoint(clip, orbit, tmp_path):
    meta = run(_config(clip, tmp_path / "a", orbit), log=lambda *_: None)
    assert meta["frames"] == total_frames(2) == 21
    assert meta["weights"] == "random-init (tiny)" and meta["text"] == "zeros"
    assert meta["model"] is None and meta["ground_truth"] is None
    assert not os.path.exists(tmp_path / "a" / "comparison.mp4")  # no ground truth, nothing to compare
    assert meta["depth"] == "planar-prior" and meta["camera"]["kind"] == "orbit"
    assert len(meta["latency_per_block_s"]) == 2
    assert set(meta["steady_state"]["share"]) == {"warp", "encode", "dit", "decode"}
    assert meta["conditioning"]["source"]  # which conditioning convention fed the DiT, and why
    cov = meta["render_coverage_per_block"]
    assert len(cov) == 2 and all(0.5 < c <= 1 for c in cov)  # a gentle orbit over the planar prior
    assert np.mean(cov) == pytest.approx(meta["valid_fraction_mean"], rel=0.1)
    ref = meta["reference"]  # provenance: 12 source frames 48x80 at 15 fps, all shown
    assert ref["source_size_hw"] == [48, 80] and ref["source_fps"] == 15 and ref["source_num_frames"] == 12
    assert ref["distinct_reference_frames"] == 9 and ref["distinct_source_frames_used"] == 9
    for name in ("navigate.mp4", "renders.mp4", "contact_sheet.png", "cameras.npz", "metadata.json"):
        assert os.path.getsize(tmp_path / "a" / name) > 0
    assert not os.path.exists(tmp_path / "a" / "metrics.json")  # evaluation only when asked
    assert json.load(open(tmp_path / "a" / "metadata.json"))["frames"] == 21
    assert not [f for f in os.listdir(tmp_path / "a") if f.startswith(".")]  # nothing half-written

    # the same weights through the checkpoint path give the same video
    model = random_star_model("tiny", jax.random.PRNGKey(0))
    save_params(model.dit_params, str(tmp_path / "ckpt" / "dit"))
    save_params(model.vae_params, str(tmp_path / "ckpt" / "vae"))
    meta_b = run(_config(clip, tmp_path / "b", orbit, checkpoint=str(tmp_path / "ckpt")), log=lambda *_: None)
    assert str(tmp_path / "ckpt" / "dit") in meta_b["weights"]
    spec = VideoSpec(height=32, width=64)
    a = load_video(str(tmp_path / "a" / "navigate.mp4"), spec).frames
    b = load_video(str(tmp_path / "b" / "navigate.mp4"), spec).frames
    np.testing.assert_array_equal(a, b)


def test_navigate_with_keys_and_bad_checkpoint(clip, orbit, tmp_path):
    (tmp_path / "keys.txt").write_text("5 forward\n10 forward+yaw_left\n")
    meta = run(_config(clip, tmp_path / "k", keys_file=str(tmp_path / "keys.txt"), num_blocks=1,
                       prompt="a coffee bar", prompt_cache=str(tmp_path / "prompts")), log=lambda *_: None)
    assert meta["camera"]["kind"] == "keys" and meta["frames"] == 9
    assert meta["text"].startswith("prompt 'a coffee bar' via hashed words"), meta["text"]  # --prompt on tiny
    assert len(os.listdir(tmp_path / "prompts")) == 1  # embedded once, cached
    with pytest.raises(InputError, match="expected one text source, found both"):
        run(_config(clip, tmp_path / "t", orbit, prompt="a", text_embedding=str(tmp_path / "keys.txt")),
            log=lambda *_: None)
    from star_jax.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="nowhere: no such folder"):
        run(_config(clip, tmp_path / "x", orbit, checkpoint=str(tmp_path / "nowhere")), log=lambda *_: None)
    assert not (tmp_path / "x").exists()


def test_navigate_decoder_choice_is_checked_at_validate(clip, orbit, tmp_path):
    """--decoder tiny needs the model folder's taehv/ (the embedded tiny model has none): named
    before anything is built; an unknown decoder is named too."""
    import re

    from star_jax.checkpoint import CheckpointError
    from star_jax.inference.model import tiny_model_path

    missing = re.escape(os.path.join(tiny_model_path(), "taehv"))
    with pytest.raises(CheckpointError, match=f"decoder 'tiny': {missing}: expected the model folder's TAEHV folder"):
        run(_config(clip, tmp_path / "x", orbit, checkpoint=tiny_model_path(), decoder="tiny"), log=lambda *_: None)
    with pytest.raises(InputError, match=r"config.decoder \(--decoder\): expected 'wan' or 'tiny', found 'fast'"):
        run(_config(clip, tmp_path / "x", orbit, decoder="fast"), log=lambda *_: None, dry_run=True)
    assert not (tmp_path / "x").exists()


@pytest.mark.slow  # ~1 min on a shared 2-core CPU: model init and one block compiled
def test_navigate_tiny_decoder_random_weights(clip, orbit, tmp_path):
    meta = run(_config(clip, tmp_path / "t", orbit, num_blocks=1, decoder="tiny"), log=lambda *_: None)
    assert meta["frames"] == 9
    assert meta["decoder"] == {"decoder": "tiny", "network": "TAEHV", "weights": "random-init TAEHV (tiny)"}
    assert meta["reference_encoding"]["encoded"] == "once" and meta["reference_encoding"]["seconds"] > 0
    saved = json.load(open(tmp_path / "t" / "metadata.json"))
    # 9 reference frames: a cycle of 4 latents, cached in 2 blocks (6 latents)
    assert saved["decoder"]["decoder"] == "tiny" and saved["reference_encoding"]["cached_latents"] == 6


def test_render_coverage_floor(clip, tmp_path):
    """A dolly of 1e9 scene depths flies far past the scene: every render is black. The default
    floor stops the job after the first block with nothing written; a floor of 0 lets it finish
    with a warning and the coverage in the metadata."""
    from star_jax.navigate import RenderCoverageError

    far = tmp_path / "far.txt"
    far.write_text("0\n0\n1e9\n")
    with pytest.raises(RenderCoverageError, match=r"far.txt: block 0 \(frames 0-8\): expected a render coverage of "
                                                  r"at least 2.0% \(config.min_render_coverage\), found 0.00%"):
        run(_config(clip, tmp_path / "out", str(far), num_blocks=1), log=lambda *_: None)
    assert os.listdir(tmp_path) == ["far.txt"]
    logs = []
    c = _config(clip, tmp_path / "out", str(far), num_blocks=1)
    with c.unlocked():
        c.min_render_coverage = 0.0
    meta = run(c, log=logs.append)
    assert meta["render_coverage_per_block"] == [0.0] and meta["min_render_coverage"] == 0.0
    assert any(m.startswith("warning: block 0 (frames 0-8): render coverage 0.0% is low") for m in logs)


@pytest.mark.slow  # ~1.5 min of CPU: 150 frames of 1352x760 decoded, then 2 blocks at 96x160
def test_default_model_on_the_shared_real_video(shared_data, tmp_path):
    """The README's real-clip command on the embedded model: it runs, no ground truth is claimed,
    and the metadata says honestly where the input leaves the model's training."""
    from star_jax.assets import TINY_MODEL

    c = get_config("blocks=2")
    with c.unlocked():
        c.video = os.path.join(shared_data, "reference_videos", "coffee_martini.mp4")
        c.trajectory = os.path.join(shared_data, "trajectories", "x_y_circle_cycle.txt")
        c.output_dir = str(tmp_path / "real")
        c.ground_truth = ""  # what the command line does for --video
    logs = []
    meta = run(c, log=logs.append)
    assert meta["frames"] == 21 and meta["depth"] == "planar-prior" and meta["ground_truth"] is None
    assert meta["weights"].startswith(TINY_MODEL) and meta["size_hw"] == [96, 160]
    notes = " | ".join(meta["model"]["notes"])
    assert "planar depth prior" in notes and "real video above all" in notes, notes
    assert "never seen real footage" in meta["model"]["description"]
    assert any(m.startswith("note: not the default world") for m in logs)
    assert sorted(os.listdir(tmp_path / "real")) == sorted(
        ["navigate.mp4", "renders.mp4", "contact_sheet.png", "metadata.json", "cameras.npz"])


def test_navigate_a_scene_folder_and_evaluate(tmp_path):
    """A photo made into a 1.5 scene folder (star_jax.prepare) drives navigate with the scene's own
    target cameras; --evaluate writes metrics.json and report.png, and cameras.npz holds the
    commanded path the metrics were measured against."""
    from PIL import Image

    from star_jax.evaluate import load_run
    from star_jax.io.scene_folder import load_scene
    from star_jax.prepare import main as prepare

    y, x = np.mgrid[:32, :64]
    img = np.stack([(x * 4) % 256, (y * 8) % 256, ((x + y) * 5) % 256], -1).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    scene_dir = str(tmp_path / "scene")
    prepare(["--source", str(tmp_path / "photo.png"), "--output", scene_dir, "--height", "32", "--width", "64",
             "--frames", "9", "--prompt", "a striped wall"])
    scene = load_scene(scene_dir)
    c = _config(scene_dir, tmp_path / "out", num_blocks=1, evaluate=True,
                w2c_file=os.path.join(scene_dir, "input", "target_tcw.txt"))
    logs = []
    meta = run(c, log=logs.append)
    out = tmp_path / "out"
    for name in ("metrics.json", "report.png", "cameras.npz"):
        assert os.path.getsize(out / name) > 0
    with np.load(out / "cameras.npz") as z:
        np.testing.assert_allclose(z["w2c"], scene.target_w2c[:9], atol=1e-6)
        assert z["K"].shape == (9, 3, 3) and z["masks"].shape == (9, 32, 64)
    metrics = json.load(open(out / "metrics.json"))
    assert meta["evaluation"]["aggregate"] == metrics["aggregate"]
    # random weights on 9 frames: whatever the numbers, every metric is a number or a stated failure
    for m in metrics["metrics"].values():
        assert m["ok"] or m["reason"]
    assert any("aggregate" in line for line in logs)
    assert load_run(str(out))["w2c"].shape == (9, 4, 4)


def test_score_reads_the_evaluations_psnr():
    """navigate's ground-truth PSNR is the evaluation's "psnr" metric when the run evaluates and the
    same function's numbers when it does not; both equal PSNR pooled over the clip directly."""
    from star_jax.evaluate import evaluate
    from star_jax.evaluation import psnr
    from star_jax.evaluation.worldscore import Metric
    from star_jax.navigate import score

    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (4, 16, 20, 3), dtype=np.uint8)
    frames = np.clip(truth + rng.normal(0, 12, truth.shape), 0, 255).astype(np.uint8)
    renders = np.clip(truth + rng.normal(0, 4, truth.shape), 0, 255).astype(np.uint8)
    masks = rng.random(truth.shape[:3]) < 0.7
    masks[1] = True  # a frame without holes: the holes' pooling skips it
    evaluation = evaluate(frames, truth=truth, masks=masks, renders=renders, skip=("geometry", "flow"), workers=1)
    alone, read = score(frames, truth, renders, masks), score(frames, truth, renders, masks, evaluation)
    assert alone == read
    direct = {"all": psnr(frames, truth), "rendered": psnr(frames, truth, masks), "holes": psnr(frames, truth, ~masks)}
    assert read["psnr_db"] == pytest.approx(direct, abs=1e-3)  # the stored values are rounded to 3 decimals
    assert read["render_psnr_db"]["rendered"] == pytest.approx(psnr(renders, truth, masks), abs=1e-3)
    assert read["hole_fraction"] == pytest.approx(1 - masks.mean())
    raw = evaluation.metric("psnr").raw
    assert read["psnr_db"]["all"] == round(raw["all"], 3)

    marked = Metric("psnr", {"all": 1.0, "rendered": 2.0, "holes": None, "render_rendered": 3.0}, None)
    fake = dataclasses.replace(evaluation, metrics=(marked,))  # read, not measured again
    assert score(frames, truth, renders, masks, fake)["psnr_db"] == {"all": 1.0, "rendered": 2.0, "holes": None}
