"""benchmarks/teacher_quality.py end to end on a 2-clip stand-in: it writes its table, and its
numbers for the warped render equal PSNR / SSIM computed directly."""

import re

import jax
import numpy as np
import pytest

from benchmarks import teacher_quality
from experiments.train_smoke import get_config
from star_jax.evaluation import psnr, ssim
from star_jax.train import train
from star_jax.errors import InputError
from tests.evaluation.standin import standin_clips, standin_vae, write_standin


@pytest.mark.slow  # ~2.5 min on 2 busy CPU cores: compiling the teacher's step, its sampler and the VAE decoder
def test_quality_script_on_a_two_clip_standin(tmp_path, capsys):
    vae_dir = standin_vae(tmp_path / "vae")
    latents, pixels = write_standin(tmp_path / "data", {"train": 8, "test": 2}, vae_dir=vae_dir)
    config = get_config(f"steps=2,every=0,workdir={tmp_path / 'teacher'}")
    with config.unlocked():
        config.data.update(source="records", path=latents, split="train")
    train(config, devices=jax.devices()[:1])
    out = tmp_path / "quality.md"
    args = ["--data", latents, "--vae", vae_dir, "--teacher", str(tmp_path / "teacher"), "--steps", "2",
            "--num", "5", "--out", str(out)]
    capsys.readouterr()  # TFDS's own messages while writing the stand-in
    teacher_quality.main(args)
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "(split 'test', 2 clips); targets from " + pixels in text  # the pixel dataset the metadata names
    assert "step 2, EMA params" in text and "trained from scratch" in text and "Euler, 2 steps" in text

    test_clips = standin_clips(2, seed=1)
    row = next(line for line in text.splitlines() if line.startswith("| (a) warped render alone"))
    got = [float(v) for v in row.split("|")[2:-1]]
    want = []
    for metric in (psnr, ssim):
        for region in (lambda v: None, lambda v: v > 0, lambda v: v == 0):
            values = [metric(c["render_rgb"], c["target_rgb"], region(c["render_valid"])) for c in test_clips]
            want.append(np.nanmean(values))  # a clip without holes has no hole value: left out of the mean
    assert not np.isnan(want).any()
    np.testing.assert_allclose(got, want, atol=0.006)  # the table's rounding (2 decimals dB, 4 SSIM)
    assert got[1] == np.inf  # the stand-in render is the target wherever it is valid
    for label in ("(b) untrained teacher", "(c) trained teacher", "(d) VAE reconstruction", "(e) the render latent"):
        assert re.search(re.escape(label) + r".*\| -?\d+\.\d\d \|", text)

    # a VAE other than the one that encoded the latents is refused before any compute
    other = standin_vae(tmp_path / "other_vae", seed=1)
    with pytest.raises(InputError, match=r"was encoded by VAE [0-9a-f]{16}"):
        teacher_quality.main(args[:2] + ["--vae", other] + args[4:])


def test_clip_metrics_are_the_ground_truth_metrics():
    """Both quality benchmarks score with teacher_quality.clip_metrics, which reads
    ground_truth_metrics (the numbers in star_jax.evaluate's metrics.json): on a synthetic clip its
    values are those, and equal PSNR / SSIM pooled over the clip by image_metrics directly."""
    from benchmarks import student_quality
    from star_jax.evaluation.ground_truth import ground_truth_metrics

    assert student_quality.clip_metrics is teacher_quality.clip_metrics
    rng = np.random.default_rng(0)
    target = rng.integers(0, 256, (3, 24, 28, 3), dtype=np.uint8)
    pred = np.clip(target / 255.0 + rng.normal(0, 0.05, target.shape), 0, 1)  # float, as decoded
    valid = (rng.random(target.shape[:3]) < 0.6).astype(np.float32)  # render_valid as stored: 0 / 1 floats
    got = teacher_quality.clip_metrics(pred, target, valid)
    psnr_m, ssim_m = ground_truth_metrics(pred, target, masks=valid > 0)
    for region, mask in (("all", None), ("rendered", valid > 0), ("holes", valid == 0)):
        assert got[f"psnr/{region}"] == psnr_m.raw[region] and got[f"ssim/{region}"] == ssim_m.raw[region]
        assert got[f"psnr/{region}"] == pytest.approx(psnr(pred, target, mask), abs=1e-9)
        assert got[f"ssim/{region}"] == pytest.approx(ssim(pred, target, mask), abs=1e-9)
    full = teacher_quality.clip_metrics(pred, target, np.ones_like(valid))  # no holes: NaN, left out of the mean
    assert np.isnan(full["psnr/holes"]) and np.isnan(full["ssim/holes"]) and full["psnr/all"] == got["psnr/all"]


def test_the_old_guidance_flag_is_refused_by_name():
    with pytest.raises(InputError, match=r"^--guidance: renamed --cfg_scale, the same value .* use --cfg_scale 2$"):
        teacher_quality.main(["--data", "nowhere", "--vae", "nowhere", "--teacher", "nowhere", "--guidance", "2"])
