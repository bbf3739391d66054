"""data_pipelines.precompute: each latent record against an independent recomputation from the
pixel record (the render job's warp, `encode` per video, `mask_to_latent`, the tiny text
encoder), the metadata, and the VAE folder's errors."""

import dataclasses
import json
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from data_pipelines import precompute, synth_worlds
from star_jax.checkpoint.export import export_vae
from star_jax.checkpoint.storage import CheckpointError
from star_jax.errors import InputError
from star_jax.geometry.warp import warp_frames, warp_recipe
from star_jax.inference.conditions import mask_to_latent
from star_jax.models.vae import WanVAE, encode, init_vae_params, normalize_latents
from star_jax.models.variants import vae_variant
from star_jax.render import render_conditions
from star_jax.text import HashedWordEncoder
from star_jax.train.records import dataset_info, open_split

H, W, T = 32, 48, 5


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory):
    """A random VAE (the tiny one's structure, one residual block per level to compile faster)
    exported as training exports one, with its own (non-Wan) latent statistics."""
    cfg = vae_variant("tiny", num_res_blocks=1)
    params = jax.jit(init_vae_params, static_argnums=(0, 2, 3))(WanVAE(cfg), jax.random.PRNGKey(3), 8, 8)
    stats = (np.linspace(-0.3, 0.3, 16), np.linspace(0.5, 2.0, 16))
    return export_vae(params, str(tmp_path_factory.mktemp("vae") / "export"), cfg, stats)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, vae_dir):
    root = tmp_path_factory.mktemp("pre")
    pixels, latents = str(root / "pixels"), str(root / "latents")
    synth_worlds.build(2, pixels, H, W, T, workers=1, test_fraction=0.5, progress=False)
    meta = precompute.build(pixels, vae_dir, latents, batch=2, progress=False)  # batch 2 > 1 clip: padding
    return pixels, latents, meta


@pytest.mark.slow  # ~2 CPU-minutes: compiles the VAE encoder twice, the warp, the render job
def test_latents_equal_an_independent_recomputation(datasets, vae_dir):
    pixels, latents, _ = datasets
    vae, params, _ = precompute.load_vae(vae_dir)
    cfg = vae.cfg
    text_encoder = HashedWordEncoder(32, 16)
    warp = jax.jit(warp_frames, static_argnames=("out_hw", "recipe"))
    job = types.SimpleNamespace(camera=types.SimpleNamespace(freeze_frame=-1), warp=types.SimpleNamespace(batch_frames=4))
    for split in ("train", "test"):
        px, lt = open_split(pixels, split), open_split(latents, split)
        assert len(px) == len(lt) == 1
        p, z = px[0], lt[0]
        assert int(z["example_id"]) == int(p["example_id"])
        src = jnp.asarray(p["source_rgb"], jnp.float32)

        def latent(video01):
            return np.asarray(normalize_latents(encode(vae, params, (video01 * 2.0 - 1.0)[None]).mean, cfg)[0])

        np.testing.assert_allclose(z["ref"], latent(src / 255.0), atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(z["target"], latent(jnp.asarray(p["target_rgb"], jnp.float32) / 255.0),
                                   atol=2e-5, rtol=1e-5)
        # the warp the session / render job run: the release recipe, point size 2
        out = warp(src / 255.0, p["source_depth"], p["K"], p["source_w2c"], p["K"], p["target_w2c"],
                   out_hw=(H, W), recipe=warp_recipe("inspatio-release", 2))
        np.testing.assert_allclose(z["render"], latent(out.rgb), atol=2e-5, rtol=1e-5)
        np.testing.assert_array_equal(z["mask"], np.asarray(mask_to_latent(out.mask[None], convention="inspatio-release"))[0])
        np.testing.assert_array_equal(z["render_valid"], np.asarray(out.mask).astype(np.uint8))
        # the render job itself (uint8 frames, in batches of 4 with the last padded) lands the same points
        geometry = types.SimpleNamespace(depth=p["source_depth"], K=np.broadcast_to(p["K"], (T, 3, 3)),
                                         w2c=p["source_w2c"])
        renders, masks = render_conditions(job, geometry, p["source_rgb"], p["target_w2c"],
                                           warp_recipe("inspatio-release", 2), log=lambda *_: None)
        np.testing.assert_array_equal(z["render_valid"], masks.astype(np.uint8))
        assert np.abs(z["render_rgb"].astype(int) - renders.astype(int)).max() <= 1  # uint8 mean truncates
        assert 0.2 < masks.mean() < 1.0 and set(np.unique(z["mask"])) <= {-1.0, -0.5, 0.0, 0.5, 1.0}
        # the caption's tiny text embedding, zero rows padded to text_len
        emb = text_encoder(p["caption"])
        np.testing.assert_array_equal(z["text"][:len(emb)], emb)
        assert z["text"].shape == (16, 32) and not z["text"][len(emb):].any()
        # the VAE's own statistics were used: undo them and the raw means come back
        raw = np.asarray(encode(vae, params, (src / 127.5 - 1.0)[None]).mean[0])
        np.testing.assert_allclose(z["ref"] * np.array(cfg.latents_std) + np.array(cfg.latents_mean), raw,
                                   atol=5e-5, rtol=1e-5)


@pytest.mark.slow  # shares the slow fixture
def test_metadata_and_shapes(datasets, vae_dir):
    pixels, latents, meta = datasets
    info = dataset_info(latents)
    assert info.name == "star_latents_worlds" and info.splits == {"train": 1, "test": 1}
    n, h, w = 2, H // 8, W // 8
    assert info.features["ref"] == ((n, h, w, 16), "float32") and info.features["mask"] == ((n, h, w, 4), "float32")
    assert info.features["render_rgb"] == ((T, H, W, 3), "uint8") and info.features["text"] == ((16, 32), "float32")
    vae, params, fingerprint = precompute.load_vae(vae_dir)
    assert info.metadata["vae"]["fingerprint"] == fingerprint == meta["vae"]["fingerprint"]
    assert info.metadata["vae"]["config"]["latents_std"][-1] == pytest.approx(2.0)
    assert info.metadata["conditioning"]["name"] == "inspatio-release"
    assert info.metadata["conditioning"]["warp"]["supersample"] == 2
    assert info.metadata["pixels"]["path"] == os.path.abspath(pixels)
    other = jax.tree_util.tree_map(lambda x: x + 1e-3, params)
    assert precompute.vae_fingerprint(vae.cfg, other) != fingerprint
    assert info.metadata["vae"]["encoder_fingerprint"] == precompute.encoder_fingerprint(vae.cfg, params)


def _vae_tree(seed: int, decoder_seed: int | None = None) -> dict:
    """A stand-in VAE params tree of the real top-level names (no network built): encoder side from
    `seed`, decoder side from `decoder_seed` (default the same)."""
    def part(s, *names):
        rng = np.random.default_rng(s)
        return {n: {"kernel": rng.standard_normal((3, 4)).astype(np.float32)} for n in names}

    d = seed if decoder_seed is None else decoder_seed
    return {**part(seed, "encoder", "quant_conv"), **part(d + 100, "decoder", "post_quant_conv")}


def test_latents_fit_a_vae_by_its_encoder_when_the_dataset_records_it():
    """Latents depend on the encoder side and the config's latent statistics only: a decoder
    fine-tuned on the frozen encoder (train_encoder=false) decodes them; another encoder, other
    statistics, or (for a dataset that records only the whole-VAE fingerprint) any change is refused."""
    cfg = vae_variant("tiny")
    start, new_decoder, new_encoder = _vae_tree(0), _vae_tree(0, decoder_seed=5), _vae_tree(1, decoder_seed=0)
    enc = precompute.encoder_fingerprint
    assert enc(cfg, new_decoder) == enc(cfg, start) != enc(cfg, new_encoder)
    assert precompute.vae_fingerprint(cfg, new_decoder) != precompute.vae_fingerprint(cfg, start)
    other_stats = dataclasses.replace(cfg, latents_std=tuple(2.0 * np.asarray(cfg.latents_std)))
    assert enc(other_stats, start) != enc(cfg, start)

    meta = {"path": "/runs/vae", "fingerprint": precompute.vae_fingerprint(cfg, start),
            "encoder_fingerprint": enc(cfg, start)}
    precompute.check_latents_vae(meta, "vae_dec", cfg, new_decoder, "data/latents")  # fits
    with pytest.raises(InputError, match=r"^vae_enc: encoder fingerprint [0-9a-f]{16}, but data/latents was "
                                         r"encoded by encoder [0-9a-f]{16} \(/runs/vae\)"):
        precompute.check_latents_vae(meta, "vae_enc", cfg, new_encoder, "data/latents")
    with pytest.raises(InputError, match="encoder fingerprint"):
        precompute.check_latents_vae(meta, "vae_stats", other_stats, start, "data/latents")
    old = {"path": "/runs/vae", "fingerprint": meta["fingerprint"]}  # written before encoder fingerprints
    precompute.check_latents_vae(old, "vae", cfg, start, "data/latents")
    with pytest.raises(InputError, match=r"VAE fingerprint [0-9a-f]{16}, but data/latents was encoded by VAE"):
        precompute.check_latents_vae(old, "vae_dec", cfg, new_decoder, "data/latents")
    precompute.check_latents_vae({}, "vae", cfg, new_encoder, "data/latents")  # nothing recorded: nothing to check
    # two datasets (a teacher's training latents and new ones, ode_pairs): encoders where both record one
    redone = {"path": "/runs/vae_dec", "fingerprint": precompute.vae_fingerprint(cfg, new_decoder),
              "encoder_fingerprint": enc(cfg, new_decoder)}
    assert precompute.comparable_fingerprints(meta, redone) == ("encoder", enc(cfg, start), enc(cfg, start))
    assert precompute.comparable_fingerprints(old, redone) == ("VAE", meta["fingerprint"], redone["fingerprint"])
    assert precompute.comparable_fingerprints({}, redone) == ("VAE", None, redone["fingerprint"])


def test_vae_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no vae.json"):
        precompute.load_vae(str(tmp_path))
    (tmp_path / "vae.json").write_text(json.dumps({"z_dim": 16}))
    with pytest.raises(CheckpointError, match="vae.json: expected"):
        precompute.load_vae(str(tmp_path))
    config = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(vae_variant("tiny")).items()}
    (tmp_path / "vae.json").write_text(json.dumps({"format": 1, "config": config}))
    with pytest.raises(CheckpointError, match="orbax"):
        precompute.load_vae(str(tmp_path))
