"""Decoder-only VAE training (`train_encoder=False`): the encoder side gets exactly zero gradient
and the trainer's optimizer leaves it bit-identical, while the decoder's gradient is the one of
full training; weight decay with a frozen encoder is refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.train_vae import get_config
from star_jax.errors import InputError
from star_jax.models.vae import WanVAE, init_vae_params
from star_jax.models.variants import vae_variant
from star_jax.train.optim import OptimConfig, make_optimizer
from star_jax.train.task import make_task
from star_jax.train.vae import ENCODER_PARAMS, SyntheticClips, VAEDataConfig, VAETrainConfig, vae_loss

FAST = {"xla_backend_optimization_level": 0}


@pytest.mark.slow  # ~45 s on 2 CPU cores: two gradient programs of the VAE
def test_decoder_only_freezes_the_encoder_and_keeps_the_decoder_gradient():
    vae = WanVAE(vae_variant("tiny", base_dim=4))
    data = VAEDataConfig(clip_frames=1, clip_hw=(16, 16), crop_frames=1, crop_hw=(16, 16), flip=False)
    params = jax.jit(lambda k: init_vae_params(vae, k, 16, 16)).lower(jax.random.PRNGKey(0)).compile(
        compiler_options=FAST)(jax.random.PRNGKey(0))
    src = SyntheticClips(2, 1, (16, 16), seed=4)
    batch = {"video": jnp.asarray(np.stack([src[i]["video"] for i in range(2)]))}
    key = jax.random.PRNGKey(1)
    tx, _ = make_optimizer(OptimConfig(lr=1e-2, warmup_steps=0), 10)

    def grads(p, train_encoder):
        cfg = VAETrainConfig(train_encoder=train_encoder)
        return jax.grad(lambda q: vae_loss(vae, cfg, data, q, batch, key)[0])(p)

    def both(p, o):
        g_full, g_dec = grads(p, True), grads(p, False)
        u, _ = tx.update(g_dec, o, p)
        return g_full, g_dec, jax.tree_util.tree_map(lambda a, b: a + b, p, u)

    opt = tx.init(params)
    g_full, g_dec, stepped = jax.jit(both).lower(params, opt).compile(compiler_options=FAST)(params, opt)
    for name in params:
        leaves = lambda t: jax.tree_util.tree_leaves(t[name])
        if name in ENCODER_PARAMS:  # no gradient, no update: bit-identical
            assert all(np.all(np.asarray(g) == 0) for g in leaves(g_dec)), name
            assert any(np.any(np.asarray(g) != 0) for g in leaves(g_full)), name
            for a, b in zip(leaves(params), leaves(stepped)):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        else:  # the decoder side learns exactly as in full training
            for a, b in zip(leaves(g_full), leaves(g_dec)):
                np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-5, atol=1e-8)
            assert any(np.any(np.asarray(a) != np.asarray(b)) for a, b in zip(leaves(params), leaves(stepped)))


def test_a_frozen_encoder_with_weight_decay_is_refused():
    config = get_config("train_encoder=false,crop=32,frames=5")
    assert config.vae_train.train_encoder is False
    with config.unlocked():
        config.optim.weight_decay = 0.01
    with pytest.raises(InputError, match="weight_decay"):
        make_task(config)


@pytest.mark.slow  # two trainer runs of a 5-frame VAE (~2-3 min on 2 CPU cores)
def test_decoder_only_fine_tune_exports_the_start_encoder_and_statistics(tmp_path):
    """Train a VAE, export it, fine-tune its decoder alone from that export, export again: the
    encoder side and the latent statistics are the first export's bit for bit (so a DiT trained
    on its latents sees the same latents), the decoder has moved."""
    from star_jax.checkpoint.export import VAE_JSON, read_vae_json
    from star_jax.checkpoint.export import main as export_main
    from star_jax.checkpoint.storage import restore_params
    from star_jax.train import train

    def run(name, arg):
        config = get_config(f"crop=16,frames=5,base_dim=4,batch=2,steps=2,{arg}")
        config.data.clip_frames, config.data.clip_hw, config.data.num_examples = 5, (16, 16), 8
        config.run.workdir, config.run.tensorboard = str(tmp_path / name), False
        with config.unlocked():
            config.run.compiler_options = dict(FAST)
        assert train(config, devices=jax.devices()[:1]).status == "done"
        export_main(["vae", "--workdir", str(tmp_path / name), "--out", str(tmp_path / f"{name}_vae"),
                     "--stats_videos", "4"])
        return str(tmp_path / f"{name}_vae")

    first = run("full", "seed=0")
    second = run("decoder", f"seed=1,train_encoder=false,init={first}")
    a, b = restore_params(first, what="vae"), restore_params(second, what="vae")
    for name in a:
        pairs = list(zip(jax.tree_util.tree_leaves(a[name]), jax.tree_util.tree_leaves(b[name])))
        if name in ENCODER_PARAMS:
            for x, y in pairs:
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert any(np.any(np.asarray(x) != np.asarray(y)) for x, y in pairs), name
    ca, cb = read_vae_json(f"{first}/{VAE_JSON}"), read_vae_json(f"{second}/{VAE_JSON}")
    assert ca.latents_mean == cb.latents_mean and ca.latents_std == cb.latents_std
