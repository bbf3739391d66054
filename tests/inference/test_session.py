"""The streaming session against the offline path (whole-video conditions, the rollout scan, one
decode) under the model's conditioning convention, a checkpoint's stored convention driving the
session, key-driven cameras, endless source indexing, and bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.io.manifest import planar_prior_geometry
from star_jax.geometry import warp_frames
from star_jax.checkpoint import save_params
from star_jax.inference import (
    NavigationSession,
    encode_conditions,
    get_conditioning,
    load_star_model,
    rollout,
    write_star_model_json,
)
from star_jax.inference.model import load_text_embedding
from star_jax.inference.session import bounce_index
from star_jax.models.vae import decode, denormalize_latents
from tests.inference.sessions import dolly_w2c, random_session_inputs

H = W = 32
T_REF = 20


@pytest.fixture(scope="module")
def setup():
    return random_session_inputs(T_REF, H, W)



def _offline_conditions(model, ref, geom, w2c):
    """Every frame's render at once (the model's warp recipe), whole-video encode with its mask
    encoding -> StarConditions (1, n, h, w, C)."""
    src = bounce_index(np.arange(len(w2c)), T_REF)
    recipe = model.conditioning.warp_recipe(2)
    warped = warp_frames(jnp.asarray(ref[src], jnp.float32) / 255.0, geom.depth[src], geom.K[src], geom.w2c[src],
                         geom.K[src], w2c, out_hw=(H, W), recipe=recipe)
    return encode_conditions(model.vae, model.vae_params, jnp.asarray(ref[src], jnp.float32)[None] / 127.5 - 1.0,
                             warped.rgb[None] * 2.0 - 1.0, warped.mask[None], convention=model.conditioning)


def test_streaming_session_equals_offline_rollout(setup):
    model, ref, geom = setup
    assert model.conditioning.name == "inspatio-release"  # the default
    session = NavigationSession(model, ref, geom, rng=jax.random.PRNGKey(4))
    assert session.warp_recipe == model.conditioning.warp_recipe(2) and session.warp_recipe.supersample == 2
    total = 9 + 12 + 12
    w2c = dolly_w2c(total)
    outs, start = [], 0
    for _ in range(3):
        n = session.frames_needed()
        outs.append(session.step(target_w2c=w2c[start:start + n]))
        start += n
    assert [o.frames.shape[0] for o in outs] == [9, 12, 12]
    assert set(outs[0].latency) == {"warp", "encode", "dit", "decode", "total"}

    # offline: every frame's render at once, whole-video encode, the scan, one decode
    cond = _offline_conditions(model, ref, geom, w2c)
    latents = rollout(model.dit, model.dit_params, model.text, cond, jax.random.PRNGKey(4))
    np.testing.assert_allclose(np.concatenate([o.latents for o in outs], axis=1), latents, rtol=1e-4, atol=1e-4)
    frames = decode(model.vae, model.vae_params, denormalize_latents(latents, model.vae.cfg))[0]
    frames = np.clip(np.round((np.asarray(frames) + 1) * 127.5), 0, 255)
    streamed = np.concatenate([o.frames for o in outs]).astype(np.float64)
    assert np.abs(streamed - frames).max() <= 1.0  # uint8 rounding only
    assert streamed.std() > 1.0  # not a constant image


def test_stored_convention_drives_the_session(setup, tmp_path):
    """A checkpoint that records "star-jax-v0" loads as such and its session says so; a session
    of that convention renders and encodes that way: equal to the offline path under it (mask
    values in [0, 1], not the release's [-1, 1])."""
    model, ref, geom = setup
    save_params(model.dit_params, str(tmp_path / "dit"))
    save_params(model.vae_params, str(tmp_path / "vae"))
    write_star_model_json(str(tmp_path), "star-jax-v0")
    loaded = load_star_model("tiny", str(tmp_path / "dit"), str(tmp_path / "vae"), dtype="float32")
    assert loaded.conditioning == get_conditioning("star-jax-v0")
    meta = NavigationSession(loaded, ref, geom).conditioning_metadata()
    assert meta["convention"] == "star-jax-v0" and meta["warp"]["mode"] == "star-jax-v0"
    assert meta["source"] == str(tmp_path / "star_model.json")

    v0 = dataclasses.replace(model, conditioning=loaded.conditioning)  # the same networks: compiled code is reused
    session = NavigationSession(v0, ref, geom, rng=jax.random.PRNGKey(4))
    assert session.warp_recipe == get_conditioning("star-jax-v0").warp_recipe(2)
    w2c = dolly_w2c(33)
    got = np.concatenate([session.step(target_w2c=w2c[a:b]).latents for a, b in ((0, 9), (9, 21), (21, 33))], axis=1)
    cond = _offline_conditions(v0, ref, geom, w2c)
    assert float(cond.mask.min()) >= 0.0 and float(cond.mask.max()) == 1.0
    want = rollout(model.dit, model.dit_params, model.text, cond, jax.random.PRNGKey(4))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_key_driven_cameras_and_reset(setup):
    model, ref, geom = setup
    session = NavigationSession(model, ref, geom)
    out = session.step(keys=[{"forward"}] * session.frames_needed())
    # forward = +z in the reference camera; w2c translation of a camera at +z is -z
    z = -out.target_w2c[:, 2, 3]
    assert np.all(np.diff(z) > 0) and z[0] > 0
    assert out.masks.mean() > 0.5  # moving toward a plane keeps most pixels covered
    assert session.block == 1 and session.frame == 9
    session.reset()
    assert session.block == 0 and session.frame == 0 and session.frames_needed() == 9


def test_bounce_index_plays_back_and_forth():
    np.testing.assert_array_equal(bounce_index(np.arange(9), 4), [0, 1, 2, 3, 2, 1, 0, 1, 2])
    np.testing.assert_array_equal(bounce_index(np.arange(3), 1), [0, 0, 0])


def test_bad_input_is_named(setup, tmp_path):
    model, ref, geom = setup
    session = NavigationSession(model, ref, geom)
    with pytest.raises(ValueError, match=r"needs target_w2c of shape \(9, 4, 4\)"):
        session.step(target_w2c=dolly_w2c(8))
    bad = dolly_w2c(9)
    bad[3, 0, 0] = np.nan
    with pytest.raises(ValueError, match="block 0 target_w2c: matrix 3: expected finite"):
        session.step(target_w2c=bad)
    mirror = dolly_w2c(9)
    mirror[5, 0, :3] *= -1  # det R = -1: would flip the render; refused through the Python API too
    with pytest.raises(ValueError, match="matrix 5.*det R = \\+1"):
        session.step(target_w2c=mirror)
    with pytest.raises(ValueError, match="exactly one"):
        session.step()
    with pytest.raises(ValueError, match="uint8"):
        NavigationSession(model, ref.astype(np.float32), geom)
    with pytest.raises(ValueError, match="multiple of 16"):
        NavigationSession(model, ref[:, :24], planar_prior_geometry(T_REF, 24, W))
    np.save(tmp_path / "t.npy", np.zeros((5, 7), np.float32))
    with pytest.raises(ValueError, match=r"t.npy: text embedding must be \(Lc, 32\)"):
        load_text_embedding(str(tmp_path / "t.npy"), 32, 16)
