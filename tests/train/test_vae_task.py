"""The VAE task and its export: the KL term is the closed form (checked against torch), crops are
windows of the clips, a few optimizer steps lower the loss, the latent statistics are the
moments of the posterior means, export -> load_star_model decodes the same frames and
normalises with the exported statistics, bad vae.json files and bad data are one-line errors;
decoder-only training (`train_encoder=False`) freezes the encoder side, and its export keeps the
start's encoder and latent statistics."""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.train_vae import get_config
from star_jax.checkpoint.export import VAE_JSON, export_vae, folder_vae_config, read_vae_json
from star_jax.checkpoint.storage import CheckpointError, save_params
from star_jax.errors import InputError
from star_jax.inference.model import load_star_model
from star_jax.models.dit import WanDiT
from star_jax.models.vae import LatentDist, WanVAE, decode_start, init_vae_params, normalize_latents
from star_jax.models.variants import dit_variant, vae_variant
from star_jax.train.optim import OptimConfig, make_optimizer
from star_jax.train.task import make_task
from star_jax.train.vae import (
    ENCODER_PARAMS,
    SyntheticClips,
    VAEDataConfig,
    VAETrainConfig,
    kl_divergence,
    latent_stats,
    posterior_mean,
    random_crops,
    vae_loss,
)

FAST = {"xla_backend_optimization_level": 0}


def test_kl_matches_the_closed_form_and_torch():
    """KL(N(mu, e^logvar) || N(0, 1)) per element = 0.5 (mu^2 + e^logvar - 1 - logvar), and
    torch.distributions agrees; zero exactly at the prior."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    mu, logvar = rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))
    got = np.asarray(kl_divergence(LatentDist(jnp.asarray(mu, jnp.float32), jnp.asarray(logvar, jnp.float32))))
    np.testing.assert_allclose(got, 0.5 * (mu**2 + np.exp(logvar) - 1 - logvar), rtol=1e-5, atol=1e-6)
    td = torch.distributions
    ref = td.kl_divergence(td.Normal(torch.tensor(mu), torch.tensor(np.exp(0.5 * logvar))),
                           td.Normal(torch.zeros(mu.shape, dtype=torch.float64), torch.ones(mu.shape, dtype=torch.float64)))
    np.testing.assert_allclose(got, ref.numpy(), rtol=1e-5, atol=1e-6)
    zero = kl_divergence(LatentDist(jnp.zeros((3,)), jnp.zeros((3,))))
    np.testing.assert_array_equal(zero, 0.0)


def test_crops_are_windows_of_the_clips_some_mirrored():
    """Every crop equals the clip's window at some (t, y, x), as is or mirrored left-right, and
    over many videos both occur."""
    videos = np.random.default_rng(1).integers(0, 256, (16, 9, 24, 32, 3), dtype=np.uint8)
    crops = np.asarray(random_crops(jnp.asarray(videos), jax.random.PRNGKey(3), 5, (8, 16), True))
    assert crops.shape == (16, 5, 8, 16, 3) and crops.dtype == np.uint8
    mirrored = []
    for v, c in zip(videos, crops):
        hits = [(t, y, x, m) for t in range(5) for y in range(17) for x in range(17) for m in (0, 1)
                if np.array_equal(v[t:t + 5, y:y + 8, x:x + 16][:, :, ::-1 if m else 1], c)]
        assert len(hits) == 1, hits
        mirrored.append(hits[0][3])
    assert 0 < sum(mirrored) < len(mirrored)


def _tiny(frames=1, hw=16, base_dim=4):
    vae = WanVAE(vae_variant("tiny", base_dim=base_dim))
    data = VAEDataConfig(clip_frames=frames, clip_hw=(hw, hw), crop_frames=frames, crop_hw=(hw, hw), flip=False)
    return vae, data


def _tiny_params(vae, hw=16):
    init = lambda k: init_vae_params(vae, k, hw, hw)
    return jax.jit(init).lower(jax.random.PRNGKey(0)).compile(compiler_options=FAST)(jax.random.PRNGKey(0))


@pytest.mark.slow  # ~70 s on 2 busy CPU cores, mostly compiling the gradient
def test_a_few_adam_steps_lower_the_loss():
    """Five Adam steps on a fixed batch and key (single-frame clips: the first causal chunk)
    lower the loss at every step, and the aux PSNR rises."""
    vae, data = _tiny()
    params = _tiny_params(vae)
    src = SyntheticClips(2, 1, (16, 16), seed=4)
    batch = {"video": jnp.asarray(np.stack([src[i]["video"] for i in range(2)]))}
    tx, key = optax.adam(3e-3), jax.random.PRNGKey(1)

    def step(p, o, batch, key):
        (loss, aux), g = jax.value_and_grad(lambda q: vae_loss(vae, VAETrainConfig(), data, q, batch, key),
                                            has_aux=True)(p)
        u, o = tx.update(g, o, p)
        return optax.apply_updates(p, u), o, loss, aux["psnr"]

    opt = tx.init(params)
    run = jax.jit(step).lower(params, opt, batch, key).compile(compiler_options=FAST)
    losses, psnrs = [], []
    for _ in range(5):
        params, opt, loss, p = run(params, opt, batch, key)
        losses.append(float(loss))
        psnrs.append(float(p))
    assert all(b < a for a, b in zip(losses, losses[1:])), losses
    assert psnrs[-1] > psnrs[0] + 0.3, psnrs


def test_latent_stats_are_the_moments_of_the_posterior_means():
    vae, _ = _tiny()
    params = random_params(vae, 2)
    videos = np.random.default_rng(3).integers(0, 256, (4, 1, 16, 16, 3), dtype=np.uint8)
    mean, std = latent_stats(vae, params, videos, batch=2)
    z = np.concatenate([np.asarray(posterior_mean(vae, params, jnp.asarray(v)), np.float64)
                        for v in (videos[:2], videos[2:])])
    z = z.reshape(-1, vae.cfg.z_dim)
    np.testing.assert_allclose(mean, z.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(std, z.std(0), rtol=1e-4, atol=1e-6)


def random_params(module, seed, *init_args):
    """Random-normal params of `module` from its abstract init (nothing compiled)."""
    if not init_args:
        init_args = (jnp.zeros((1, 5, 16, 16, 3), jnp.float32),)
    shapes = jax.eval_shape(lambda: nn.meta.unbox(module.init(jax.random.PRNGKey(0), *init_args)["params"]))
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A random tiny VAE exported with made-up stats, and a random tiny DiT folder beside it."""
    root = tmp_path_factory.mktemp("export")
    cfg = dit_variant("tiny")
    dit = WanDiT(cfg, block_causal=True)
    dit_params = random_params(dit, 0, jnp.zeros((1, 3, 4, 4, cfg.in_dim)), jnp.zeros((1,)),
                               jnp.zeros((1, 4, cfg.text_dim)))
    save_params(dit_params, str(root / "dit"))
    vae = WanVAE(vae_variant("tiny"))
    params = random_params(vae, 1)
    mean, std = np.linspace(-1, 1, 16), np.linspace(0.5, 2, 16)
    export_vae(params, str(root / "vae"), vae.cfg, (mean, std), {"note": "test"})
    return root, (vae, params), mean, std


def test_export_then_load_star_model_decodes_the_same_frames(exported):
    root, (vae, params), mean, std = exported
    loaded = load_star_model("tiny", str(root / "dit"), str(root / "vae"), dtype="float32")
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                            jax.tree_util.tree_leaves(loaded.vae_params)):
        np.testing.assert_array_equal(np.asarray(b), a, err_msg=jax.tree_util.keystr(path))
    same = lambda c: {k: v for k, v in dataclasses.asdict(c).items() if not k.startswith("latents_")}
    assert same(loaded.vae.cfg) == same(vae.cfg)
    z = jax.random.normal(jax.random.PRNGKey(5), (1, 1, 2, 3, 16))
    run = jax.jit(lambda p, z: decode_start(vae, p, z)[0]).lower(params, z).compile(compiler_options=FAST)
    np.testing.assert_array_equal(np.asarray(run(loaded.vae_params, z)), np.asarray(run(params, z)))
    meta = json.load(open(root / "vae" / VAE_JSON))
    assert meta["training"] == {"note": "test"} and meta["config"]["base_dim"] == 8


def test_vae_json_stats_reach_normalize_latents(exported):
    root, _, mean, std = exported
    loaded = load_star_model("tiny", str(root / "dit"), str(root / "vae"), dtype="float32")
    np.testing.assert_allclose(loaded.vae.cfg.latents_mean, mean)
    np.testing.assert_allclose(loaded.vae.cfg.latents_std, std)
    z = np.random.default_rng(6).normal(size=(2, 3, 16)).astype(np.float32)
    np.testing.assert_allclose(normalize_latents(jnp.asarray(z), loaded.vae.cfg), (z - mean) / std, rtol=1e-5,
                               atol=1e-6)
    # without vae.json: the variant's published statistics (today's behaviour)
    assert folder_vae_config(str(root / "dit")) is None


@pytest.mark.parametrize("edit, field", [
    (lambda m: "{not json", "JSON"),
    (lambda m: {**m, "format": 7}, "format"),
    (lambda m: {**m, "config": {**m["config"], "base_dims": 8}}, "base_dims"),
    (lambda m: {**m, "config": {k: v for k, v in m["config"].items() if k != "z_dim"}}, "z_dim"),
    (lambda m: {**m, "config": {**m["config"], "base_dim": "8"}}, "config.base_dim"),
    (lambda m: {**m, "config": {**m["config"], "latents_std": [1.0] * 15 + [0.0]}}, "config.latents_std"),
    (lambda m: {**m, "config": {**m["config"], "latents_mean": [0.0] * 3}}, "config.latents_mean"),
])
def test_a_bad_vae_json_is_a_checkpoint_error(exported, tmp_path, edit, field):
    root, _, _, _ = exported
    meta = json.load(open(root / "vae" / VAE_JSON))
    bad = edit(meta)
    path = tmp_path / VAE_JSON
    path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    with pytest.raises(CheckpointError, match=field) as e:
        read_vae_json(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_load_star_model_refuses_params_that_do_not_fit_the_vae_json(exported, tmp_path):
    """A vae.json recording another width than the stored params: a CheckpointError before compute."""
    import shutil

    root, _, _, _ = exported
    shutil.copytree(root / "vae", tmp_path / "vae")
    meta = json.load(open(tmp_path / "vae" / VAE_JSON))
    meta["config"]["base_dim"] = 16
    (tmp_path / "vae" / VAE_JSON).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="do not match"):
        load_star_model("tiny", str(root / "dit"), str(tmp_path / "vae"), dtype="float32")


def test_the_registry_builds_the_vae_task_from_the_experiment_config():
    task = make_task(get_config("crop=32,frames=5"))
    assert task.name == "vae" and set(task.example_spec) == {"video"}
    assert task.example_spec["video"].shape == (9, 96, 160, 3) and task.example_spec["video"].dtype == np.uint8
    ex = task.source[3]["video"]
    assert ex.shape == (9, 96, 160, 3) and ex.dtype == np.uint8 and ex.std() > 10
    long = make_task(get_config("crop=32,frames=45,clip_frames=45"))  # whole 45-frame clips (4 STAR blocks)
    assert long.example_spec["video"].shape == (45, 96, 160, 3) and long.source[0]["video"].shape[0] == 45
    with pytest.raises(InputError, match="exceeds the clips"):
        make_task(get_config("frames=45"))  # the stored clips have 9 frames unless clip_frames says more


def test_bad_data_settings_and_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="crop_frames must be 1 \\+ 4k"):
        VAEDataConfig(crop_frames=4)
    with pytest.raises(InputError, match="exceeds the clips"):
        VAEDataConfig(crop_hw=(128, 128))
    with pytest.raises(InputError, match="config.data.path"):
        VAEDataConfig(source="array")
    bad = tmp_path / "clips.npy"
    np.save(bad, np.zeros((2, 9, 96, 160), np.uint8))
    with pytest.raises(InputError, match="expected \\(N, T, H, W, 3\\) uint8"):
        make_task(get_config(f"data={bad}"))
    with pytest.raises(InputError, match="cannot read"):
        make_task(get_config(f"data={tmp_path / 'missing.npy'}"))


def _train_and_export(tmp_path, name, arg):
    """A 5-frame 16x16 base_dim-4 VAE run of the experiment config (plus `arg`) through the
    trainer, then `python -m star_jax.checkpoint.export vae` of it: (workdir, export folder)."""
    from star_jax.checkpoint.export import main as export_main
    from star_jax.train import train

    workdir, out = tmp_path / name, tmp_path / f"{name}_vae"
    config = get_config(f"crop=16,frames=5,base_dim=4,batch=2,{arg}")
    config.data.clip_frames, config.data.clip_hw, config.data.num_examples = 5, (16, 16), 8
    config.run.workdir, config.run.tensorboard = str(workdir), False
    with config.unlocked():
        config.run.compiler_options = dict(FAST)
    assert train(config, devices=jax.devices()[:1]).status == "done"
    export_main(["vae", "--workdir", str(workdir), "--out", str(out), "--stats_videos", "4"])
    return workdir, out


@pytest.mark.slow  # compiles a 5-frame VAE training step through the trainer
def test_train_then_export_command_writes_a_loadable_vae(tmp_path):
    """The trainer runs the "vae" task from the experiment config; `python -m
    star_jax.checkpoint.export vae` then writes the run's EMA params with vae.json (its width,
    stats measured on the run's data, the step)."""
    from star_jax.checkpoint.storage import restore_params

    workdir, out = _train_and_export(tmp_path, "run", "steps=3")
    cfg = read_vae_json(str(out / VAE_JSON))
    assert cfg.base_dim == 4 and all(s > 0 for s in cfg.latents_std)
    assert json.load(open(out / VAE_JSON))["training"]["step"] == 3
    state = restore_params(str(workdir / "checkpoints" / "3" / "state"))
    for a, b in zip(jax.tree_util.tree_leaves(state["ema_params"]), jax.tree_util.tree_leaves(restore_params(str(out)))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# --- decoder-only training (train_encoder=False) ---------------------------------------------


@pytest.mark.slow  # ~45 s on 2 CPU cores: two gradient programs of the VAE
def test_decoder_only_freezes_the_encoder_and_keeps_the_decoder_gradient():
    """The encoder side gets exactly zero gradient and the trainer's optimizer leaves it
    bit-identical, while the decoder's gradient is the one of full training."""
    vae, data = _tiny()
    params = _tiny_params(vae)
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
    from star_jax.checkpoint.storage import restore_params

    _, first = _train_and_export(tmp_path, "full", "steps=2,seed=0")
    _, second = _train_and_export(tmp_path, "decoder", f"steps=2,seed=1,train_encoder=false,init={first}")
    a, b = restore_params(str(first), what="vae"), restore_params(str(second), what="vae")
    for name in a:
        pairs = list(zip(jax.tree_util.tree_leaves(a[name]), jax.tree_util.tree_leaves(b[name])))
        if name in ENCODER_PARAMS:
            for x, y in pairs:
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
        else:
            assert any(np.any(np.asarray(x) != np.asarray(y)) for x, y in pairs), name
    ca, cb = read_vae_json(str(first / VAE_JSON)), read_vae_json(str(second / VAE_JSON))
    assert ca.latents_mean == cb.latents_mean and ca.latents_std == cb.latents_std


def test_make_clips_writes_the_worlds_source_and_target_videos(tmp_path):
    """The self-contained clips for VAE training: world i's source then target video, any 1 + 4k
    frames, exactly the frames the world generator renders."""
    from data_pipelines.worlds import WorldSpec, sample_world
    from experiments.train_vae import make_clips

    out = tmp_path / "clips.npy"
    make_clips(str(out), worlds=1, workers=1, first_seed=1_000_003, frames=5)
    clips = np.load(out)
    w = sample_world(1_000_003, WorldSpec(height=96, width=160, num_frames=5))
    assert clips.shape == (2, 5, 96, 160, 3) and clips.dtype == np.uint8
    np.testing.assert_array_equal(clips[0], w.source_rgb)
    np.testing.assert_array_equal(clips[1], w.target_rgb)
    assert not [f for f in os.listdir(tmp_path) if f != "clips.npy"]  # written atomically, nothing left beside it
