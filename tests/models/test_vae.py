"""Wan VAE: parity with diffusers' AutoencoderKLWan through the production converter, the Wan
naming against diffusers' own converter, causality and the streaming cache, bad input."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.checkpoint.convert import CheckpointError
from star_jax.checkpoint.vae import (
    convert_vae_state,
    wan_to_diffusers_keys,
)
from star_jax.models.variants import vae_variant
from star_jax.models.vae import (
    WanVAE,
    decode,
    decode_chunk,
    decode_continue,
    denormalize_latents,
    encode,
    init_decode_cache,
    init_vae_params,
    normalize_latents,
)
from tests.models import torch_refs

CFG = vae_variant("tiny")


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def reference():
    model = torch_refs.diffusers_vae(CFG)
    return model, convert_vae_state(torch_refs.state_numpy(model), CFG)


@pytest.mark.parametrize("frames", [1, 5, 9])
def test_encode_matches_diffusers(reference, frames):
    model, params = reference
    video = np.random.default_rng(frames).uniform(-1, 1, (2, frames, 32, 48, 3)).astype(np.float32)
    mean, logvar = torch_refs.run_diffusers_vae_encode(model, video)
    dist = encode(WanVAE(CFG), params, jnp.asarray(video))
    assert dist.mean.shape == mean.shape == (2, 1 + (frames - 1) // 4, 4, 6, 16)
    assert _rel(dist.mean, mean) < 1e-4
    assert _rel(dist.logvar, logvar) < 1e-4


@pytest.mark.parametrize("latent_frames", [1, 2, 3])
def test_decode_matches_diffusers(reference, latent_frames):
    model, params = reference
    z = np.random.default_rng(latent_frames).normal(size=(2, latent_frames, 4, 6, 16)).astype(np.float32)
    want = torch_refs.run_diffusers_vae_decode(model, z)
    got = decode(WanVAE(CFG), params, jnp.asarray(z))
    assert got.shape == want.shape == (2, 1 + 4 * (latent_frames - 1), 32, 48, 3)
    assert (np.abs(want) < 0.99).mean() > 0.5, "reference saturated: the comparison would be vacuous"
    assert _rel(got, want) < 1e-4


def test_wan_names_agree_with_diffusers_converter(reference):
    """Our Wan -> diffusers table, inverted and fed to diffusers' own convert_wan_vae_to_diffusers,
    gives back the diffusers state exactly; and the Wan-named state converts to the same params."""
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    model, params = reference
    state = torch_refs.state_numpy(model)
    to_wan = {d: w for w, d in wan_to_diffusers_keys(CFG).items()}
    assert set(to_wan) == set(state)
    wan_state = {to_wan[k]: v for k, v in state.items()}
    back = convert_wan_vae_to_diffusers(dict(wan_state))
    assert set(back) == set(state)
    for k in state:
        np.testing.assert_array_equal(np.asarray(back[k]), state[k])
    from_wan = convert_vae_state(wan_state, CFG)
    jax.tree_util.tree_map(np.testing.assert_array_equal, from_wan, params)


def test_converter_lists_bad_keys(reference):
    model, _ = reference
    state = torch_refs.state_numpy(model)
    state.pop("decoder.up_blocks.1.resnets.0.conv_shortcut.weight")
    state["decoder.extra.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError, match=r"missing \(1\).*conv_shortcut(.|\n)*unexpected \(1\).*decoder.extra"):
        convert_vae_state(state, CFG)
    state = torch_refs.state_numpy(model)
    state["encoder.conv_in.weight"] = state["encoder.conv_in.weight"][:4]
    with pytest.raises(CheckpointError, match="mis_shaped.*encoder/conv_in/kernel"):
        convert_vae_state(state, CFG)


def test_vae_1p3b_parameter_count():
    """The full-size VAE by eval_shape, against diffusers' count on the meta device."""
    torch = pytest.importorskip("torch")
    import diffusers

    cfg = vae_variant("1.3B")
    abstract = jax.eval_shape(lambda: init_vae_params(WanVAE(cfg), jax.random.PRNGKey(0), 16, 16))
    ours = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(abstract))
    with torch.device("meta"):
        theirs = sum(p.numel() for p in diffusers.AutoencoderKLWan().parameters())
    assert ours == theirs
    assert 120e6 < ours < 135e6  # the published Wan2.1 VAE has ~127M parameters


def test_encoder_and_decoder_are_causal(reference):
    """Changing frames after 1 + 4k leaves latents 0..k unchanged; changing latent j leaves the
    frames decoded from latents before j unchanged."""
    _, params = reference
    vae = WanVAE(CFG)
    rng = np.random.default_rng(0)
    video = rng.uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32)
    edited = video.copy()
    edited[:, 5:] = rng.uniform(-1, 1, edited[:, 5:].shape)
    a, b = encode(vae, params, jnp.asarray(video)).mean, encode(vae, params, jnp.asarray(edited)).mean
    np.testing.assert_array_equal(a[:, :2], b[:, :2])
    assert np.abs(np.asarray(a[:, 2] - b[:, 2])).max() > 1e-3

    z = rng.normal(size=(1, 7, 2, 3, 16)).astype(np.float32)  # the streaming test's shape: one compiled decode
    z2 = z.copy()
    z2[:, 2] += 1.0
    y, y2 = decode(vae, params, jnp.asarray(z)), decode(vae, params, jnp.asarray(z2))
    np.testing.assert_array_equal(y[:, :5], y2[:, :5])
    assert np.abs(np.asarray(y[:, 5:] - y2[:, 5:])).max() > 1e-3


def test_streaming_decode_with_fixed_shape_cache(reference):
    """Block-by-block decoding (the rollout's streaming path) equals one decode of the whole
    sequence, and the cache keeps one shape: the zero cache from init_decode_cache."""
    _, params = reference
    vae = WanVAE(CFG)
    z = jnp.asarray(np.random.default_rng(1).normal(size=(1, 7, 2, 3, 16)).astype(np.float32))
    whole = decode(vae, params, z)

    y0, cache = decode_chunk(vae, params, z[:, :1], None, True)
    template = init_decode_cache(vae, params, batch=1, latent_hw=(2, 3))
    assert jax.tree_util.tree_structure(cache) == jax.tree_util.tree_structure(template)
    jax.tree_util.tree_map(lambda a, b: (a.shape, a.dtype) == (b.shape, b.dtype) or pytest.fail("shape"),
                           cache, template)
    pieces = [y0]
    for start in (1, 4):  # two blocks of 3 latent frames
        y, cache = decode_continue(vae, params, z[:, start:start + 3], cache)
        pieces.append(y)
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), whole, rtol=0, atol=2e-5)  # other fusions


def test_latent_normalisation_round_trip():
    z = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3, 4, 16)).astype(np.float32))
    n = normalize_latents(z, CFG)
    np.testing.assert_allclose(n[..., 3], (z[..., 3] - CFG.latents_mean[3]) / CFG.latents_std[3], rtol=1e-6)
    np.testing.assert_allclose(denormalize_latents(n, CFG), z, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 6, 16, 16, 3), (1, 5, 20, 16, 3), (1, 5, 16, 16, 4), (5, 16, 16, 3)])
def test_bad_video_shape_is_named(reference, shape):
    _, params = reference
    with pytest.raises(ValueError, match=r"\(B, T, H, W, 3\)"):
        encode(WanVAE(CFG), params, jnp.zeros(shape, jnp.float32))


def test_bfloat16_compute_stays_close(reference):
    """bf16 convolutions with fp32 params and fp32 norms: within bf16 precision of fp32."""
    _, params = reference
    # the causality test's shape: its compiled fp32 encode is reused
    video = jnp.asarray(np.random.default_rng(2).uniform(-1, 1, (1, 9, 16, 16, 3)).astype(np.float32))
    full = encode(WanVAE(CFG), params, video).mean
    half = encode(WanVAE(vae_variant("tiny", dtype="bfloat16")), params, video).mean
    assert half.dtype == jnp.bfloat16
    assert _rel(half.astype(jnp.float32), np.asarray(full)) < 5e-2


def test_convert_cli_vae(reference, tmp_path, capsys):
    """`convert --model vae` on a Wan-named .pth writes an orbax checkpoint that restores the params."""
    torch = pytest.importorskip("torch")
    from star_jax.checkpoint import restore_params
    from star_jax.checkpoint.convert import main as convert_main

    model, params = reference
    to_wan = {d: w for w, d in wan_to_diffusers_keys(CFG).items()}
    torch.save({to_wan[k]: v for k, v in model.state_dict().items()}, tmp_path / "vae.pth")
    out = tmp_path / "vae_ckpt"
    convert_main(["--model", "vae", "--src", str(tmp_path / "vae.pth"), "--variant", "tiny", "--out", str(out)])
    assert "VAE, tiny" in capsys.readouterr().out
    jax.tree_util.tree_map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), b), restore_params(str(out)),
                           params)
