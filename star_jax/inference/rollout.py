"""The STAR autoregressive rollout: blocks of 3 latent frames, each denoised in 4 steps against
an implicit spatiotemporal cache, as a jitted `lax.scan` over blocks.

    latents = rollout(dit, params, text, conditions, rng)             # (B, n, h, w, 16), n = 3 * blocks
    state = init_rollout_state(dit.cfg, batch, latent_hw, rng)        # or one block at a time:
    state, block = star_block(dit, params, state, text, conditions.frames(0, 3))

Per block (REFERENCE.md, the release's pipeline/causal_inference.py): the context [reference
latents of the block's 3 frames | the previous generated block], each padded with zeros in the 20
conditioning channels (the first block: reference only; the missing half is masked out), runs
once at t = 0 with RoPE time offset 0 and full attention (the reference tokens see the previous
block, as in the release's unmasked context attention) and fills the KV cache; then the noisy
block, as [noisy 16 | mask 4 | render 16], is denoised at RoPE offset 6 (every block, the first
included) attending to the cache and to itself. Each step predicts x0 and re-noises it to the next
step's sigma with fresh noise; the last step's x0 is the block and the next block's context. The
carry is the cache state (KV cache buffer, previous block, rng, block index), of fixed shape:
memory does not grow with the number of blocks, so a session can run forever.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import struct

from star_jax.diffusion.schedule import add_noise, few_step_schedule, x0_from_flow
from star_jax.inference.conditions import StarConditions
from star_jax.models.dit import KVCache, WanDiT, init_cache
from star_jax.models.variants import DiTConfig

DEFAULT_STEPS = (1000, 750, 500, 250)
DEFAULT_SHIFT = 5.0


class RolloutState(struct.PyTreeNode):
    """kv: the KV cache buffer (capacity 2 blocks of tokens), overwritten by each context pass;
    prev: (B, F, h, w, 16) the previous block's clean latents (zeros before the first block);
    rng: the key the next block's noise comes from; block: () int32 index of the next block."""

    kv: KVCache
    prev: jnp.ndarray
    rng: jax.Array
    block: jnp.ndarray


def tokens_per_frame(cfg: DiTConfig, latent_hw: tuple[int, int]) -> int:
    _, ph, pw = cfg.patch_size
    return (latent_hw[0] // ph) * (latent_hw[1] // pw)


def init_rollout_state(cfg: DiTConfig, batch: int, latent_hw: tuple[int, int], rng) -> RolloutState:
    f = cfg.frames_per_block
    kv = init_cache(cfg, batch, 2 * f * tokens_per_frame(cfg, latent_hw))
    prev = jnp.zeros((batch, f, *latent_hw, cfg.out_dim), jnp.float32)
    return RolloutState(kv, prev, rng, jnp.zeros((), jnp.int32))


def _pad_channels(x, channels: int):
    return jnp.pad(x, ((0, 0),) * (x.ndim - 1) + ((0, channels - x.shape[-1]),))


def star_block(dit: WanDiT, params, state: RolloutState, text, cond: StarConditions,
               steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT):
    """Generates one block. cond: the block's conditions, (B, F, h, w, C) each; text (B, Lc, text_dim).
    Returns (new state, clean latents (B, F, h, w, 16) float32)."""
    cfg = dit.cfg
    f = cfg.frames_per_block
    b, nf, h, w, _ = cond.ref.shape
    if nf != f:
        raise ValueError(f"a block has {f} latent frames; conditions have {nf}")
    sched = few_step_schedule(steps, shift)
    tpf = tokens_per_frame(cfg, (h, w))
    variables = {"params": params}

    # context pass at t = 0 with full attention: [reference | previous block], the missing
    # previous block masked out (block_causal only shapes masks; the parameters are the same)
    ctx = _pad_channels(jnp.concatenate([cond.ref.astype(jnp.float32), state.prev], axis=1), cfg.in_dim)
    valid = jnp.where(state.block == 0, f * tpf, 2 * f * tpf)
    _, kv = dit.clone(block_causal=False).apply(
        variables, ctx, jnp.zeros((b,), jnp.float32), text, cache=state.kv, cache_mode="write", frame_offset=0,
        context_valid_tokens=valid)

    rng, k_init, k_steps = jax.random.split(state.rng, 3)
    x = jax.random.normal(k_init, (b, f, h, w, cfg.out_dim), jnp.float32)
    keys = jax.random.split(k_steps, len(sched.timesteps))
    extra = jnp.concatenate([cond.mask, cond.render], axis=-1).astype(jnp.float32)

    def denoise(x, step):
        t, sigma, next_sigma, key = step
        flow, _ = dit.apply(variables, jnp.concatenate([x, extra], axis=-1), jnp.full((b,), t), text,
                            cache=kv, cache_mode="read", frame_offset=2 * f)
        x0 = x0_from_flow(x, flow, sigma)
        return add_noise(x0, jax.random.normal(key, x0.shape, jnp.float32), next_sigma), None

    x, _ = jax.lax.scan(denoise, x, (jnp.asarray(sched.timesteps), jnp.asarray(sched.sigmas),
                                     jnp.asarray(sched.next_sigmas), keys))
    return RolloutState(kv, x, rng, state.block + 1), x


# The same block, compiled on its own: what a session calls once per block.
star_block_jit = jax.jit(star_block, static_argnums=0, static_argnames=("steps", "shift"))


@functools.partial(jax.jit, static_argnums=0, static_argnames=("steps", "shift"))
def rollout(dit: WanDiT, params, text, conditions: StarConditions, rng,
            steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT):
    """All blocks of `conditions` (n latent frames, n a multiple of 3) as one `lax.scan`.
    Returns clean normalised latents (B, n, h, w, 16) float32."""
    cfg = dit.cfg
    f = cfg.frames_per_block
    b, n, h, w, _ = conditions.ref.shape
    if n % f:
        raise ValueError(f"conditions have {n} latent frames; need a multiple of the block size {f}")
    # Slice each block's conditions out of the inputs and write its latents into a preallocated
    # output inside the scan: no block-major copies, so working memory is the same for any n.
    state = init_rollout_state(cfg, b, (h, w), rng)
    out = jnp.zeros((b, n, h, w, cfg.out_dim), jnp.float32)

    def body(carry, _):
        state, out = carry
        i = state.block
        cond = jax.tree_util.tree_map(lambda a: jax.lax.dynamic_slice_in_dim(a, i * f, f, axis=1), conditions)
        state, x = star_block(dit, params, state, text, cond, steps, shift)
        return (state, jax.lax.dynamic_update_slice_in_dim(out, x, i * f, axis=1)), None

    (_, out), _ = jax.lax.scan(body, (state, out), None, length=n // f)
    return out
