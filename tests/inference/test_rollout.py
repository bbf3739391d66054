"""The STAR rollout: schedule closed forms, mask packing, the scan against a plain Python loop
written as the release's pipeline (channel order, zero padding, RoPE offsets 0 / 6, full-attention
context pass, fresh noise between steps, x0 as the next context), block-0 masking, causality over
blocks, and constant memory in the number of blocks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.diffusion.schedule import few_step_schedule, flow_match_timestep_table
from star_jax.inference.conditions import StarConditions, mask_to_latent
from star_jax.inference.rollout import (
    causal_block_x0,
    init_rollout_state,
    rollout,
    star_block_exit,
    star_block_jit,
    tokens_per_frame,
)
from star_jax.inference.model import random_star_model
from star_jax.models.dit import WanDiT, init_cache
from star_jax.models.variants import dit_variant

CFG = dit_variant("tiny")
HW = (4, 6)  # latent h, w -> 2 x 3 = 6 tokens per frame


def test_warped_schedule_closed_form():
    s = few_step_schedule((1000, 750, 500, 250), shift=5.0)
    # sigma' = 5 sigma / (1 + 4 sigma) at sigma = 1, .75, .5, .25
    np.testing.assert_allclose(s.timesteps, [1000.0, 937.5, 2500.0 / 3.0, 625.0], rtol=1e-6)
    np.testing.assert_allclose(s.next_sigmas, [0.9375, 2.5 / 3.0, 0.625, 0.0], rtol=1e-6)
    table = flow_match_timestep_table(5.0)
    assert table.shape == (1001,) and table[-1] == 0.0 and np.all(np.diff(table) < 0)
    with pytest.raises(ValueError, match="strictly decreasing"):
        few_step_schedule((250, 500))


def test_mask_latent_packing():
    """Frame 0 fills all 4 channels of latent 0; frames 1..4 are the channels of latent 1; under
    the old "star-jax-v0" convention each cell is the valid fraction of its 8x8 pixels."""
    m = np.zeros((1, 5, 16, 8), bool)
    m[0, 0, :8] = True  # top cell of frame 0 fully valid
    m[0, 3, 8:, :4] = True  # half of the bottom cell of frame 3
    lat = np.asarray(mask_to_latent(jnp.asarray(m), convention="star-jax-v0"))
    assert lat.shape == (1, 2, 2, 1, 4)
    np.testing.assert_array_equal(lat[0, 0, :, 0], [[1, 1, 1, 1], [0, 0, 0, 0]])
    np.testing.assert_array_equal(lat[0, 1, :, 0], [[0, 0, 0, 0], [0, 0, 0.5, 0]])
    with pytest.raises(ValueError, match="1 \\+ 4k"):
        mask_to_latent(jnp.zeros((1, 6, 16, 8), bool))


@pytest.fixture(scope="module")
def model():
    m = random_star_model("tiny", jax.random.PRNGKey(0))  # block-causal, every parameter non-zero
    assert m.dit.cfg == CFG
    return m.dit, m.dit_params


def _conditions(num_blocks, seed=0, batch=1):
    n = 3 * num_blocks
    r = np.random.default_rng(seed)
    return StarConditions(
        jnp.asarray(r.normal(size=(batch, n, *HW, 16)).astype(np.float32)),
        jnp.asarray(r.normal(size=(batch, n, *HW, 16)).astype(np.float32)),
        jnp.asarray(r.uniform(size=(batch, n, *HW, 4)).astype(np.float32)),
    )


def _python_loop(dit, params, text, cond, rng):
    """The release's loop, written out plainly: per block a fresh cache filled by the context
    pass ([ref | previous x0] + 20 zero channels, t = 0, RoPE offset 0, plain unmasked attention:
    a non-causal DiT on the same weights), then 4 steps on [x | mask | render] at RoPE offset 6
    that look sigma up in the scheduler table (argmin, as its add_noise does), re-noise with fresh
    noise, and skip the re-noise after the last step."""
    table = flow_match_timestep_table(5.0)
    steps = table[1000 - np.array([1000, 750, 500, 250])]
    sigma_of = lambda t: table[np.argmin(np.abs(table - t))] / 1000.0  # noqa: E731
    b, n, h, w, _ = cond.ref.shape
    tpf = (h // 2) * (w // 2)
    apply = jax.jit(dit.apply, static_argnames=("cache_mode", "frame_offset"))
    apply_full = jax.jit(WanDiT(dit.cfg).apply, static_argnames=("cache_mode", "frame_offset"))
    assert not WanDiT(dit.cfg).block_causal
    prev, out = None, []
    for blk in range(n // 3):
        sl = slice(3 * blk, 3 * blk + 3)
        ref = cond.ref[:, sl]
        ctx = ref if prev is None else jnp.concatenate([ref, prev], axis=1)
        ctx = jnp.concatenate([ctx, jnp.zeros((*ctx.shape[:-1], 20))], axis=-1)
        cache = init_cache(CFG, b, 6 * tpf)
        _, cache = apply_full({"params": params}, ctx, jnp.zeros((b,)), text, cache=cache, cache_mode="write",
                              frame_offset=0)
        rng, k_init, k_steps = jax.random.split(rng, 3)
        keys = jax.random.split(k_steps, 4)
        x = jax.random.normal(k_init, (b, 3, h, w, 16))
        for i, t in enumerate(steps):
            inp = jnp.concatenate([x, cond.mask[:, sl], cond.render[:, sl]], axis=-1)
            flow, _ = apply({"params": params}, inp, jnp.full((b,), t, jnp.float32), text, cache=cache,
                                cache_mode="read", frame_offset=6)
            x0 = x - sigma_of(t) * flow
            if i < 3:
                s = sigma_of(steps[i + 1])
                x = (1 - s) * x0 + s * jax.random.normal(keys[i], x0.shape)
            else:
                x = x0
        prev = x
        out.append(x)
    return jnp.concatenate(out, axis=1)


def test_scan_rollout_equals_python_loop(model):
    dit, params = model
    cond = _conditions(3, batch=2)
    text = jnp.asarray(np.random.default_rng(5).normal(size=(2, 4, CFG.text_dim)).astype(np.float32))
    rng = jax.random.PRNGKey(7)
    got = rollout(dit, params, text, cond, rng)
    want = _python_loop(dit, params, text, cond, rng)
    assert got.shape == (2, 9, *HW, 16)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert float(jnp.std(got[:, 3:] - got[:, :6])) > 1e-2  # blocks differ: nothing trivially repeated


def test_first_block_ignores_the_missing_previous_block(model):
    dit, params = model
    cond = _conditions(1).frames(0, 3)
    text = jnp.zeros((1, 4, CFG.text_dim))
    s0 = init_rollout_state(CFG, 1, HW, jax.random.PRNGKey(3))
    garbage = s0.replace(prev=jax.random.normal(jax.random.PRNGKey(9), s0.prev.shape))
    _, a = star_block_jit(dit, params, s0, text, cond)
    _, b = star_block_jit(dit, params, garbage, text, cond)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    # ...while for a later block the previous block matters
    _, c = star_block_jit(dit, params, s0.replace(block=jnp.int32(1)), text, cond)
    _, d = star_block_jit(dit, params, garbage.replace(block=jnp.int32(1)), text, cond)
    assert float(jnp.abs(c - d).max()) > 1e-3


def test_context_pass_is_full_attention(model):
    """As in the release, the context pass attends without a mask: the reference block's cached
    keys (last layer) depend on the previous block. A block-causal context pass would leave them
    unchanged."""
    dit, params = model
    cond = _conditions(1).frames(0, 3)
    text = jnp.zeros((1, 4, CFG.text_dim))
    s1 = init_rollout_state(CFG, 1, HW, jax.random.PRNGKey(3)).replace(block=jnp.int32(1))
    other = s1.replace(prev=s1.prev + jax.random.normal(jax.random.PRNGKey(9), s1.prev.shape))
    (a, _), (b, _) = star_block_jit(dit, params, s1, text, cond), star_block_jit(dit, params, other, text, cond)
    ref_tokens = 3 * tokens_per_frame(CFG, HW)
    assert int(a.kv.length) == 2 * ref_tokens
    assert float(jnp.abs(a.kv.k[-1, :, :ref_tokens] - b.kv.k[-1, :, :ref_tokens]).max()) > 1e-3
    np.testing.assert_array_equal(a.kv.k[0, :, :ref_tokens], b.kv.k[0, :, :ref_tokens])  # layer 0: own input only


def test_blocks_are_causal(model):
    """Changing block 1's render changes blocks 1 and 2 but leaves block 0 bit-identical."""
    dit, params = model
    cond = _conditions(3)
    edited = cond.replace(render=cond.render.at[:, 3:6].add(1.0))
    text = jnp.zeros((1, 4, CFG.text_dim))
    a = rollout(dit, params, text, cond, jax.random.PRNGKey(0))
    b = rollout(dit, params, text, edited, jax.random.PRNGKey(0))
    np.testing.assert_array_equal(a[:, :3], b[:, :3])
    assert float(jnp.abs(a[:, 3:6] - b[:, 3:6]).max()) > 1e-3
    assert float(jnp.abs(a[:, 6:] - b[:, 6:]).max()) > 1e-4


def test_memory_is_constant_in_the_number_of_blocks(model):
    """50 blocks compile to the same working memory as 5: only the output (the frames themselves)
    grows, by exactly its size."""
    dit, params = model
    text = jnp.zeros((1, 4, CFG.text_dim))

    def analysis(blocks):
        cond = jax.tree_util.tree_map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), _conditions(blocks))
        return rollout.lower(dit, params, text, cond, jax.random.PRNGKey(0)).compile().memory_analysis()

    m5, m50 = analysis(5), analysis(50)
    assert m5 is not None and m50 is not None
    assert m50.temp_size_in_bytes == m5.temp_size_in_bytes
    out_bytes = lambda blocks: 3 * blocks * HW[0] * HW[1] * 16 * 4  # noqa: E731
    assert m50.output_size_in_bytes - m5.output_size_in_bytes == out_bytes(50) - out_bytes(5)


def test_tokens_per_frame_matches_the_release():
    assert tokens_per_frame(dit_variant("1.3B"), (60, 104)) == 1560


def test_exit_rollout_matches_star_block_and_the_gradient_forward(model):
    """Self-Forcing's truncated block: exit at the last step is `star_block`; exit at step e gives
    the x0 that `causal_block_x0` (the training forward) predicts from the recorded exit input at
    the e-th warped timestep, with the same previous block in context; the state advances alike."""
    dit, params = model
    # one compiled program each (exit step and `first` traced, as in training) instead of op by op
    star_block_exit_jit = jax.jit(star_block_exit, static_argnums=0)
    causal_block_x0_jit = jax.jit(causal_block_x0, static_argnums=0)
    cond = _conditions(2, seed=3, batch=2)
    text = jnp.asarray(np.random.default_rng(1).normal(size=(2, 4, CFG.text_dim)).astype(np.float32))
    sched = few_step_schedule((1000, 750, 500, 250), 5.0)
    state0 = init_rollout_state(CFG, 2, HW, jax.random.PRNGKey(3))
    block0 = cond.frames(0, 3)
    s_full, x_full = star_block_jit(dit, params, state0, text, block0)
    s_last, x_last, _ = star_block_exit_jit(dit, params, state0, text, block0, 3)
    np.testing.assert_allclose(x_last, x_full, rtol=1e-5, atol=1e-5)
    assert int(s_last.block) == 1
    np.testing.assert_array_equal(np.asarray(s_last.rng), np.asarray(s_full.rng))
    for e in (0, 2):
        state1, x_b0, x_in0 = star_block_exit_jit(dit, params, state0, text, block0, e)
        want0 = causal_block_x0_jit(dit, params, text, block0.ref, jnp.zeros_like(block0.ref), True, x_in0,
                                    jnp.full((2,), sched.timesteps[e]), block0.mask, block0.render)
        np.testing.assert_allclose(x_b0, want0, rtol=1e-4, atol=1e-4)
        block1 = cond.frames(3, 6)
        _, x_b1, x_in1 = star_block_exit_jit(dit, params, state1, text, block1, e)
        want1 = causal_block_x0_jit(dit, params, text, block1.ref, x_b0, False, x_in1,
                                    jnp.full((2,), sched.timesteps[e]), block1.mask, block1.render)
        np.testing.assert_allclose(x_b1, want1, rtol=1e-4, atol=1e-4)
        if e == 0:
            np.testing.assert_array_equal(np.asarray(x_in0), np.asarray(
                jax.random.normal(jax.random.split(state0.rng, 3)[1], x_in0.shape)))  # the initial noise
    # the previous block matters (it is not masked out after the first block)
    other = causal_block_x0_jit(dit, params, text, block1.ref, x_b0 + 1.0, False, x_in1,
                                jnp.full((2,), sched.timesteps[2]), block1.mask, block1.render)
    assert float(jnp.max(jnp.abs(other - want1))) > 1e-3
