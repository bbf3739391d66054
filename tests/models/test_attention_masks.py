"""Attention without dense masks: an `AttentionMask` (key lengths, per-token block ids) gives the
same attention as the dense (Lq, Lk) bool mask it stands for, in every implementation, values and
gradients (bit for bit where the arithmetic is the same); the blockwise kernel holds no (Lq, Lk)
array and skips only chunk pairs the mask hides; `dot_product` sends key lengths to cuDNN's
padding mask and block ids to the blockwise kernel; and the DiT's block-causal forward, its
gradients and its cache reads equal the former dense-mask path (a test-only twin of it here)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.models import WanDiT, init_cache
from star_jax.models.attention import (
    AttentionMask,
    block_causal_mask,
    blockwise_attention,
    dot_product_attention,
    dot_product_route,
    xla_attention,
)
from tests.models.dit_inputs import CFG, TPF, data, init_params

FRAMES = jnp.repeat(jnp.arange(8), 5)  # 8 latent frames x 5 tokens = 40 tokens, blocks of 3 frames
LENGTHS = jnp.asarray([23, 31], jnp.int32)


def _qkv(B=2, Lq=40, Lk=40, N=3, D=8, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(B, L, N, D)), dtype) for L in (Lq, Lk, Lk))


def _masks(kind):
    """(AttentionMask, the dense (B | 1, 1, 40, 40) bool mask it stands for)."""
    blocks = FRAMES // 3
    causal = block_causal_mask(FRAMES, FRAMES, 3)
    lengths = (jnp.arange(40)[None, :] < LENGTHS[:, None])[:, None, None, :]
    return {
        "causal": (AttentionMask(q_block=blocks, k_block=blocks), causal),
        "lengths": (AttentionMask(kv_length=LENGTHS), lengths),
        "both": (AttentionMask(kv_length=LENGTHS, q_block=blocks, k_block=blocks), causal & lengths),
    }[kind]


def _grads(fn, q, k, v, mask):
    w = jnp.asarray(np.random.default_rng(9).normal(size=q.shape), jnp.float32)  # a generic cotangent
    loss = lambda q, k, v, mask: jnp.sum(fn(q, k, v, mask).astype(jnp.float32) * w)  # noqa: E731
    return jax.jit(jax.grad(loss, argnums=(0, 1, 2)))(q, k, v, mask)


@pytest.mark.parametrize("kind", ["causal", "lengths", "both"])
def test_dense_form_is_the_mask_it_stands_for(kind):
    spec, dense = _masks(kind)
    np.testing.assert_array_equal(np.broadcast_to(spec.dense(40, 40), (2, 1, 40, 40)),
                                  np.broadcast_to(dense, (2, 1, 40, 40)))


@pytest.mark.parametrize("chunk", [7, 40])  # padded chunks with skips, one chunk
@pytest.mark.parametrize("kind", ["causal", "lengths", "both"])
def test_blockwise_with_mask_is_bitwise_the_dense_mask_path(kind, chunk):
    spec, dense = _masks(kind)
    q, k, v = _qkv()
    fn = jax.jit(functools.partial(blockwise_attention, chunk=chunk))
    np.testing.assert_array_equal(fn(q, k, v, spec), fn(q, k, v, dense))
    np.testing.assert_allclose(fn(q, k, v, spec), xla_attention(q, k, v, dense), rtol=0, atol=2e-6)
    for a, b, c in zip(_grads(fn, q, k, v, spec), _grads(fn, q, k, v, dense), _grads(xla_attention, q, k, v, dense)):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=0, atol=5e-6)


@pytest.mark.parametrize("kind", ["causal", "lengths", "both"])
def test_xla_and_dot_product_with_mask_equal_the_dense_mask_path(kind):
    """On this backend "dot_product" runs jax's XLA graph; with key lengths only it passes them as
    key_value_seq_lengths, the very argument its cuDNN call takes on a GPU."""
    spec, dense = _masks(kind)
    q, k, v = _qkv()
    want = xla_attention(q, k, v, dense)
    np.testing.assert_array_equal(xla_attention(q, k, v, spec), want)
    np.testing.assert_allclose(dot_product_attention(q, k, v, spec), want, rtol=0, atol=1e-6)


def test_dot_product_routes_by_device_dtype_and_mask():
    bf, f32 = jnp.zeros((1, 4, 2, 64), jnp.bfloat16), jnp.zeros((1, 4, 2, 64), jnp.float32)
    causal, lengths = _masks("causal")[0], _masks("lengths")[0]
    assert dot_product_route(bf, None, "gpu") == "cudnn"
    assert dot_product_route(bf, lengths, "gpu") == "cudnn"  # a padding mask: key_value_seq_lengths
    assert dot_product_route(bf, causal, "gpu") == "blockwise"  # block ids: no cuDNN mask type
    assert dot_product_route(bf, jnp.ones((1, 1, 4, 4), bool), "gpu") == "cudnn"
    assert dot_product_route(f32, lengths, "gpu") == "xla"
    assert dot_product_route(jnp.zeros((1, 4, 2, 160), jnp.bfloat16), lengths, "gpu") == "xla"  # head dim > 128
    assert dot_product_route(bf, causal, "cpu") == "xla"


@pytest.mark.parametrize("kind", ["causal", "lengths", "both"])
def test_skipped_chunk_pairs_are_exactly_the_hidden_ones(kind):
    """`any_visible` never hides a pair with a visible key; for block ids and for lengths alone it
    hides every fully masked pair (7 x 7 token chunks over 40 tokens, the last one padded)."""
    spec, dense = _masks(kind)
    c, n = 7, 6
    pad = np.zeros((2, 1, n * c, n * c), bool)
    pad[:, :, :40, :40] = np.broadcast_to(dense, (2, 1, 40, 40))
    padded = spec.padded(n * c, n * c)
    hidden = 0
    for i in range(n):
        for j in range(n):
            seen = bool(pad[:, :, i * c:(i + 1) * c, j * c:(j + 1) * c].any())
            said = bool(padded.any_visible(i * c, c, j * c, c))
            assert said or not seen, (i, j)
            if kind != "both":
                assert said == seen, (i, j)
            hidden += not said
    # causal: blocks [0, 15), [15, 30), [30, 40); lengths: no row sees keys >= 31 (chunk 5)
    assert hidden == {"causal": 8, "lengths": 6, "both": 10}[kind], hidden  # both: the union


def test_blockwise_with_mask_holds_no_quadratic_array():
    """The compiled gradient of block-causal blockwise attention at L = 2048 (chunk 128) with an
    AttentionMask allocates less than one byte per (query, key) pair, under a bool mask's size."""
    L, N, D = 2048, 2, 16
    q = jax.ShapeDtypeStruct((1, L, N, D), jnp.float32)
    blocks = jnp.arange(L) // 384

    def loss(q, k, v):
        return jnp.sum(blockwise_attention(q, k, v, AttentionMask(q_block=blocks, k_block=blocks), chunk=128))

    temp = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(q, q, q).compile().memory_analysis().temp_size_in_bytes
    assert temp < L * L, temp


def test_bad_masks_are_refused():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match=r"kv_length must be \(2,\) int32"):
        blockwise_attention(q, k, v, AttentionMask(kv_length=jnp.asarray([3, 4, 5], jnp.int32)))
    with pytest.raises(ValueError, match=r"kv_length must be \(2,\) int32"):
        xla_attention(q, k, v, AttentionMask(kv_length=jnp.asarray([3.0, 4.0])))
    with pytest.raises(ValueError, match="both or neither"):
        xla_attention(q, k, v, AttentionMask(q_block=FRAMES))
    with pytest.raises(ValueError, match=r"k_block must be \(40,\)"):
        dot_product_attention(q, k, v, AttentionMask(q_block=FRAMES, k_block=FRAMES[:30]))


# --- the DiT against its former dense-mask path ---------------------------------------------


def dense_twin(base, own_mask=None, cache_tokens=None, cache_length=None):
    """The DiT's former self-attention as an attention function: a dense (1, 1, Lq, Lk) mask, and
    in a cache read the keys laid out [whole cache | own] (undoing `cache_read_keys`' layout
    [cache[:length] | own | cache[length:]] with the concrete `cache_length`). Cross-attention
    (mask None) passes through. `base`: xla_attention or a blockwise partial."""
    def fn(q, k, v, mask):
        if mask is None:
            return base(q, k, v, None)
        L = q.shape[1]
        m = jnp.ones((1, 1, L, L), bool) if own_mask is None else own_mask
        if cache_tokens is None:
            return base(q, k, v, m)
        S, n = cache_tokens, cache_length
        old = lambda x: jnp.concatenate([x[:, :n], x[:, n + L:], x[:, n:n + L]], axis=1)  # noqa: E731
        cache_mask = jnp.broadcast_to((jnp.arange(S) < n)[None, None, None, :], (1, 1, L, S))
        return base(q, old(k), old(v), jnp.concatenate([cache_mask, m], axis=-1))
    return fn


@pytest.fixture(scope="module")
def params():
    return init_params()


BASES = {"xla": xla_attention, "blockwise": functools.partial(blockwise_attention, chunk=8)}


def _apply(model, params, *args, **kw):
    """model.apply, compiled (one compile instead of op-by-op dispatch: the tests' time)."""
    static = ("cache_mode", "frame_offset")
    return jax.jit(model.apply, static_argnames=static)({"params": params}, *args, **kw)


SLOW = pytest.mark.slow  # ~15 s each on 2 idle cores (two DiT compiles and two gradient compiles)


@pytest.mark.parametrize("attention", [pytest.param("xla", marks=SLOW), "blockwise"])
def test_dit_block_causal_forward_and_grads_are_bitwise_the_dense_path(params, attention):
    x, ctx = data(9)
    t = jnp.asarray([[0.0] * 6 + [700.0] * 3] * 2)
    frames = jnp.repeat(jnp.arange(9), TPF)
    new = WanDiT(CFG, attention_fn=BASES[attention], block_causal=True)
    old = WanDiT(CFG, attention_fn=dense_twin(BASES[attention], block_causal_mask(frames, frames, 3)),
                 block_causal=True)
    ya, yb = (_apply(m, params, x, t, ctx)[0] for m in (new, old))
    np.testing.assert_array_equal(ya, yb)
    loss = lambda m: (lambda p: jnp.mean(m.apply({"params": p}, x, t, ctx)[0] ** 2))  # noqa: E731
    ga, gb = jax.jit(jax.grad(loss(new)))(params), jax.jit(jax.grad(loss(old)))(params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_array_equal(a, b, err_msg=jax.tree_util.keystr(path))


@pytest.mark.parametrize("attention, causal", [
    ("xla", False),  # the rollout's passes
    pytest.param("blockwise", False, marks=SLOW),
    pytest.param("xla", True, marks=SLOW),
    pytest.param("blockwise", True, marks=SLOW),
])
def test_dit_cache_write_and_read_equal_the_dense_path(params, attention, causal):
    """The rollout's two passes: a context write with padding (the first block: 3 of 6 frames
    valid) and the block's read at RoPE offset 6, for a half-valid and a full cache. A full cache
    has the old key layout: bit for bit; a half-valid one moves the padding behind the block's own
    keys (sums in another order): within 1e-6."""
    x, ctx = data(9, seed=1)
    base = BASES[attention]
    frames = jnp.arange(9 * TPF) // TPF
    for valid in (3 * TPF, 6 * TPF):
        cache = init_cache(CFG, batch=2, num_tokens=6 * TPF)
        w_mask = block_causal_mask(frames[:6 * TPF], frames[:6 * TPF], 3) if causal else jnp.ones((1, 1, 1, 6 * TPF), bool)
        w_mask = w_mask & (jnp.arange(6 * TPF) < valid)[None, None, None, :]
        kw = dict(cache_mode="write", context_valid_tokens=valid)
        ya, ca = _apply(WanDiT(CFG, base, causal), params, x[:, :6], jnp.zeros((2,)), ctx, cache=cache, **kw)
        yb, cb = _apply(WanDiT(CFG, dense_twin(base, w_mask), causal), params, x[:, :6], jnp.zeros((2,)), ctx,
                        cache=cache, **kw)
        np.testing.assert_array_equal(ya, yb)
        np.testing.assert_array_equal(ca.k, cb.k)

        r_own = block_causal_mask(frames[6 * TPF:], frames[6 * TPF:], 3) if causal else None
        kw = dict(cache_mode="read", frame_offset=6)
        t = jnp.full((2,), 700.0)
        ya, _ = _apply(WanDiT(CFG, base, causal), params, x[:, 6:], t, ctx, cache=ca, **kw)
        yb, _ = _apply(WanDiT(CFG, dense_twin(base, r_own, 6 * TPF, valid), causal), params, x[:, 6:], t, ctx,
                       cache=ca, **kw)
        if valid == 6 * TPF:
            np.testing.assert_array_equal(ya, yb)
        else:
            np.testing.assert_allclose(ya, yb, rtol=0, atol=1e-6)
