"""The memory options of the DiT compute the same function: the three attention implementations
agree (values and gradients, with and without masks, on the block-causal and KV-cache paths the
inference uses), and per-block rematerialisation changes neither outputs nor gradients."""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.models import WanDiT, dit_variant, init_cache
from star_jax.models.attention import (
    block_causal_mask,
    blockwise_attention,
    dot_product_attention,
    xla_attention,
)
from tests.models.dit_inputs import CFG, TPF, data, init_params


def _qkv(B=2, Lq=37, Lk=45, N=3, D=8, seed=0, dtype=jnp.float32):
    rng = np.random.default_rng(seed)
    return tuple(jnp.asarray(rng.normal(size=(B, L, N, D)), dtype) for L in (Lq, Lk, Lk))


def _grads(fn, q, k, v, mask):
    w = jnp.asarray(np.random.default_rng(9).normal(size=q.shape), jnp.float32)  # a generic cotangent
    return jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v, mask).astype(jnp.float32) * w), argnums=(0, 1, 2))(q, k, v)


@pytest.mark.parametrize("chunk", [8, 16, 64])  # padded chunks, several chunks, one chunk
@pytest.mark.parametrize("masked", [False, True])
def test_blockwise_equals_xla_values_and_grads(chunk, masked):
    q, k, v = _qkv()
    mask = jnp.asarray(np.random.default_rng(1).random((2, 1, 37, 45)) < 0.6) if masked else None
    fn = lambda q, k, v, m: blockwise_attention(q, k, v, m, chunk=chunk)
    np.testing.assert_allclose(fn(q, k, v, mask), xla_attention(q, k, v, mask), rtol=0, atol=2e-6)
    for a, b in zip(_grads(fn, q, k, v, mask), _grads(xla_attention, q, k, v, mask)):
        np.testing.assert_allclose(a, b, rtol=0, atol=5e-6)


def test_blockwise_block_causal_and_key_only_masks_broadcast():
    """The DiT's mask shapes: (1, 1, L, L) block-causal, (1, 1, 1, Lk) key validity."""
    frames = jnp.repeat(jnp.arange(6), 5)  # 6 latent frames x 5 tokens
    q, k, v = _qkv(Lq=30, Lk=30)
    for mask in (block_causal_mask(frames, frames, 3), (jnp.arange(30) < 17)[None, None, None, :]):
        out = blockwise_attention(q, k, v, mask, chunk=7)
        np.testing.assert_allclose(out, xla_attention(q, k, v, mask), rtol=0, atol=2e-6)


def test_blockwise_bf16_close_to_xla_bf16():
    q, k, v = _qkv(dtype=jnp.bfloat16)
    a = blockwise_attention(q, k, v, None, chunk=16).astype(jnp.float32)
    b = xla_attention(q, k, v, None).astype(jnp.float32)
    assert a.dtype == b.dtype and float(jnp.max(jnp.abs(a - b))) < 2e-2


def test_dot_product_equals_xla_on_this_backend():
    q, k, v = _qkv()
    np.testing.assert_allclose(dot_product_attention(q, k, v, None), xla_attention(q, k, v, None), rtol=0, atol=1e-6)


def test_blockwise_backward_holds_no_quadratic_array():
    """The compiled gradient of blockwise attention at L = 2048 (chunk 128) allocates far less
    than one (L, L) float32 score matrix per head, which the XLA attention's gradient keeps."""
    L, N, D = 2048, 2, 16
    q = jax.ShapeDtypeStruct((1, L, N, D), jnp.float32)
    loss = lambda fn: (lambda q, k, v: jnp.sum(fn(q, k, v, None)))
    temp = {}
    for name, fn in (("xla", xla_attention), ("blockwise", lambda *a: blockwise_attention(*a, chunk=128))):
        compiled = jax.jit(jax.grad(loss(fn), argnums=(0, 1, 2))).lower(q, q, q).compile()
        temp[name] = compiled.memory_analysis().temp_size_in_bytes
    scores = N * L * L * 4
    assert temp["xla"] >= scores
    assert temp["blockwise"] < scores / 8, temp


@pytest.fixture(scope="module")
def params():
    return init_params()


@pytest.mark.slow  # ~35 s on 2 cores (two cached rollouts per implementation)
def test_blockwise_dit_equals_reference_on_inference_paths(params):
    """Full bidirectional forward, block-causal forward, cache write (with padding) and read
    ("dot_product" is the very same XLA call as "xla" off GPU: tested above)."""
    ref_cfg, cfg = CFG, dataclasses.replace(CFG, attention="blockwise", attention_chunk=8)
    x, ctx = data(9)
    t = jnp.asarray([[0.0] * 6 + [700.0] * 3] * 2)
    for causal in (False, True):
        a, _ = WanDiT(ref_cfg, block_causal=causal).apply({"params": params}, x, t, ctx)
        b, _ = WanDiT(cfg, block_causal=causal).apply({"params": params}, x, t, ctx)
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5)

    outs = []
    for c in (ref_cfg, cfg):
        model = WanDiT(c, block_causal=True)
        cache = init_cache(c, batch=2, num_tokens=6 * TPF)
        y_ctx, cache = model.apply({"params": params}, x[:, :6], jnp.zeros((2,)), ctx, cache=cache,
                                   cache_mode="write", context_valid_tokens=4 * TPF)
        y_blk, _ = model.apply({"params": params}, x[:, 6:], jnp.full((2,), 700.0), ctx, cache=cache,
                               cache_mode="read", frame_offset=6)
        outs.append((y_ctx, cache.k, y_blk))
    for a, b in zip(*outs):
        np.testing.assert_allclose(b, a, rtol=0, atol=2e-5)


@pytest.mark.parametrize("change", [
    pytest.param(dict(attention="blockwise", attention_chunk=8, remat="nothing_saveable"), marks=pytest.mark.slow),
    pytest.param(dict(remat="dots_with_no_batch_dims_saveable"), marks=pytest.mark.slow),
], ids=lambda c: "-".join(str(v) for v in c.values()))
def test_dit_variants_have_the_reference_gradients(params, change):
    x, ctx = data(6, seed=3)
    t = jnp.asarray([[0.0] * 3 + [400.0] * 3] * 2)

    def loss(cfg):
        model = WanDiT(cfg, block_causal=False)
        return lambda p: jnp.mean(model.apply({"params": p}, x, t, ctx)[0] ** 2)

    ga = jax.grad(loss(CFG))(params)
    gb = jax.grad(loss(dataclasses.replace(CFG, **change)))(params)
    for (path, a), b in zip(jax.tree_util.tree_leaves_with_path(ga), jax.tree_util.tree_leaves(gb)):
        np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6, err_msg=jax.tree_util.keystr(path))


@pytest.mark.slow  # two DiT gradient compiles, ~30 s
def test_remat_recomputes_instead_of_storing():
    """At a size where activations dominate, remat shrinks the compiled gradient's temporaries."""
    cfg = dit_variant("tiny", in_dim=36, num_layers=3, dim=64, ffn_dim=256)
    x = jax.ShapeDtypeStruct((1, 6, 24, 24, 36), jnp.float32)
    t = jax.ShapeDtypeStruct((1, 6), jnp.float32)
    c = jax.ShapeDtypeStruct((1, 4, cfg.text_dim), jnp.float32)
    p = nn.meta.unbox(jax.eval_shape(WanDiT(cfg).init, jax.random.key(0), x, t, c)["params"])
    temp = {}
    for remat in ("none", "nothing_saveable"):
        model = WanDiT(dataclasses.replace(cfg, remat=remat))
        g = jax.jit(jax.grad(lambda p, x, t, c: jnp.sum(model.apply({"params": p}, x, t, c)[0])))
        temp[remat] = g.lower(p, x, t, c).compile().memory_analysis().temp_size_in_bytes
    assert temp["nothing_saveable"] < 0.6 * temp["none"], temp


def test_bad_memory_options_are_refused():
    with pytest.raises(ValueError, match="attention must be"):
        dit_variant("tiny", attention="flash")
    with pytest.raises(ValueError, match="remat must be"):
        dit_variant("tiny", remat="everything")
