"""The fused session (`fused=True`: `pipeline.block_step` as one program per block, the carried
state donated) against the staged one (each stage its own program): the same numbers, block
for block; the carried state of fixed shapes, dtypes and bytes, its old buffers given up to the
next block; live device memory flat over 1,000 blocks (slow)."""

import time

import jax
import numpy as np
import pytest

from star_jax.inference import NavigationSession, random_star_model
from star_jax.inference.pipeline import (
    BlockParams,
    BlockSpec,
    abstract_block,
    block_step,
    init_block_state,
    input_shapes,
    tree_bytes,
)
from star_jax.io.manifest import planar_prior_geometry
from tests.inference.sessions import dolly_w2c, random_session_inputs

H = W = 32
T_REF = 20  # the sizes of test_session.py: the staged programs compiled there are reused here
FIELDS = ("frames", "renders", "masks", "latents", "reference", "target_w2c", "source_indices", "target_K")


@pytest.fixture(scope="module")
def setup():
    return random_session_inputs(T_REF, H, W)



def _signature(tree):
    """(tree structure, each leaf's shape and dtype)."""
    leaves, treedef = jax.tree_util.tree_flatten(tree)
    return treedef, [(x.shape, x.dtype) for x in leaves]


def _compare(model, ref, geom, decoder):
    """Three blocks (the first included) of a staged and a fused session: every output equal; the
    fused session's carried state keeps its signature and bytes, and each step consumes the old
    state's buffers (donated)."""
    w2c = dolly_w2c(9 + 12 + 12)
    staged = NavigationSession(model, ref, geom, rng=jax.random.PRNGKey(4), decoder=decoder)
    fused = NavigationSession(model, ref, geom, rng=jax.random.PRNGKey(4), decoder=decoder, fused=True)
    assert not staged.fused and fused.fused and fused.state is None
    init = _signature(fused.carry)
    assert init == _signature(init_block_state(BlockSpec.of(model, (H, W), decoder), BlockParams.of(model, decoder),
                                               jax.random.PRNGKey(4)))
    size = tree_bytes(fused.carry)
    start = 0
    for b in range(3):
        n = staged.frames_needed()
        want = staged.step(target_w2c=w2c[start:start + n])
        old = jax.tree_util.tree_leaves(fused.carry)
        got = fused.step(target_w2c=w2c[start:start + n])
        start += n
        assert got.index == want.index == b and len(got.frames) == n
        for f in FIELDS:
            x, y = getattr(want, f), getattr(got, f)
            assert x.dtype == y.dtype and x.shape == y.shape, f
            np.testing.assert_array_equal(y, x, err_msg=f"block {b}: {f}")
        assert want.views is got.views is None
        assert set(want.latency) == {"warp", "encode", "dit", "decode", "total"} and set(got.latency) == {"total"}
        assert _signature(fused.carry) == init and tree_bytes(fused.carry) == size
        assert all(x.is_deleted() for x in old)  # donated: XLA wrote the new state over the old one
    assert int(fused.carry.rollout.block) == 3
    assert got.frames.std() > 1.0 and got.masks.mean() > 0.5  # not a constant image; a covered render


@pytest.mark.slow  # ~6 min on a shared 2-core CPU (compiling the staged and the fused programs)
@pytest.mark.parametrize("decoder", ["wan", "tiny"])
def test_fused_session_equals_staged(setup, decoder):
    _compare(*setup, decoder)


@pytest.mark.parametrize("decoder,dtype", [("wan", "float32"), ("tiny", "bfloat16")])
def test_carried_state_has_fixed_shapes(decoder, dtype):
    """The first block's program and a later block's take and return the carried state with the
    same structure, shapes, dtypes and bytes (`jax.eval_shape` on abstract params: traced, not
    compiled), so every block can donate it; the block outputs have the documented shapes. In
    bf16 the weights, the KV cache and every cache but the encoder's input frames are bf16."""
    spec, params = abstract_block("tiny", (H, W), decoder, dtype)
    assert {x.dtype for x in jax.tree_util.tree_leaves(params.dit)} == {np.dtype(dtype)}
    state = jax.eval_shape(lambda: init_block_state(spec, params, jax.random.PRNGKey(4)))
    for first in (True, False):
        n = 9 if first else 12
        new, out = jax.eval_shape(lambda p, s, x: block_step(spec, p, s, x, first), params, state,
                                  input_shapes(spec, first))
        assert _signature(new) == _signature(state) and tree_bytes(new) == tree_bytes(state)
        assert (out.frames.shape, out.frames.dtype) == ((n, H, W, 3), np.uint8) and out.renders.shape == (n, H, W, 3)
        assert (out.masks.shape, out.masks.dtype) == ((n, H, W), np.bool_) and out.latents.shape == (1, 3, 4, 4, 16)
        state = new
    kv = state.rollout.kv
    assert kv.k.shape == (2, 1, 2 * 3 * 4, 4, 16) and kv.k.dtype == np.dtype(dtype)  # 2 layers, 2 blocks of 3x2x2
    assert state.encoder["conv_in"].dtype == np.float32  # the last two input frames (the render, float32)
    caches = jax.tree_util.tree_leaves(({**state.encoder, "conv_in": None}, state.decoder))
    assert {x.dtype for x in caches} == {np.dtype(dtype)}


def test_fused_falls_back_to_staged_where_it_must(setup):
    """Per-block reference encoding (and so four-image scenes) stay on the staged path."""
    model, ref, geom = setup
    assert not NavigationSession(model, ref, geom, fused=True, reference_once=False).fused
    session = NavigationSession(model, ref[:4], planar_prior_geometry(4, H, W, depth=2.0), fused=True, fuse=True)
    assert not session.fused and session.carry is None and session.state is not None


@pytest.mark.slow  # 1,000 blocks at 16x16: ~4 min on a shared 2-core CPU (compiling included)
def test_fused_session_memory_is_flat_over_1000_blocks():
    """Live device bytes (`jax.live_arrays`) after every block, from the third on, equal those
    after the third: nothing accumulates over 1,000 blocks (12,000 frames, the reference
    bouncing back and forth)."""
    hw, t_ref, blocks = 16, 6, 1000
    model = random_star_model("tiny", jax.random.PRNGKey(0))
    ref = np.random.default_rng(0).integers(0, 256, (t_ref, hw, hw, 3), dtype=np.uint8)
    session = NavigationSession(model, ref, planar_prior_geometry(t_ref, hw, hw, depth=2.0),
                                rng=jax.random.PRNGKey(1), fused=True)
    live, t0 = [], time.perf_counter()
    for b in range(blocks):
        n = session.frames_needed()
        w2c = np.broadcast_to(np.eye(4, dtype=np.float32), (n, 4, 4)).copy()
        w2c[:, 0, 3] = 0.05 * np.sin(0.01 * (session.frame + np.arange(n)))  # sway left and right
        out = session.step(target_w2c=w2c)
        assert isinstance(out.frames, np.ndarray)
        live.append(sum(x.nbytes for x in jax.live_arrays()))
    assert session.block == blocks and int(session.carry.rollout.block) == blocks
    steady = np.asarray(live[2:])
    assert steady[0] >= tree_bytes(session.carry)  # the carried state is among the live arrays
    grew = f"live bytes grew: {steady[0]} -> max {steady.max()} (after block {steady.argmax() + 2})"
    assert np.all(steady == steady[0]), grew
    assert np.isfinite(out.latents).all()
    assert time.perf_counter() - t0 < 3600
