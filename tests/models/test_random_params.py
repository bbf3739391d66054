"""NumPy-drawn random params: the leaf rules, determinism, and a random model that compiles fast
enough to build in every test module."""

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.models.random_params import fan_in, numpy_random_params, seed_of


def _abstract():
    s = jax.ShapeDtypeStruct
    return {"dense": {"kernel": s((256, 64), jnp.float32), "bias": s((64,), jnp.float32)},
            "blocks": {"kernel": s((3, 128, 32), jnp.float32), "norm": {"scale": s((3, 32), jnp.float32)}},
            "conv": {"kernel": s((3, 3, 3, 16, 8), jnp.bfloat16), "gamma": s((8,), jnp.float32)},
            "modulation": s((1, 6, 400), jnp.float32)}


def test_fan_in_of_dense_scanned_and_conv_kernels():
    assert fan_in((256, 64)) == 256
    assert fan_in((3, 128, 32)) == 128  # a scanned stack of 3 dense layers
    assert fan_in((3, 3, 3, 16, 8)) == 3 * 3 * 3 * 16
    assert fan_in((1, 2, 2, 36, 64)) == 144  # the DiT's patch embedding


def test_leaf_rules_and_statistics():
    p = numpy_random_params(_abstract(), 0)
    np.testing.assert_array_equal(p["dense"]["bias"], 0.0)
    np.testing.assert_array_equal(p["blocks"]["norm"]["scale"], 1.0)
    np.testing.assert_array_equal(p["conv"]["gamma"], 1.0)
    assert p["conv"]["kernel"].dtype == jnp.bfloat16 and p["dense"]["kernel"].dtype == jnp.float32
    for x, n in ((p["dense"]["kernel"], 256), (p["blocks"]["kernel"], 128), (p["conv"]["kernel"], 432),
                 (p["modulation"], 400)):
        std = float(np.std(np.asarray(x, np.float32)))
        assert abs(std * np.sqrt(n) - 1.0) < 0.1, (x.shape, std)


def test_same_seed_same_params_and_keys_seed_generators():
    a, b = numpy_random_params(_abstract(), 3), numpy_random_params(_abstract(), 3)
    c = numpy_random_params(_abstract(), 4)
    for x, y, z in zip(*(jax.tree_util.tree_leaves(t) for t in (a, b, c))):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a["dense"]["kernel"], c["dense"]["kernel"])
    k = jax.random.PRNGKey(7)
    assert seed_of(k).integers(1 << 30) == seed_of(k).integers(1 << 30)
    assert seed_of(jax.random.key(7)).integers(1 << 30) == seed_of(k).integers(1 << 30)  # typed = raw key
    assert seed_of(jax.random.PRNGKey(8)).integers(1 << 30) != seed_of(k).integers(1 << 30)
