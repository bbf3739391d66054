"""Random parameters drawn with NumPy onto an abstract params tree.

    abstract = jax.eval_shape(lambda: module.init(jax.random.PRNGKey(0), x)["params"])
    params = numpy_random_params(abstract, seed=0)

For random-weight models (tests, benchmarks, `--random` jobs): XLA:CPU takes minutes to compile a
whole network's threefry `init` (2.5 min for the tiny Wan VAE, 45 s for the tiny DiT on the shared
2-core CPU), NumPy draws the same shapes in milliseconds. Training initialises with `init` as
before (sharded, on device). Not the distribution of any reference's init: a fan-in-scaled one
that keeps activations O(1), which is all a random-weight model needs.
"""

from __future__ import annotations

import jax
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

NORM_GAINS = ("scale", "gamma", "weight")  # leaf names of norm gains (LayerNorm, RMS norms)


def fan_in(shape: tuple[int, ...]) -> int:
    """Input width of a kernel: (in, out) dense, (layers, in, out) a scanned dense, or a
    convolution (..., C_in, C_out) with its window (k_t x k_h x k_w x C_in)."""
    if len(shape) <= 3:
        return int(shape[-2]) if len(shape) >= 2 else int(shape[0])
    return int(np.prod(shape[:-1]))


def numpy_random_params(abstract, seed: int | np.random.Generator) -> dict:
    """Arrays for every leaf of `abstract` (ShapeDtypeStructs, a nested dict): kernels ~ N(0,
    1 / fan_in), biases 0, norm gains (`NORM_GAINS`) 1, anything else (modulation tables,
    embeddings) ~ N(0, 1 / last dim). Same seed, same params; each leaf keeps its dtype."""
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    out = {}
    for path, leaf in flatten_dict(abstract).items():
        shape, name = tuple(leaf.shape), path[-1]
        if name == "bias":
            x = np.zeros(shape)
        elif name in NORM_GAINS:
            x = np.ones(shape)
        elif name == "kernel":
            x = rng.standard_normal(shape) / np.sqrt(fan_in(shape))
        else:
            x = rng.standard_normal(shape) / np.sqrt(shape[-1] if shape else 1)
        out[path] = jax.numpy.asarray(x.astype(np.float32), leaf.dtype)
    return unflatten_dict(out)


def seed_of(rng) -> np.random.Generator:
    """A NumPy generator seeded by a JAX PRNG key (raw uint32 or typed): the same key, the same draws."""
    if jax.numpy.issubdtype(rng.dtype, jax.dtypes.prng_key):
        rng = jax.random.key_data(rng)
    return np.random.default_rng(np.asarray(rng, np.uint32).ravel().tolist())
