"""The embedded trained tiny model (`star_jax/assets/tiny_model/`, a model folder): its card, the
default job on it beating random weights against the held-out default world's ground truth, the
export round trip (export -> load -> the same params and the same block), and model folders that
must be refused with a CheckpointError naming the file and the field, writing nothing."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.assets import TINY_MODEL
from star_jax.checkpoint import CheckpointError, restore_params, save_params
from star_jax.checkpoint.export import export_student
from star_jax.checkpoint.export import main as export_main
from star_jax.inference.model import (
    ARCH_FIELDS,
    check_model_folder,
    load_model_folder,
    read_model_card,
)
from star_jax.models.variants import dit_variant


def _tree_equal(a, b) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


def test_embedded_model_is_small_and_says_what_it_is():
    size = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(TINY_MODEL) for f in fs)
    assert size < 25_000_000
    card = read_model_card(TINY_MODEL)
    assert card.variant == "tiny" and card.conditioning == "inspatio-release"
    assert card.resolution_hw == (96, 160) and card.steps == (1000, 750, 500, 250) and card.shift == 5.0
    assert card.text_encoder.startswith("hashed-words-v1") and "procedural" in card.description
    assert card.training["what"]  # which weights these are, in one line
    assert check_model_folder(TINY_MODEL, "tiny") == card  # shapes and card against the variant, nothing loaded
    cfg = dit_variant("tiny")
    assert card.dit == {k: list(getattr(cfg, k)) if isinstance(getattr(cfg, k), tuple) else getattr(cfg, k)
                        for k in ARCH_FIELDS}


@pytest.fixture(scope="module")
def default_runs(tmp_path_factory):
    """The default job (1 block: 9 frames) with the embedded model, then with the same folder but a
    randomly initialised DiT (the trained VAE kept, so what is compared is the DiT's training,
    and every compiled function is reused)."""
    from experiments.navigate import get_config
    from star_jax.inference.model import random_dit_params
    from star_jax.models.dit import WanDiT
    from star_jax.navigate import run

    tmp = tmp_path_factory.mktemp("runs")
    untrained = tmp / "untrained_dit"
    shutil.copytree(TINY_MODEL, untrained, ignore=shutil.ignore_patterns("dit"))
    dit = WanDiT(dit_variant("tiny"), block_causal=True)
    save_params(jax.tree_util.tree_map(np.asarray, random_dit_params(dit, jax.random.PRNGKey(0))),
                str(untrained / "dit"))
    out, logs = {}, {}
    for name, checkpoint in (("embedded", ""), ("untrained", str(untrained))):
        config = get_config("blocks=1")
        with config.unlocked():
            config.output_dir = str(tmp / name)
            config.checkpoint = checkpoint or config.checkpoint
        logs[name] = []
        out[name] = run(config, log=logs[name].append)
    return out, logs, tmp


@pytest.mark.slow  # ~70 s of CPU (XLA compiles the VAE, warp and DiT at 96x160 once; the second run reuses them)
def test_embedded_model_beats_an_untrained_dit_on_the_default_world(default_runs):
    metas, logs, tmp = default_runs
    e, r = metas["embedded"], metas["untrained"]
    assert e["weights"].startswith(TINY_MODEL) and "untrained_dit" in r["weights"]
    assert e["model"]["trained_resolution_hw"] == [96, 160] and e["model"]["notes"] == []  # its own setting
    assert e["text"].startswith("the reference's caption: prompt 'a courtyard")
    pe, pr = e["ground_truth"]["psnr_db"], r["ground_truth"]["psnr_db"]
    assert pe["all"] > pr["all"] + 3.0, (pe, pr)
    assert pe["rendered"] > pr["rendered"] + 3.0 and pe["holes"] > pr["holes"], (pe, pr)
    assert e["ground_truth"]["render_psnr_db"] == r["ground_truth"]["render_psnr_db"]  # the same renders
    assert any(m.startswith("PSNR against the ground truth") for m in logs["embedded"])
    from star_jax.io.video import iter_video

    _, frames = iter_video(str(tmp / "embedded" / "comparison.mp4"))
    assert next(frames)[1].shape == (96, 2 * 160 + 4, 3)  # ground truth | gutter | generated
    assert not [f for f in os.listdir(tmp / "embedded") if f.startswith(".")]


@pytest.fixture(scope="module")
def student_workdir(tmp_path_factory):
    """A student train workdir as the trainer writes it: run.json + checkpoints/<step>/state with
    raw and EMA params (the embedded DiT's, the EMA shifted so the two differ)."""
    w = tmp_path_factory.mktemp("student")
    params = jax.tree_util.tree_map(np.asarray, restore_params(os.path.join(TINY_MODEL, "dit")))
    ema = jax.tree_util.tree_map(lambda p: p + np.float32(0.01), params)
    save_params({"params": params, "ema_params": ema}, str(w / "checkpoints" / "7" / "state"))
    config = {"task": "distill", "data": {"conditioning": "inspatio-release", "latent_hw": [12, 20], "latent_frames": 6}}
    (w / "run.json").write_text(json.dumps({"config": config}))
    return str(w), params, ema


def test_export_round_trip_gives_the_same_model(student_workdir, tmp_path):
    from star_jax.checkpoint.export import read_vae_json
    from star_jax.models.vae import WanVAE

    workdir, _, ema = student_workdir
    out = str(tmp_path / "model")
    export_main(["student", "--workdir", workdir, "--vae", os.path.join(TINY_MODEL, "vae"), "--out", out,
                 "--summary", "test"])  # the command, in-process
    card = read_model_card(out)
    assert card.training["step"] == 7 and card.training["params"] == "EMA" and card.training["what"] == "test"
    assert card.dit == read_model_card(TINY_MODEL).dit and card.resolution_hw == (96, 160)
    model = load_model_folder(out, "tiny")
    assert _tree_equal(model.dit_params, ema)  # the EMA params, bit for bit
    assert _tree_equal(model.vae_params, restore_params(os.path.join(TINY_MODEL, "vae"), what="vae"))
    assert model.vae.cfg == WanVAE(read_vae_json(os.path.join(TINY_MODEL, "vae", "vae.json"))).cfg  # vae.json came
    assert model.weights == f"{out} (test)"
    # the same outputs: a DiT forward of the loaded model and of the params that were exported
    x = jax.random.normal(jax.random.PRNGKey(0), (1, 3, 4, 6, 36))
    forward = jax.jit(lambda p: model.dit.apply({"params": p}, x, jnp.array([500.0]), jnp.zeros((1, 16, 32)))[0])
    y_loaded, y_exported = np.asarray(forward(model.dit_params)), np.asarray(forward(ema))
    np.testing.assert_array_equal(y_loaded, y_exported)
    assert np.isfinite(y_loaded).all() and np.abs(y_loaded).max() > 0


def _model_copy(tmp_path, name="model", edit=None, drop=None):
    folder = tmp_path / name
    shutil.copytree(TINY_MODEL, folder)
    if edit:
        path = folder / "star_model.json"
        meta = json.loads(path.read_text())
        edit(meta)
        path.write_text(json.dumps(meta))
    if drop:
        target = folder / drop
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    return str(folder)


@pytest.mark.parametrize("edit, drop, requested, phrase", [
    (lambda m: m.update(variant="1.3B"), None, None, r"star_model.json: field 'variant': expected 'tiny'"),
    (lambda m: m["dit"].update(num_heads=8), None, None, r"star_model.json: field 'dit.num_heads': expected 4"),
    (lambda m: m.update(sampler="fast"), None, None, r"star_model.json: field 'sampler'"),
    (lambda m: m.pop("resolution_hw"), None, None, r"star_model.json: field 'resolution_hw'"),
    (lambda m: m.update(conditioning="star-jax-v0"), None, "inspatio-release",
     r"star_model.json: the DiT was trained with conditioning 'star-jax-v0', but the pipeline asks for "
     r"'inspatio-release'"),
    (lambda m: m.update(conditioning="mine"), None, None, r"star_model.json: .*'mine'"),
    (None, "vae", None, r"model/vae: expected the model folder's vae/ params folder, found no such folder"),
    (None, "dit", None, r"model/dit: expected the model folder's dit/ params folder, found no such folder"),
    (None, "vae/vae.json", None, r"model/vae/vae.json: expected the trained VAE's config"),
    (None, "dit/_METADATA", None, r"model/dit: expected an orbax checkpoint folder"),
], ids=["variant", "num-heads", "sampler", "no-resolution", "conditioning", "unknown-conditioning", "no-vae",
        "no-dit", "no-vae-json", "damaged-dit"])
def test_bad_model_folders_are_refused(tmp_path, edit, drop, requested, phrase):
    folder = _model_copy(tmp_path, edit=edit, drop=drop)
    with pytest.raises(CheckpointError, match=phrase):
        check_model_folder(folder, "tiny", conditioning=requested)
    with pytest.raises(CheckpointError, match=phrase):
        load_model_folder(folder, "tiny", conditioning=requested)


def test_export_refuses_a_student_of_another_shape_and_writes_nothing(tmp_path):
    params = jax.tree_util.tree_map(np.asarray, restore_params(os.path.join(TINY_MODEL, "dit")))
    params["patch_embedding"]["kernel"] = params["patch_embedding"]["kernel"][..., :32]  # dim 32, not 64
    save_params(params, str(tmp_path / "other" / "dit"))
    with pytest.raises(CheckpointError, match=r"other/dit: the student's DiT params do not match the tiny variant: "
                                              r".*patch_embedding/kernel: checkpoint \(144, 32\) != model \(144, 64\)"):
        export_student(str(tmp_path / "other" / "dit"), os.path.join(TINY_MODEL, "vae"), str(tmp_path / "out"))
    bare_vae = tmp_path / "bare_vae"
    shutil.copytree(os.path.join(TINY_MODEL, "vae"), bare_vae)
    os.remove(bare_vae / "vae.json")
    with pytest.raises(CheckpointError, match=r"bare_vae/vae.json: expected a VAE export's config"):
        export_student(os.path.join(TINY_MODEL, "dit"), str(bare_vae), str(tmp_path / "out"))
    assert sorted(os.listdir(tmp_path)) == ["bare_vae", "other"]  # no out/, no staging folder
