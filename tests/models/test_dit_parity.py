"""WanDiT against diffusers' WanTransformer3DModel through the production converter (float32);
the text padding to text_len and the float64-exact timestep sinusoid of the original Wan model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.checkpoint import CheckpointError, convert_dit_state, load_dit_checkpoint, restore_params, save_params
from star_jax.checkpoint.convert import diffusers_to_wan_names
from star_jax.errors import InputError
from star_jax.models import WanDiT, dit_variant
from star_jax.models.dit import sinusoidal_embedding
from tests.models.torch_refs import diffusers_dit, run_diffusers_dit, state_numpy

torch = pytest.importorskip("torch")

TOL = 1e-4  # max |y - y_ref| / max |y_ref|


@pytest.fixture(scope="module")
def tiny36():
    cfg = dit_variant("tiny", in_dim=36)
    ref = diffusers_dit(cfg)
    return cfg, ref, state_numpy(ref)


def pad_rows(ctx, text_len):
    """What diffusers' WanPipeline does before the model: zero rows up to text_len."""
    return np.concatenate([ctx, np.zeros((ctx.shape[0], text_len - ctx.shape[1], ctx.shape[2]), ctx.dtype)], 1)


def rel(a, b):
    return np.abs(a - b).max() / np.abs(b).max()


def compare(cfg, ref, params, T, H, W, t_frames, seed=0, text_tokens=7):
    """Our forward on `text_tokens` text rows vs diffusers' on the same rows zero-padded to text_len."""
    rng = np.random.default_rng(seed)
    B = t_frames.shape[0]
    x = rng.normal(size=(B, cfg.in_dim, T, H, W)).astype(np.float32)
    ctx = rng.normal(size=(B, text_tokens, cfg.text_dim)).astype(np.float32)
    y_ref = run_diffusers_dit(ref, x, t_frames, pad_rows(ctx, cfg.text_len), (H // 2) * (W // 2))
    y, _ = WanDiT(cfg).apply({"params": params}, jnp.asarray(x.transpose(0, 2, 3, 4, 1)), jnp.asarray(t_frames),
                             jnp.asarray(ctx))
    y = np.asarray(y).transpose(0, 4, 1, 2, 3)
    err = rel(y, y_ref)
    assert err <= TOL, err
    return err


@pytest.mark.parametrize("T, H, W", [(1, 4, 6), (3, 6, 8), (9, 4, 4)])
def test_parity_per_frame_timesteps_in_dim_36(tiny36, T, H, W):
    cfg, ref, sd = tiny36
    params = convert_dit_state(sd, cfg)
    t = np.random.default_rng(T).uniform(0, 1000, size=(2, T)).astype(np.float32)
    t[0, : (T + 1) // 2] = 0.0  # context-like frames at t = 0 next to noisy ones
    compare(cfg, ref, params, T, H, W, t)


def test_parity_shared_timestep_and_in_dim_16():
    cfg = dit_variant("tiny", in_dim=16, num_layers=1)
    ref = diffusers_dit(cfg, seed=3)
    params = convert_dit_state(state_numpy(ref), cfg)
    compare(cfg, ref, params, 5, 4, 6, np.full((1, 5), 437.0, np.float32))


def test_wan_naming_is_what_diffusers_converts(tiny36):
    """Our Wan names, fed to diffusers' own convert_wan_transformer_to_diffusers, give back the
    diffusers state dict exactly; and loading the Wan-named dict gives the same parity."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    cfg, ref, sd = tiny36
    wan = diffusers_to_wan_names(sd)
    assert "blocks.0.self_attn.q.weight" in wan and "head.head.weight" in wan and "blocks.1.norm3.bias" in wan
    prefixed = {"model.diffusion_model." + k: torch.from_numpy(v) for k, v in wan.items()}
    back = convert_wan_transformer_to_diffusers(dict(prefixed))
    assert sorted(back) == sorted(sd)
    for k in sd:
        np.testing.assert_array_equal(back[k].numpy(), sd[k], err_msg=k)
    params = convert_dit_state({k: v for k, v in prefixed.items()}, cfg)  # prefix stripped, Wan path
    compare(cfg, ref, params, 3, 4, 4, np.array([[0.0, 250.0, 999.0]], np.float32))


def test_safetensors_bf16_and_orbax_round_trip(tiny36, tmp_path):
    from safetensors.torch import save_file

    cfg, ref, sd = tiny36
    sharded = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in diffusers_to_wan_names(sd).items()}
    keys = sorted(sharded)
    folder = tmp_path / "shards"
    folder.mkdir()
    save_file({k: sharded[k] for k in keys[: len(keys) // 2]}, str(folder / "a-00001.safetensors"))
    save_file({k: sharded[k] for k in keys[len(keys) // 2:]}, str(folder / "a-00002.safetensors"))
    params = load_dit_checkpoint(str(folder), cfg)
    # bf16 storage: weights equal the bf16-rounded reference exactly
    np.testing.assert_array_equal(params["blocks"]["ffn_0"]["kernel"][1],
                                  sharded["blocks.1.ffn.0.weight"].float().numpy().T)
    save_params(params, str(tmp_path / "ckpt"))
    restored = restore_params(str(tmp_path / "ckpt"))
    import jax

    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_mismatched_checkpoints_list_every_problem(tiny36):
    cfg, _, sd = tiny36
    bad = dict(diffusers_to_wan_names(sd))
    del bad["blocks.1.cross_attn.k.weight"]
    bad["blocks.0.mystery.weight"] = np.zeros(3)
    with pytest.raises(CheckpointError) as e:
        convert_dit_state(bad, cfg)
    assert "blocks.1.cross_attn.k.weight" in str(e.value) and "blocks.0.mystery.weight" in str(e.value)
    with pytest.raises(CheckpointError, match=r"mis_shaped.*patch_embedding/kernel"):
        convert_dit_state(sd, dit_variant("tiny", in_dim=16))  # a 36-channel checkpoint
    with pytest.raises(CheckpointError, match="no safetensors"):
        load_dit_checkpoint("/nonexistent/file.safetensors", cfg)
    with pytest.raises(CheckpointError, match="naming"):
        convert_dit_state({"foo.weight": np.zeros(1)}, cfg)


def test_1p3b_parameter_count_matches_diffusers_without_allocating():
    """eval_shape of the 1.3B variant vs diffusers' model built on the meta device."""
    from star_jax.models.dit import abstract_params, count_params

    cfg = dit_variant("1.3B")
    ours = count_params(abstract_params(cfg))
    import diffusers

    with torch.device("meta"):
        ref = diffusers.WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=36, out_channels=16,
            text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30)
    theirs = sum(p.numel() for p in ref.parameters())
    assert ours == theirs
    assert 1.35e9 < ours < 1.45e9  # "1.3B": 1,418,996,800 for in_dim 16 plus the 36-channel patch embedding


def test_short_text_is_zero_padded_to_text_len_as_wan_does(tiny36):
    """7 of 16 text rows: ours equals ours on the zero-padded rows and diffusers on the padded rows;
    attending to the 7 rows alone (diffusers fed them unpadded) is a different model."""
    cfg, ref, sd = tiny36
    params = convert_dit_state(sd, cfg)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, cfg.in_dim, 3, 4, 4)).astype(np.float32)
    t = np.array([[0.0, 500.0, 937.5]], np.float32)
    ctx = rng.normal(size=(1, 7, cfg.text_dim)).astype(np.float32)
    xj = jnp.asarray(x.transpose(0, 2, 3, 4, 1))
    y_short = np.asarray(WanDiT(cfg).apply({"params": params}, xj, jnp.asarray(t), jnp.asarray(ctx))[0])
    y_padded = np.asarray(WanDiT(cfg).apply({"params": params}, xj, jnp.asarray(t),
                                            jnp.asarray(pad_rows(ctx, cfg.text_len)))[0])
    np.testing.assert_array_equal(y_short, y_padded)
    y_short = y_short.transpose(0, 4, 1, 2, 3)
    assert rel(y_short, run_diffusers_dit(ref, x, t, pad_rows(ctx, cfg.text_len), 4)) <= TOL
    assert rel(y_short, run_diffusers_dit(ref, x, t, ctx, 4)) > 1e-2  # unpadded: measurably different


def test_text_longer_than_text_len_is_refused(tiny36):
    cfg, _, sd = tiny36
    params = convert_dit_state(sd, cfg)
    x = jnp.zeros((1, 1, 4, 4, cfg.in_dim))
    with pytest.raises(InputError, match=r"text_len=16.*got shape \(1, 17, 32\)"):
        WanDiT(cfg).apply({"params": params}, x, jnp.zeros((1,)), jnp.zeros((1, 17, cfg.text_dim)))
    with pytest.raises(InputError, match=r"text_dim=32.*got shape \(1, 4, 8\)"):
        WanDiT(cfg).apply({"params": params}, x, jnp.zeros((1,)), jnp.zeros((1, 4, 8)))


def sinusoid_float64(t, dim):
    """Wan's sinusoidal_embedding_1d: float64 angles and sin / cos, rounded to float32 at the end."""
    half = dim // 2
    w = np.power(10000.0, -np.arange(half, dtype=np.float64) / half)
    a = np.outer(np.asarray(t, np.float32).astype(np.float64), w)
    return np.concatenate([np.cos(a), np.sin(a)], axis=1).astype(np.float32)


SINUSOID_T = np.array([1000.0, 937.5, 833.3, 625.0, 0.0, 1.0, 750.0, 250.0, 999.99, 0.001], np.float32)


def test_timestep_sinusoid_matches_float64_to_one_float32_ulp():
    """At the release's warped steps and 5e4 more timesteps in [0, 4096), eagerly and under jit (as
    the rollout calls it, on traced t): |ours - float64 rounded to float32| <= 2^-23. The plain
    float32 product t * w misses by 3e-5 at t = 1000, so this bound is a real constraint."""
    rng = np.random.default_rng(0)
    ts = np.concatenate([SINUSOID_T, np.arange(0.0, 1000.25, 0.25), rng.uniform(0, 1000, 30_000),
                         rng.uniform(0, 4095, 15_000)]).astype(np.float32)
    want = sinusoid_float64(ts, 256).astype(np.float64)
    for fn in (lambda t: sinusoidal_embedding(t, 256), jax.jit(lambda t: sinusoidal_embedding(t, 256))):
        got = np.asarray(fn(jnp.asarray(ts))).astype(np.float64)
        assert np.abs(got - want).max() <= 2.0**-23
    naive = np.outer(ts[:4], np.power(10000.0, -np.arange(128) / 128).astype(np.float32)).astype(np.float32)
    assert np.abs(np.cos(naive).astype(np.float64) - want[:4, :128]).max() > 1e-5
    # the warped steps: per-step (B,) and per-frame (B, T) shapes, as the DiT calls it
    np.testing.assert_allclose(np.asarray(sinusoidal_embedding(jnp.asarray(SINUSOID_T[:4].reshape(2, 2)), 32)),
                               sinusoid_float64(SINUSOID_T[:4], 32).reshape(2, 2, 32), rtol=0, atol=2.0**-23)
