"""The session's reference latents encoded once (against the per-block encode they replace), and
its decoder choice (the TAEHV stream against TAEHV's whole-clip decode; a missing taehv/ named)."""

import dataclasses

import jax
import numpy as np
import pytest

from star_jax.checkpoint import save_params
from star_jax.checkpoint.convert_taehv import write_taehv_folder
from star_jax.checkpoint.storage import CheckpointError
from star_jax.inference import NavigationSession, write_star_model_json
from star_jax.inference import session as session_module
from star_jax.inference.model import check_tiny_decoder_folder, load_model_folder
from star_jax.inference.session import bounce_index, cached_latent_index, cycle_latents
from star_jax.models import taehv
from star_jax.models.vae import denormalize_latents
from tests.inference.sessions import dolly_w2c, random_session_inputs

H = W = 32
T_REF = 9  # bounce period 16 frames: cycle L = 4 latents, cache N = 6 latents = blocks 0 and 1


@pytest.fixture(scope="module")
def setup():
    return random_session_inputs(T_REF, H, W)



def _window(j: int, num_source: int, freeze: int | None):
    """Source frames behind latent j of the endless stream (frame 0 alone, then 4j - 3 .. 4j)."""
    t = np.arange(1) if j == 0 else np.arange(4 * j - 3, 4 * j + 1)
    return np.full_like(t, freeze) if freeze is not None else bounce_index(t, num_source)


@pytest.mark.parametrize("num_source,freeze,cycle", [(9, None, 4), (5, None, 2), (8, None, 7), (2, None, 1),
                                                     (1, None, 1), (20, 3, 1)])
def test_cached_latent_has_the_same_source_window(num_source, freeze, cycle):
    """Every latent of the endless stream maps to a cached latent of the same source frames."""
    assert cycle_latents(num_source, freeze is not None) == cycle  # lcm(bounce period, 4) / 4
    cached = 3 * -(-(cycle + 1) // 3)
    idx = cached_latent_index(np.arange(300), cycle, cached)
    assert np.all(idx < cached) and np.all(idx[:cached] == np.arange(cached))
    for j in range(300):
        np.testing.assert_array_equal(_window(j, num_source, freeze), _window(int(idx[j]), num_source, freeze))
    with pytest.raises(ValueError, match="whole cycle"):
        cached_latent_index(np.arange(3), cycle + 2, cycle + 2)


def _run(model, ref, geom, blocks, monkeypatch, **kw):
    """Blocks of a session and the StarConditions the DiT saw in each."""
    seen = []
    real = session_module.star_block_jit

    def spy(dit, params, state, text, cond, **k):
        seen.append(jax.tree_util.tree_map(np.asarray, cond))
        return real(dit, params, state, text, cond, **k)

    monkeypatch.setattr(session_module, "star_block_jit", spy)
    session = NavigationSession(model, ref, geom, rng=jax.random.PRNGKey(4), **kw)
    w2c, outs, start = dolly_w2c(9 + 12 * (blocks - 1)), [], 0
    for _ in range(blocks):
        n = session.frames_needed()
        outs.append(session.step(target_w2c=w2c[start:start + n]))
        start += n
    return session, outs, seen


@pytest.mark.slow  # ~100 s on a shared 2-core CPU: two sessions of 4 blocks
def test_reference_encoded_once_equals_the_per_block_encode(setup, monkeypatch):
    """Within the cached stream (blocks 0-1: the first pass through the clip and the bounce back)
    the DiT's conditions equal the per-block encode; later, the reference latents are the cached
    ones of the same source window, and the per-block encode differs from them by its longer
    history only. Renders and masks never change."""
    model, ref, geom = setup
    once, outs, cond = _run(model, ref, geom, 4, monkeypatch)
    per_block, outs_b, cond_b = _run(model, ref, geom, 4, monkeypatch, reference_once=False)
    assert once.reference_metadata() == {"encoded": "once", "cycle_latents": 4, "cached_latents": 6,
                                         "seconds": once.reference_seconds}
    assert per_block.reference_metadata() == {"encoded": "per block"}
    for b in range(4):
        np.testing.assert_allclose(cond[b].render, cond_b[b].render, rtol=0, atol=1e-5)
        np.testing.assert_array_equal(cond[b].mask, cond_b[b].mask)
        np.testing.assert_array_equal(outs[b].source_indices, outs_b[b].source_indices)
    for b in range(2):  # the per-block stream and the cached one coincide
        np.testing.assert_allclose(cond[b].ref, cond_b[b].ref, rtol=0, atol=1e-5)
        np.testing.assert_allclose(outs[b].latents, outs_b[b].latents, rtol=0, atol=1e-4)
    cached = np.asarray(once.reference_latents())
    for b in (2, 3):
        j = 3 * b + np.arange(3)
        k = cached_latent_index(j, 4, 6)
        np.testing.assert_array_equal(cond[b].ref, cached[:, k])
        assert np.abs(cond[b].ref - cond_b[b].ref).max() > 1e-4  # history of more than one cycle
    once.reset()
    assert once._ref_latents is not None  # reset keeps the camera-independent cache


def test_tiny_decoder_streams_as_the_whole_clip(setup):
    model, ref, geom = setup
    session = NavigationSession(model, ref, geom, rng=jax.random.PRNGKey(4), decoder="tiny")
    assert session.decoder_metadata() == {"decoder": "tiny", "network": "TAEHV", "weights": model.taehv_source}
    w2c = dolly_w2c(21)
    outs = [session.step(target_w2c=w2c[:9]), session.step(target_w2c=w2c[9:])]
    assert [len(o.frames) for o in outs] == [9, 12]
    latents = np.concatenate([o.latents for o in outs], axis=1)
    whole = taehv.decode(model.taehv, model.taehv_params, denormalize_latents(latents, model.vae.cfg))[0]
    whole = np.clip(np.round((np.asarray(whole) + 1) * 127.5), 0, 255)
    streamed = np.concatenate([o.frames for o in outs]).astype(np.float64)
    assert whole.shape == streamed.shape == (21, H, W, 3)
    assert np.abs(streamed - whole).max() <= 1.0  # uint8 rounding only
    assert streamed.std() > 1.0


def test_tiny_decoder_missing_or_loaded_from_the_model_folder(setup, tmp_path):
    model, ref, geom = setup
    bare = dataclasses.replace(model, taehv=None, taehv_params=None, taehv_source=str(tmp_path / "taehv"))
    with pytest.raises(CheckpointError, match=f"decoder 'tiny': {tmp_path / 'taehv'}: expected a TAEHV decoder"):
        NavigationSession(bare, ref, geom, decoder="tiny")
    with pytest.raises(ValueError, match="decoder must be one of"):
        NavigationSession(model, ref, geom, decoder="fast")
    assert NavigationSession(bare, ref, geom).decoder_metadata()["decoder"] == "wan"

    save_params(model.dit_params, str(tmp_path / "dit"))
    save_params(model.vae_params, str(tmp_path / "vae"))
    write_star_model_json(str(tmp_path))
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'taehv'}: expected the model folder's TAEHV folder"):
        check_tiny_decoder_folder(str(tmp_path))
    assert load_model_folder(str(tmp_path), "tiny").taehv is None
    write_taehv_folder({"decoder": model.taehv_params["decoder"]}, model.taehv.cfg, str(tmp_path / "taehv"),
                       "tiny", "random")
    check_tiny_decoder_folder(str(tmp_path))
    loaded = load_model_folder(str(tmp_path), "tiny")
    assert loaded.taehv.cfg == model.taehv.cfg and loaded.taehv_source == str(tmp_path / "taehv")
    for a, b in zip(jax.tree_util.tree_leaves(loaded.taehv_params), jax.tree_util.tree_leaves(
            {"decoder": model.taehv_params["decoder"]})):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
