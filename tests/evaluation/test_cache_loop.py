"""benchmarks/cache_loop.py: the loop world is symmetric (same pose, same true image, way out and
way back), frames map to their blocks, the metrics read what they claim, and "no cache" really
removes the previous block from the context (block 1 no longer depends on block 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks import cache_loop
from experiments.train_smoke import get_config
from star_jax.evaluation import psnr
from star_jax.inference.conditions import StarConditions
from star_jax.models.dit import WanDiT
from star_jax.models.variants import DiTConfig
from star_jax.train.config import section


def test_block_of_frame():
    blocks = cache_loop.block_of_frame(45)
    assert [int(np.sum(blocks == b)) for b in range(4)] == [9, 12, 12, 12]  # 1 + 4 + 4 latents, then 3 x 4
    assert blocks[8] == 0 and blocks[9] == 1 and blocks[20] == 1 and blocks[21] == 2 and blocks[44] == 3


def test_loop_metrics_read_what_they_claim():
    rng = np.random.default_rng(0)
    t, blocks = 21, cache_loop.block_of_frame(21)
    base = rng.uniform(0, 1, (t, 16, 16, 3))
    sym = (base + base[::-1]) / 2  # frame i equals frame T - 1 - i
    valid = np.ones((t, 16, 16), np.uint8)
    valid[:, :, :4] = 0
    m = cache_loop.loop_metrics(sym, sym, valid, blocks)
    assert m["truth/all"] == np.inf and m["loop/all"] == np.inf and m["loop/holes"] == np.inf
    noisy = np.clip(sym + 0.1 * rng.standard_normal(sym.shape) * (valid == 0)[..., None], 0, 1)  # noise in holes
    m = cache_loop.loop_metrics(noisy, sym, valid, blocks)
    assert np.isfinite(m["truth/holes"]) and m["truth/all"] > m["truth/holes"]
    pairs = [i for i in range(t // 2) if blocks[i] != blocks[t - 1 - i]]
    assert m["loop/all"] == pytest.approx(psnr(noisy[pairs], noisy[[t - 1 - i for i in pairs]]))
    still = np.repeat(base[:1], t, axis=0)
    jump = still.copy()
    jump[blocks == 1] = 1 - jump[blocks == 1]  # a seam at the block boundary
    m = cache_loop.loop_metrics(jump, still, valid, blocks)
    assert m["seam/within"] == np.inf and np.isfinite(m["seam/boundary"])


def test_loop_world_is_symmetric():
    clip = cache_loop.loop_world(9, blocks=2, yaw=20.0, hw=(32, 48), supersample=1)
    t = len(clip["target_rgb"])
    assert t == 21 and clip["source_rgb"].shape == (21, 32, 48, 3)
    np.testing.assert_allclose(clip["target_w2c"], clip["target_w2c"][::-1], atol=1e-6)
    assert psnr(clip["target_rgb"], clip["target_rgb"][::-1]) > 40  # the same image at the same pose
    assert np.all(clip["source_rgb"] == clip["source_rgb"][:1])  # a still reference
    r0, rm = clip["target_w2c"][0, :3, :3], clip["target_w2c"][t // 2, :3, :3]
    angle = np.degrees(np.arccos(np.clip((np.trace(r0 @ rm.T) - 1) / 2, -1, 1)))
    assert angle == pytest.approx(20.0, abs=0.01)


@pytest.mark.slow  # ~60 s on 2 busy CPU cores (~20 s idle): compiling the STAR block
def test_no_cache_removes_the_previous_block_from_the_context():
    cfg = section(DiTConfig, get_config().model, "dit", "config.model")
    dit = WanDiT(cfg, block_causal=True)
    params = jax.jit(lambda k: dit.init(k, jnp.zeros((1, 3, 4, 4, cfg.in_dim)), jnp.zeros((1,)),
                                        jnp.zeros((1, 4, cfg.text_dim))))(jax.random.PRNGKey(0))["params"]
    keys = jax.random.split(jax.random.PRNGKey(1), 4)
    ref = jax.random.normal(keys[0], (1, 6, 4, 4, 16))
    cond = StarConditions(ref, jax.random.normal(keys[1], (1, 6, 4, 4, 16)), jnp.ones((1, 6, 4, 4, 4)))
    other = cond.replace(ref=ref.at[:, :3].set(jax.random.normal(keys[2], (1, 3, 4, 4, 16))))  # block 0 differs
    text = jax.random.normal(keys[3], (1, 4, cfg.text_dim))
    rng = jax.random.PRNGKey(2)
    run = lambda c, cache: np.asarray(cache_loop.generate(dit, params, text, c, rng, cache))  # noqa: E731
    with_cache, without = run(cond, True), run(cond, False)
    np.testing.assert_array_equal(with_cache[:, :3], without[:, :3])  # block 0 has no previous block either way
    assert np.max(np.abs(run(other, True)[:, 3:] - with_cache[:, 3:])) > 1e-3  # block 1 sees block 0 ...
    np.testing.assert_allclose(run(other, False)[:, 3:], without[:, 3:], atol=1e-6)  # ... unless the cache is off


def test_help_prints(capsys):
    with pytest.raises(SystemExit) as e:
        cache_loop.main(["--help"])
    assert e.value.code == 0 and "seed % 10 == 9" in capsys.readouterr().out
