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
from tests.evaluation.standin import standin_latents, standin_vae, use_standin_records


@pytest.mark.slow  # ~2.5 min on 2 busy CPU cores: compiling the teacher's step, its sampler and the VAE decoder
def test_quality_script_on_a_two_clip_standin(tmp_path, monkeypatch, capsys):
    test_clips = standin_latents(2, seed=7)
    use_standin_records(monkeypatch, {"/standin/star_latents_toy": {"train": standin_latents(8),
                                                                     "test": test_clips}})
    config = get_config(f"steps=2,every=0,workdir={tmp_path / 'teacher'}")
    with config.unlocked():
        config.data.update(source="records", path="/standin/star_latents_toy", split="train")
    train(config, devices=jax.devices()[:1])
    out = tmp_path / "quality.md"
    teacher_quality.main(["--data", "/standin/star_latents_toy", "--vae", standin_vae(tmp_path / "vae"),
                          "--teacher", str(tmp_path / "teacher"), "--steps", "2", "--num", "5", "--out", str(out)])
    text = out.read_text()
    assert text == capsys.readouterr().out
    assert "(split 'test', 2 clips)" in text and "step 2, EMA params" in text and "Euler, 2 steps" in text

    row = next(line for line in text.splitlines() if line.startswith("| (a) warped render alone"))
    got = [float(v) for v in row.split("|")[2:-1]]
    want = []
    for metric in (psnr, ssim):
        for region in (lambda v: None, lambda v: v > 0, lambda v: v == 0):
            want.append(np.mean([metric(c["render_rgb"], c["target_rgb"], region(c["render_valid"]))
                                 for c in test_clips]))
    np.testing.assert_allclose(got, want, atol=0.006)  # the table's rounding (2 decimals dB, 4 SSIM)
    assert got[1] == np.inf  # the stand-in render is the target wherever it is valid
    for label in ("(b) untrained teacher", "(c) trained teacher", "(d) VAE reconstruction"):
        assert re.search(re.escape(label) + r".*\| -?\d+\.\d\d \|", text)
