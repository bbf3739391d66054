"""Forward on a (data=2, fsdp=2, tensor=2) 8-device CPU mesh equals the 1-device result, with
parameters placed by their logical-axis annotations."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from star_jax import sharding as sh
from star_jax.models import WanDiT, dit_variant, init_cache


def test_sharded_forward_and_cache_equal_unsharded(mesh8):
    cfg = dit_variant("tiny", in_dim=36)  # dim 64, 4 heads, ffn 128: all divisible by the mesh axes
    model = WanDiT(cfg, block_causal=True)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(4, 6, 4, 8, 36)), jnp.float32)
    ctx = jnp.asarray(rng.normal(size=(4, 5, cfg.text_dim)), jnp.float32)
    t = jnp.asarray(rng.uniform(0, 1000, size=(4, 6)), jnp.float32)

    # init and the 1-device references jitted: one compile each instead of ~100 op-by-op compiles
    boxed = jax.jit(model.init)(jax.random.key(1), x, t, ctx)["params"]
    params = nn.meta.unbox(boxed)
    y_ref, _ = jax.jit(model.apply)({"params": params}, x, t, ctx)

    shardings = sh.param_shardings(boxed, mesh8)
    # the rules really split things: ffn_0 kernel (layers, embed, mlp) -> (None, fsdp, tensor)
    assert shardings["blocks"]["ffn_0"]["kernel"].spec == P(None, "fsdp", "tensor")
    p_sharded = jax.device_put(params, shardings)
    batch = NamedSharding(mesh8, P(("data", "fsdp")))

    def fwd(p, x, t, c):
        with nn.logical_axis_rules(sh.ACTIVATION_RULES):
            return model.apply({"params": p}, x, t, c)[0]

    with jax.set_mesh(mesh8):
        y = jax.jit(fwd)(p_sharded, jax.device_put(x, batch), jax.device_put(t, batch), jax.device_put(ctx, batch))
    assert len(y.sharding.device_set) == 8
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-5, atol=1e-5)

    # the cached path too
    def fill_and_read(p, x, c):
        with nn.logical_axis_rules(sh.ACTIVATION_RULES):
            cache = init_cache(cfg, 4, 3 * 8)
            _, cache = model.apply({"params": p}, x[:, :3], jnp.zeros((4,)), c, cache=cache, cache_mode="write")
            return model.apply({"params": p}, x[:, 3:], jnp.full((4,), 600.0), c, cache=cache,
                               cache_mode="read", frame_offset=3)[0]

    y_c_ref = jax.jit(fill_and_read)(params, x, ctx)
    with jax.set_mesh(mesh8):
        y_c = jax.jit(fill_and_read)(p_sharded, jax.device_put(x, batch), jax.device_put(ctx, batch))
    np.testing.assert_allclose(np.asarray(y_c), np.asarray(y_c_ref), rtol=1e-5, atol=1e-5)
