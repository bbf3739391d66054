"""TAEHV (the tiny decoder): parity with a PyTorch twin of the reference through the production
converter (tiny widths and the published widths at a small size), streaming equal to the whole
clip, causality, the converter's listings, the parameter count, bad input."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from star_jax.checkpoint.convert_taehv import (
    check_taehv_file,
    convert_taehv_state,
    flax_path,
    load_taehv_checkpoint,
    torch_name,
)
from star_jax.checkpoint.storage import CheckpointError
from star_jax.models.taehv import (
    TAEHV,
    decode,
    decode_continue,
    decode_start,
    encode,
    encode_chunk,
    init_decode_state,
    init_encode_state,
    init_taehv_params,
    taehv_param_shapes,
    taehv_variant,
)
from tests.models.taehv_reference import TAEHVTwin, apply_parallel

TWIN_SIZES = {"tiny": dict(enc_width=8, dec_widths=(16, 8, 8, 8)), "wan2.1": {}}
LATENT_HW = {"tiny": (4, 6), "wan2.1": (2, 3)}  # the published widths at a small size


def _rel(a, b):
    return float(np.abs(np.asarray(a) - b).max() / np.abs(b).max())


def _state(twin):
    return {k: v.numpy() for k, v in twin.state_dict().items()}


@pytest.fixture(scope="module", params=["tiny", "wan2.1"])
def pair(request):
    """(variant, torch twin with random weights, TAEHV, converted params)."""
    torch.manual_seed(0)
    twin = TAEHVTwin(**TWIN_SIZES[request.param]).eval()
    cfg = taehv_variant(request.param)
    return request.param, twin, TAEHV(cfg), convert_taehv_state(_state(twin), cfg)


def _latents(n, seed=0, hw=(4, 6)):
    return np.random.default_rng(seed).normal(size=(2, n, *hw, 16)).astype(np.float32)


def _nchw(x):
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(x, -1, 2)))


def _nhwc(x):
    return np.moveaxis(x.detach().numpy(), 2, -1)


@functools.partial(jax.jit, static_argnums=0)
def _raw_decode(tae, params, z):
    """The decoder's output before its clip (parity where random weights saturate the clip)."""
    state = init_decode_state(tae, z.shape[0], z.shape[2:4])
    return tae.apply({"params": params}, z, state, method=TAEHV.decode_chunk)[0]


@pytest.mark.parametrize(("pair", "n"), [("tiny", 1), ("tiny", 3), ("wan2.1", 3),
                                         pytest.param("wan2.1", 1, marks=pytest.mark.slow)], indirect=["pair"])
def test_decode_matches_torch(pair, n):
    name, twin, tae, params = pair
    z = _latents(n, seed=n, hw=LATENT_HW[name])
    hw = tuple(8 * s for s in LATENT_HW[name])
    with torch.no_grad():
        raw_want = _nhwc(apply_parallel(twin.decoder, _nchw(z)))  # before the reference's clamp
        want = _nhwc(twin.decode_video(_nchw(z))) * 2 - 1
    raw = _raw_decode(tae, params, jnp.asarray(z))
    assert raw.shape == raw_want.shape == (2, 4 * n, *hw, 3)
    assert _rel(raw, raw_want) < 1e-4
    got = decode(tae, params, jnp.asarray(z))
    assert got.shape == want.shape == (2, 1 + 4 * (n - 1), *hw, 3)
    assert np.abs(np.asarray(got) - want).max() < 1e-4


def test_encode_matches_torch(pair):
    """7 frames: padded to 8 by repeating the last, as the reference does."""
    name, twin, tae, params = pair
    h, w = LATENT_HW[name]
    video = np.random.default_rng(7).uniform(-1, 1, (2, 7, 8 * h, 8 * w, 3)).astype(np.float32)
    with torch.no_grad():
        want = _nhwc(twin.encode_video(_nchw((video + 1) / 2)))
    got = encode(tae, params, jnp.asarray(video))
    assert got.shape == want.shape == (2, 2, h, w, 16)
    assert _rel(got, want) < 1e-4


@pytest.mark.parametrize("pair", ["tiny", pytest.param("wan2.1", marks=pytest.mark.slow)], indirect=True)
def test_streaming_in_blocks_equals_whole_clip(pair):
    """The session's pattern: a stream of 3-latent blocks, the state carried, equals one decode."""
    name, twin, tae, params = pair
    z = jnp.asarray(_latents(9, seed=3, hw=LATENT_HW[name]))
    hw = tuple(8 * s for s in LATENT_HW[name])
    whole = decode(tae, params, z)
    start = jax.jit(lambda p, z: decode_start(tae, p, z))
    cont = jax.jit(lambda p, z, s: decode_continue(tae, p, z, s))
    y, state = start(params, z[:, :3])
    steady = jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), init_decode_state(tae, 2, LATENT_HW[name]))
    parts = [y]
    for k in (3, 6):
        assert jax.tree_util.tree_map(lambda a: (a.shape, a.dtype), state) == steady  # fixed shape
        y, state = cont(params, z[:, k: k + 3], state)
        assert y.shape == (2, 12, *hw, 3)
        parts.append(y)
    assert parts[0].shape == (2, 9, *hw, 3)
    assert np.abs(np.asarray(jnp.concatenate(parts, axis=1)) - np.asarray(whole)).max() < 1e-5


def test_encoder_streaming_equals_whole_clip():
    tae = TAEHV(taehv_variant("tiny"))
    params = init_taehv_params(tae, 1)
    video = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (1, 12, 32, 48, 3)), jnp.float32)
    state = init_encode_state(tae, 1, (32, 48))
    step = jax.jit(lambda p, x, s: encode_chunk(tae, p, x, s))
    parts = []
    for k in range(0, 12, 4):
        z, state = step(params, video[:, k: k + 4], state)
        parts.append(z)
    assert np.abs(np.asarray(jnp.concatenate(parts, 1)) - np.asarray(encode(tae, params, video))).max() < 1e-5


def test_decoder_is_causal():
    """Changing latent frame 2 leaves every frame before its 4 frames unchanged, and changes those."""
    tae = TAEHV(taehv_variant("tiny"))
    params = init_taehv_params(tae, 2)
    z = _latents(4, seed=5)
    z2 = z.copy()
    z2[:, 2] += 1.0
    raw = [_raw_decode(tae, params, jnp.asarray(x)) for x in (z, z2)]
    diff = np.abs(np.asarray(raw[0]) - np.asarray(raw[1])).reshape(2, 16, -1).max(axis=(0, 2))
    assert np.all(diff[:8] == 0) and np.all(diff[8:12] > 0)


def test_bfloat16_close_to_float32():
    cfg = taehv_variant("tiny")
    params = init_taehv_params(TAEHV(cfg), 3)
    z = jnp.asarray(_latents(2, seed=6))
    y32 = decode(TAEHV(cfg), params, z)
    tae16 = TAEHV(taehv_variant("tiny", dtype="bfloat16"))
    y16 = decode(tae16, params, z)
    assert y16.dtype == jnp.bfloat16
    y, state = decode_continue(tae16, params, z, init_decode_state(tae16, 2, (4, 6), jnp.float32))
    assert {a.dtype for a in state} == {jnp.dtype(jnp.float32)}  # the carried state keeps its dtype
    assert float(jnp.abs(y16.astype(jnp.float32) - y32).max()) < 0.05


def test_parameter_count_of_published_sizes_equals_the_reference():
    """The published (taew2_1) sizes: parameter count from the twin equals the Flax model's."""
    twin = TAEHVTwin()
    want = sum(p.numel() for p in twin.parameters())
    tree = taehv_param_shapes(TAEHV(taehv_variant("wan2.1")))
    count = {k: sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(v)) for k, v in tree.items()}
    assert count["encoder"] + count["decoder"] == want == 11_315_539
    assert count["decoder"] == sum(p.numel() for p in twin.decoder.parameters())


def test_names_round_trip():
    twin = TAEHVTwin(**TWIN_SIZES["tiny"])
    for name in twin.state_dict():
        assert torch_name("/".join(flax_path(name))) == name
    assert flax_path("decoder.3.conv.0.weight") == ("decoder", "layers_3", "conv_0", "kernel")
    assert flax_path("decoder.7.conv.weight") == ("decoder", "layers_7", "conv", "kernel")
    assert flax_path("head.weight") is None


def test_converter_lists_missing_unexpected_and_mis_shaped_by_name():
    cfg = taehv_variant("tiny")
    state = _state(TAEHVTwin(**TWIN_SIZES["tiny"]))
    del state["decoder.3.conv.2.bias"]
    state["decoder.99.weight"] = np.zeros((3, 3, 3, 3), np.float32)
    with pytest.raises(CheckpointError) as e:
        convert_taehv_state(state, cfg)
    msg = str(e.value)
    assert "missing (1): decoder.3.conv.2.bias" in msg and "unexpected (1): decoder.99.weight" in msg
    assert "\n" not in msg
    state = _state(TAEHVTwin(**TWIN_SIZES["tiny"]))
    state["decoder.1.weight"] = np.zeros((16, 12, 3, 3), np.float32)  # 12 latent channels, not 16
    with pytest.raises(CheckpointError, match=r"mis_shaped \(1\): decoder\.1\.weight \[decoder/layers_1/kernel\]"):
        convert_taehv_state(state, cfg)
    with pytest.raises(CheckpointError, match=r"mis_shaped \(126\): decoder\.1\.bias"):  # the other widths
        convert_taehv_state(state, taehv_variant("wan2.1"))


def test_converter_tgrow_patch_prefix_and_decoder_only():
    cfg = taehv_variant("tiny")
    twin = TAEHVTwin(**TWIN_SIZES["tiny"])
    state = _state(twin)
    kept = state["decoder.7.conv.weight"]  # the x1 TGrow: (16, 16, 1, 1)
    state["decoder.7.conv.weight"] = np.concatenate([np.full_like(kept, 9.0), kept])  # stored as a x2 TGrow
    params = convert_taehv_state({f"taehv.{k}": v for k, v in state.items()}, cfg)
    np.testing.assert_array_equal(params["decoder"]["layers_7"]["conv"]["kernel"], kept.transpose(2, 3, 1, 0))
    dec = convert_taehv_state({k: v for k, v in state.items() if k.startswith("decoder.")}, cfg, parts=("decoder",))
    assert set(dec) == {"decoder"}
    z = jnp.asarray(_latents(2, seed=8))
    np.testing.assert_array_equal(decode(TAEHV(cfg), dec, z), decode(TAEHV(cfg), params, z))  # decoder params suffice
    with pytest.raises(CheckpointError, match="missing"):  # the decoder alone is not a whole TAEHV
        convert_taehv_state({k: v for k, v in state.items() if k.startswith("decoder.")}, cfg)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_files_load_and_check(tmp_path, suffix):
    from safetensors.numpy import save_file

    cfg = taehv_variant("tiny")
    twin = TAEHVTwin(**TWIN_SIZES["tiny"])
    path = str(tmp_path / f"taew_tiny{suffix}")
    if suffix == ".pth":
        torch.save(twin.state_dict(), path)
    else:
        save_file(_state(twin), path)
    check_taehv_file(path, cfg)
    params = load_taehv_checkpoint(path, cfg)
    np.testing.assert_array_equal(params["decoder"]["layers_22"]["bias"], twin.state_dict()["decoder.22.bias"].numpy())
    with pytest.raises(CheckpointError, match=re.escape(f"{path}: converted TAEHV params do not match the model: mis")):
        check_taehv_file(path, taehv_variant("wan2.1"))


def test_command_writes_a_folder_that_loads(tmp_path, capsys):
    from star_jax.checkpoint.convert_taehv import TAEHV_JSON, check_taehv_folder, load_taehv_folder, main

    twin = TAEHVTwin(**TWIN_SIZES["tiny"])
    src = str(tmp_path / "taew_tiny.pth")
    torch.save(twin.state_dict(), src)
    out = str(tmp_path / "model" / "taehv")
    main(["--src", src, "--out", out, "--variant", "tiny", "--parts", "decoder"])
    assert "converted" in capsys.readouterr().out
    assert check_taehv_folder(out) == (taehv_variant("tiny"), ("decoder",))
    tae, params = load_taehv_folder(out)
    z = _latents(2, seed=9)
    with torch.no_grad():
        want = _nhwc(twin.decode_video(_nchw(z))) * 2 - 1
    assert np.abs(np.asarray(decode(tae, params, jnp.asarray(z))) - want).max() < 1e-4
    with pytest.raises(CheckpointError, match="already exists"):
        main(["--src", src, "--out", out, "--variant", "tiny"])
    with pytest.raises(CheckpointError, match="TAEHV params do not match the model: mis_shaped"):  # published sizes
        main(["--src", src, "--out", str(tmp_path / "other"), "--dry_run"])
    (tmp_path / "bad").mkdir()
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp_path / 'bad' / TAEHV_JSON}: expected the TAEHV")):
        load_taehv_folder(str(tmp_path / "bad"))


def test_bad_input():
    tae = TAEHV(taehv_variant("tiny"))
    params = init_taehv_params(tae, 0)
    with pytest.raises(ValueError, match=r"latents must be \(B, n >= 1, h, w, 16\), got \(1, 2, 4, 4, 8\)"):
        decode(tae, params, jnp.zeros((1, 2, 4, 4, 8)))
    with pytest.raises(ValueError, match="video must be"):
        encode_chunk(tae, params, jnp.zeros((1, 5, 32, 32, 3)), init_encode_state(tae, 1, (32, 32)))
    with pytest.raises(ValueError, match="unknown TAEHV variant"):
        taehv_variant("wan2.2")
    with pytest.raises(CheckpointError, match="parts"):
        convert_taehv_state({}, taehv_variant("tiny"), parts=("vae",))
