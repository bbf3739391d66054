"""The implicit spatiotemporal cache: a block-causal full forward equals context-fill + chunked
denoising with the fixed-shape KV cache; and sharded equals unsharded."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.models import WanDiT, init_cache
from tests.models.dit_inputs import CFG, TPF, data, init_params


@pytest.fixture(scope="module")
def params():
    return init_params()


def test_block_causal_full_forward_equals_cached_chunks(params):
    """Frames 0-5 are context at t = 0 (two blocks), frames 6-8 a noisy block at t = 700."""
    model = WanDiT(CFG, block_causal=True)
    x, ctx = data(9)
    t = jnp.asarray([[0.0] * 6 + [700.0] * 3] * 2)
    y_full, _ = model.apply({"params": params}, x, t, ctx)

    cache = init_cache(CFG, batch=2, num_tokens=6 * TPF)
    y_ctx, cache = model.apply({"params": params}, x[:, :6], jnp.zeros((2,)), ctx, cache=cache, cache_mode="write")
    assert int(cache.length) == 6 * TPF
    y_blk, cache2 = model.apply({"params": params}, x[:, 6:], jnp.full((2,), 700.0), ctx, cache=cache,
                                cache_mode="read", frame_offset=6)
    np.testing.assert_allclose(y_ctx, y_full[:, :6], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(y_blk, y_full[:, 6:], rtol=1e-5, atol=1e-5)
    assert cache2 is cache  # reading leaves the cache as it was


def test_cache_padding_hides_missing_context(params):
    """First STAR block: only 3 reference frames of a 6-frame cache are valid. The zero-padded
    half must not change anything: equal to a cache holding just those 3 frames."""
    model = WanDiT(CFG, block_causal=True)
    x, ctx = data(6, seed=1)
    ref_frames, noisy = x[:, :3], x[:, 3:]
    padded_ctx = jnp.concatenate([ref_frames, jnp.full_like(ref_frames, 123.0)], axis=1)
    big = init_cache(CFG, batch=2, num_tokens=6 * TPF)
    _, big = model.apply({"params": params}, padded_ctx, jnp.zeros((2,)), ctx, cache=big, cache_mode="write",
                         context_valid_tokens=3 * TPF)
    small = init_cache(CFG, batch=2, num_tokens=3 * TPF)
    _, small = model.apply({"params": params}, ref_frames, jnp.zeros((2,)), ctx, cache=small, cache_mode="write")
    kw = dict(cache_mode="read", frame_offset=6)
    y_big, _ = model.apply({"params": params}, noisy, jnp.full((2,), 500.0), ctx, cache=big, **kw)
    y_small, _ = model.apply({"params": params}, noisy, jnp.full((2,), 500.0), ctx, cache=small, **kw)
    np.testing.assert_allclose(y_big, y_small, rtol=1e-5, atol=1e-5)
    # and the cache does matter: an empty (length 0) cache gives a different answer
    empty = big.replace(length=jnp.zeros((), jnp.int32))
    y_empty, _ = model.apply({"params": params}, noisy, jnp.full((2,), 500.0), ctx, cache=empty, **kw)
    assert np.abs(np.asarray(y_empty - y_small)).max() > 1e-3


def test_block_causal_mask_blocks_the_future(params):
    model = WanDiT(CFG, block_causal=True)
    x, ctx = data(6, seed=2)
    t = jnp.full((2,), 300.0)
    y1, _ = model.apply({"params": params}, x, t, ctx)
    y2, _ = model.apply({"params": params}, x.at[:, 3:].add(1.0), t, ctx)  # change block 1 only
    np.testing.assert_array_equal(y1[:, :3], y2[:, :3])
    assert np.abs(np.asarray(y1[:, 3:] - y2[:, 3:])).max() > 1e-3
    yb, _ = WanDiT(CFG).apply({"params": params}, x.at[:, 3:].add(1.0), t, ctx)  # bidirectional sees it
    ya, _ = WanDiT(CFG).apply({"params": params}, x, t, ctx)
    assert np.abs(np.asarray(ya[:, :3] - yb[:, :3])).max() > 1e-4


def test_cache_is_a_jit_friendly_fixed_shape_pytree(params):
    model = WanDiT(CFG, block_causal=True)
    x, ctx = data(6, seed=3)
    cache = init_cache(CFG, batch=2, num_tokens=6 * TPF)

    @jax.jit
    def step(cache, x):
        _, cache = model.apply({"params": params}, x, jnp.zeros((2,)), ctx, cache=cache, cache_mode="write")
        y, _ = model.apply({"params": params}, x[:, :3], jnp.full((2,), 900.0), ctx, cache=cache,
                           cache_mode="read", frame_offset=6)
        return cache, y

    new_cache, y = step(cache, x)
    assert jax.tree_util.tree_structure(new_cache) == jax.tree_util.tree_structure(cache)
    assert all(a.shape == b.shape and a.dtype == b.dtype for a, b in
               zip(jax.tree_util.tree_leaves(new_cache), jax.tree_util.tree_leaves(cache)))
    _, y_again = step(new_cache, x)  # second call: same shapes, no retrace needed
    np.testing.assert_allclose(y, y_again, rtol=1e-6)


def test_bad_calls_are_refused(params):
    model = WanDiT(CFG)
    x, ctx = data(3)
    with pytest.raises(ValueError, match="needs a cache"):
        model.apply({"params": params}, x, jnp.zeros((2,)), ctx, cache_mode="read")
    with pytest.raises(ValueError, match=r"\(B, T, H, W, 36\)"):
        model.apply({"params": params}, x[..., :16], jnp.zeros((2,)), ctx)
    with pytest.raises(ValueError, match="cache holds"):
        model.apply({"params": params}, x, jnp.zeros((2,)), ctx, cache=init_cache(CFG, 2, 4), cache_mode="write")
