"""benchmarks/student_quality.py on stand-ins (random tiny networks written as exports and as a
distillation workdir, a 3-clip stand-in dataset, a random tiny VAE): the loaders read each kind
of folder, a missing network is a row saying so, and the table's numbers are the metrics
computed directly."""

import json
import os

import jax
import numpy as np
import pytest

from benchmarks import student_quality as sq
from experiments.train_smoke import get_config
from star_jax.checkpoint.storage import save_params
from star_jax.errors import InputError
from star_jax.evaluation import psnr, realism_distance, ssim
from star_jax.models.variants import DiTConfig
from star_jax.train.config import section
from tests.evaluation.standin import LATENT_HW, TEXT, standin_clips, standin_vae, write_standin


def _config():
    return get_config("steps=2,every=0")


def _random_params(cfg, seed):
    """Random params of the student's shapes (from eval_shape: no compile)."""
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype),
                                  sq._abstract_params(cfg, 3, LATENT_HW, TEXT[0]))


def write_export(folder, seed: int) -> str:
    """A teacher-export-shaped folder (dit/ + teacher.json) holding random params of the smoke DiT."""
    config = _config()
    cfg = section(DiTConfig, config.model, "dit", "config.model")
    os.makedirs(folder)
    save_params(_random_params(cfg, seed), os.path.join(folder, "dit"))
    meta = {"format": 1, "config": config.to_dict(), "step": 7, "params": "raw", "train_wall_s": 1.0,
            "dit": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items()}}
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump(meta, f)
    return os.fspath(folder)


def write_distill_workdir(folder, seed: int) -> str:
    """A trainer-workdir-shaped folder whose state holds a generator and a critic (no EMA)."""
    config = _config()
    cfg = section(DiTConfig, config.model, "dit", "config.model")
    state = {"params": {"generator": _random_params(cfg, seed), "critic": _random_params(cfg, seed + 1)},
             "step": np.int32(3)}
    save_params(state, os.path.join(folder, "checkpoints", "3", "state"))
    with open(os.path.join(folder, "run.json"), "w") as f:
        json.dump({"config": config.to_dict()}, f)
    return os.fspath(folder)


def test_load_student_reads_exports_and_distillation_workdirs(tmp_path):
    cfg = section(DiTConfig, _config().model, "dit", "config.model")
    export = sq.load_student(write_export(tmp_path / "export", seed=3), None, 3, LATENT_HW, TEXT[0])
    assert export["cfg"] == cfg
    want = _random_params(cfg, 3)
    jax.tree_util.tree_map(np.testing.assert_array_equal, export["params"], want)
    card = tmp_path / "model"  # a model folder (export student): dit/ + star_model.json with the DiT's arch fields
    os.makedirs(card)
    save_params(_random_params(cfg, 4), os.fspath(card / "dit"))
    arch = {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.__dict__.items() if k not in ("dtype", "remat")}
    (card / "star_model.json").write_text(json.dumps({"format": 2, "conditioning": "inspatio-release", "dit": arch}))
    model = sq.load_student(os.fspath(card), None, 3, LATENT_HW, TEXT[0])
    assert model["cfg"] == cfg
    jax.tree_util.tree_map(np.testing.assert_array_equal, model["params"], _random_params(cfg, 4))
    with pytest.raises(InputError, match="no DiT config recorded"):
        sq.load_student(os.fspath(card / "dit"), None, 3, LATENT_HW, TEXT[0])
    workdir = sq.load_student(write_distill_workdir(tmp_path / "work", seed=5), None, 3, LATENT_HW, TEXT[0])
    assert workdir["facts"]["step"] == 3 and workdir["cfg"] == cfg
    jax.tree_util.tree_map(np.testing.assert_array_equal, workdir["params"], _random_params(cfg, 5))  # the generator


@pytest.mark.slow  # ~1.5 min on 2 busy CPU cores: compiling the rollout, the teacher sampler and the VAE decoder
def test_student_quality_on_a_three_clip_standin(tmp_path, capsys):
    vae_dir = standin_vae(tmp_path / "vae")
    latents, pixels = write_standin(tmp_path / "data", {"train": 1, "test": 3}, vae_dir=vae_dir)
    teacher = write_export(tmp_path / "teacher", seed=1)
    student = write_export(tmp_path / "student", seed=2)
    out = tmp_path / "sq.md"
    capsys.readouterr()
    sq.main(["--data", latents, "--vae", vae_dir, "--ode", student, "--dmd", student,
             "--jdmd", str(tmp_path / "no_such_run"), "--teacher_c", teacher, "--teacher_steps", "2",
             "--flat_pixels", pixels, "--batch", "2", "--repeats", "1", "--out", str(out)])
    text = out.read_text()
    assert text == capsys.readouterr().out
    rows = {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
            for line in text.splitlines() if line.startswith("| ") and not line.startswith("| method")}
    assert list(rows) == [sq.LABELS[r] for r in sq.ROWS]
    assert rows[sq.LABELS["jdmd"]][0] == f"missing: {tmp_path / 'no_such_run'} does not exist"
    assert rows[sq.LABELS["teacher_m"]][0] == "missing: not given"
    assert rows[sq.LABELS["teacher_m_free"]][0] == "missing: not given"
    assert "(split 'test', 3 clips of 9 frames at 32x32)" in text

    num = lambda r: [float(v.rstrip("x")) if v != "-" else None for v in rows[sq.LABELS[r]]]  # noqa: E731
    ode, dmd, untrained, tc = num("ode"), num("dmd"), num("untrained"), num("teacher_c")
    assert ode[:7] == dmd[:7]  # the same network, the same noise: the same quality
    assert ode[:7] != untrained[:7] and ode[:7] != tc[:7]
    assert tc[8] == 1.0 and tc[9] == 1.0 and all(v > 0 for v in ode[7:10])  # frames/s and speed-ups measured

    clips = standin_clips(3, seed=1)
    render, vae_row = num("render"), num("vae_recon")
    want = []
    for metric in (psnr, ssim):
        for region in (lambda v: None, lambda v: v > 0, lambda v: v == 0):
            want.append(np.nanmean([metric(c["render_rgb"], c["target_rgb"], region(c["render_valid"]))
                                    for c in clips]))
    np.testing.assert_allclose(render[:6], want, atol=0.006)  # the table's rounding
    real = np.stack([c["target_rgb"] for c in clips])
    render_fd = realism_distance(np.stack([c["render_rgb"] for c in clips]), real)
    assert render[6] == pytest.approx(render_fd, abs=0.006)
    assert render[7:] == [None, None, None] and vae_row[7:] == [None, None, None]
    flat = num("flat_truth")  # the stand-in's "flat" pixels are its true targets: a perfect row
    assert flat[0] == np.inf and flat[3] == 1.0 and flat[6] == pytest.approx(0.0, abs=0.006)


def test_help_prints(capsys):
    with pytest.raises(SystemExit) as e:
        sq.main(["--help"])
    assert e.value.code == 0 and "--flat_pixels" in capsys.readouterr().out


def test_cfg_scales_follow_the_distillation_run(tmp_path):
    """T_c / T_m are sampled with the CFG scales (v_u + s (v_c - v_u)) the distillation run recorded;
    an older run's x_c + g (x_c - x_u) guidance is read as g + 1; the old flags are refused by name."""
    runs = {"old": {"guidance": 3.0, "real_guidance": 0.5}, "new": {"cfg_scale": 2.5}, "teacher": None}
    for name, distill in runs.items():
        os.makedirs(tmp_path / name)
        (tmp_path / name / "run.json").write_text(json.dumps({"config": {"distill": distill} if distill else {}}))
    assert sq.distill_cfg_scales([str(tmp_path / "old")]) == (4.0, 1.5)
    assert sq.distill_cfg_scales(["", str(tmp_path / "no_such_run"), str(tmp_path / "new")]) == (2.5, 1.0)
    assert sq.distill_cfg_scales([str(tmp_path / "teacher"), ""]) == (None, None)
    for old, new in (("--guidance", "--cfg_scale"), ("--real_guidance", "--real_cfg_scale")):
        with pytest.raises(InputError, match=f"^{old}: renamed {new}, .* {new} = {old} \\+ 1"):
            sq.main(["--data", "nowhere", "--vae", "nowhere", old, "3"])


def test_blocks_split_a_clip_as_the_causal_vae_does():
    """Block b's frames are those its latents decode to (latent 0 -> frame 0, latent i -> 4i-3 .. 4i):
    the ranges tile the clip, and each block's PSNR is the pooled MSE of its frames."""
    assert sq.block_frames(3) == [(0, 9)]
    assert sq.block_frames(12) == [(0, 9), (9, 21), (21, 33), (33, 45)]
    assert sq.block_frames(4, per_block=2) == [(0, 5), (5, 13)]
    with pytest.raises(InputError, match="not whole blocks of 3"):
        sq.block_frames(7)
    rng = np.random.default_rng(0)
    target = rng.random((21, 8, 12, 3))
    sigma = np.r_[np.full(9, 0.02), np.full(12, 0.06)][:, None, None, None]  # block 2: 3x the noise
    pred = np.clip(target + sigma * rng.standard_normal(target.shape), 0, 1)
    got = sq.block_psnr(pred, target, sq.block_frames(6))
    want = [10 * np.log10(1 / np.mean((pred[a:b] - target[a:b]) ** 2)) for a, b in ((0, 9), (9, 21))]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert got[0] > got[1] + 5  # ~9.5 dB apart
    results = {"jdmd": {"psnr_by_block": got}, "render": {"psnr_by_block": [1.0, 2.5]}}
    text = sq.block_table(results)
    assert f"| {sq.LABELS['jdmd']} | {got[0]:.2f} | {got[1]:.2f} |" in text
    assert f"| {sq.LABELS['render']} | 1.00 | 2.50 |" in text and "block 2" in text
    assert sq.block_table({"jdmd": {"psnr_by_block": [20.0]}}) == ""  # one block: no table
    assert f"| 4-block JDMD | {got[0]:.2f} |" in sq.block_table(results, {"jdmd": "4-block JDMD"})


def test_row_labels_are_checked_before_any_data_is_read():
    for bad in ("nope=a name", "jdmd", "jdmd= "):
        with pytest.raises(InputError, match="^--label .*expected ROW=NAME with ROW one of untrained, ode"):
            sq.main(["--data", "nowhere", "--vae", "nowhere", "--label", bad])
