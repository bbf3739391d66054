"""Warm start from a Wan T2V DiT (in_dim 16): the teacher (in_dim 36) initialised from it computes
the T2V model's function of the noisy latent whatever the mask and render channels hold; any
other mismatch is a CheckpointError naming the parameter; the trainer applies it on a fresh start
and records the conditioning convention in the workdir."""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.train_teacher import get_config
from star_jax.checkpoint.storage import CheckpointError, save_params
from star_jax.models import WanDiT, dit_variant
from star_jax.train.init import expand_patch_kernel, init_params, read_source_params
from star_jax.train.loop import train

T2V = dit_variant("tiny", in_dim=16)
STAR = dataclasses.replace(T2V, in_dim=36)
SHAPE = (1, 6, 4, 4)  # (B, T, h, w) latents


def _init(cfg, seed):
    x = jnp.zeros(SHAPE + (cfg.in_dim,))
    init = jax.jit(WanDiT(cfg).init)  # one compile, not op-by-op
    return init(jax.random.key(seed), x, jnp.zeros((1, 6)), jnp.zeros((1, 4, cfg.text_dim)))["params"]


@pytest.fixture(scope="module")
def t2v_folder(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("t2v") / "dit")
    params = nn.meta.unbox(_init(T2V, 1))
    params["patch_embedding"]["bias"] = params["patch_embedding"]["bias"] + 0.1  # not the zero init
    save_params(params, path)
    return path, params


def test_teacher_from_t2v_equals_t2v_on_the_noisy_channels(t2v_folder):
    path, t2v_params = t2v_folder
    abstract = nn.meta.unbox(jax.eval_shape(lambda: _init(STAR, 0)))
    star_params = init_params(path, abstract, STAR.patch_size)
    rng = np.random.default_rng(0)
    noisy = jnp.asarray(rng.normal(size=SHAPE + (16,)), jnp.float32)
    t = jnp.asarray([[0.0] * 3 + [600.0] * 3])
    text = jnp.asarray(rng.normal(size=(1, 5, T2V.text_dim)), jnp.float32)
    want, _ = WanDiT(T2V).apply({"params": t2v_params}, noisy, t, text)
    for scale in (0.0, 1.0, 50.0):  # any mask / render values
        cond = jnp.asarray(rng.normal(size=SHAPE + (20,)) * scale, jnp.float32)
        got, _ = WanDiT(STAR).apply({"params": star_params}, jnp.concatenate([noisy, cond], -1), t, text)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    # and every other parameter is the T2V one, bit for bit
    flat_t2v = dict(jax.tree_util.tree_leaves_with_path(t2v_params))
    for path_, x in jax.tree_util.tree_leaves_with_path(star_params):
        if "patch_embedding" not in jax.tree_util.keystr(path_) or "bias" in jax.tree_util.keystr(path_):
            np.testing.assert_array_equal(x, flat_t2v[path_])


def test_expand_patch_kernel_places_channels_per_patch_position():
    k = np.arange(4 * 2 * 3, dtype=np.float32).reshape(4 * 2, 3)  # 4 patch positions x 2 channels, dim 3
    out = expand_patch_kernel(k, (1, 2, 2), 5).reshape(4, 5, 3)
    np.testing.assert_array_equal(out[:, :2], k.reshape(4, 2, 3))
    assert not out[:, 2:].any()


def test_other_mismatches_name_the_parameter(t2v_folder, tmp_path):
    path, params = t2v_folder
    wide = nn.meta.unbox(jax.eval_shape(lambda: _init(dataclasses.replace(STAR, ffn_dim=256), 0)))
    with pytest.raises(CheckpointError, match=r"blocks/ffn_0/kernel is \(2, 64, 128\), this run's model needs "
                                              r"\(2, 64, 256\)"):
        init_params(path, wide, STAR.patch_size)
    fewer = dict(params)
    fewer.pop("head_modulation")
    save_params(fewer, str(tmp_path / "fewer"))
    star = nn.meta.unbox(jax.eval_shape(lambda: _init(STAR, 0)))
    with pytest.raises(CheckpointError, match=r"missing \['head_modulation'\]"):
        init_params(str(tmp_path / "fewer"), star, STAR.patch_size)
    with pytest.raises(CheckpointError, match="no such folder"):
        init_params(str(tmp_path / "nope"), star, STAR.patch_size)


@pytest.mark.slow  # one tiny teacher compile and step (~30 s on 2 cores)
def test_trainer_fresh_start_uses_init_from_and_writes_star_model_json(t2v_folder, tmp_path):
    path, _ = t2v_folder
    workdir = str(tmp_path / "teacher")
    config = get_config(f"variant=tiny,steps=1,batch=2,examples=4,height=32,width=32,workdir={workdir}")
    with config.unlocked():
        config.run.init_from = path
        config.run.tensorboard = False
        config.optim.lr = 1e-12  # one step leaves the params where the warm start put them
        config.optim.warmup_steps = 0
    train(config, devices=jax.devices()[:1])
    with open(os.path.join(workdir, "star_model.json")) as f:
        assert json.load(f)["conditioning"] == "inspatio-release"
    saved = read_source_params(workdir)  # the workdir form of init_from: its EMA params
    kernel = saved["patch_embedding/kernel"].reshape(4, 36, -1)
    np.testing.assert_allclose(kernel[:, 16:], 0.0, atol=1e-9)
    t2v = read_source_params(path)
    np.testing.assert_allclose(kernel[:, :16].reshape(64, -1), t2v["patch_embedding/kernel"], atol=1e-9)
    np.testing.assert_allclose(saved["head/kernel"], t2v["head/kernel"], atol=1e-9)
