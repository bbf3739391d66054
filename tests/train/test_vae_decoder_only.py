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
