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


def fill_cache(dit: WanDiT, params, kv: KVCache, text, ref, prev, first):
    """The context pass: [reference (B, F, h, w, 16) | previous block (B, F, h, w, 16)], zero-padded
    to in_dim, at t = 0, RoPE offset 0, full attention, written into `kv`; `first` (a bool, traced
    or not): the previous block is masked out (the first block has none). Returns the new cache."""
    cfg = dit.cfg
    f = cfg.frames_per_block
    b, _, h, w, _ = ref.shape
    tpf = tokens_per_frame(cfg, (h, w))
    ctx = _pad_channels(jnp.concatenate([ref.astype(jnp.float32), prev.astype(jnp.float32)], axis=1), cfg.in_dim)
    valid = jnp.where(first, f * tpf, 2 * f * tpf)
    # block_causal only shapes masks; the parameters are the same
    _, kv = dit.clone(block_causal=False).apply(
        {"params": params}, ctx, jnp.zeros((b,), jnp.float32), text, cache=kv, cache_mode="write", frame_offset=0,
        context_valid_tokens=valid)
    return kv


def block_flow(dit: WanDiT, params, kv: KVCache, text, x, t, extra):
    """The flow prediction (B, F, h, w, 16) of the noisy block x (B, F, h, w, 16) at timesteps t
    (B,) with its conditioning channels `extra` (B, F, h, w, 20) = [mask | render], at RoPE offset
    2F, attending to the cache `kv` and to itself."""
    f = dit.cfg.frames_per_block
    flow, _ = dit.apply({"params": params}, jnp.concatenate([x, extra], axis=-1), t, text, cache=kv,
                        cache_mode="read", frame_offset=2 * f)
    return flow


def causal_block_x0(dit: WanDiT, params, text, ref, prev, first: bool, x_t, t, mask, render):
    """The causal student's x0 prediction for one block, through the same cache code as `star_block`
    (a fresh cache filled by `fill_cache`, then `block_flow`): ref, prev, x_t, render
    (B, F, h, w, 16); mask (B, F, h, w, 4); t (B,) timesteps in [0, 1000]. Returns (B, F, h, w, 16)
    float32. Used by training (teacher-forced ODE init, the DMD exit forwards)."""
    cfg = dit.cfg
    b, _, h, w, _ = ref.shape
    kv = init_cache(cfg, b, 2 * cfg.frames_per_block * tokens_per_frame(cfg, (h, w)))
    kv = fill_cache(dit, params, kv, text, ref, prev, first)
    extra = jnp.concatenate([mask, render], axis=-1).astype(jnp.float32)
    t = jnp.asarray(t, jnp.float32)
    flow = block_flow(dit, params, kv, text, x_t.astype(jnp.float32), t, extra)
    return x0_from_flow(x_t, flow, (t / 1000.0)[:, None, None, None, None])


def _denoise_block(dit, params, state: RolloutState, text, cond: StarConditions, steps, shift, exit_step):
    cfg = dit.cfg
    f = cfg.frames_per_block
    b, nf, h, w, _ = cond.ref.shape
    if nf != f:
        raise ValueError(f"a block has {f} latent frames; conditions have {nf}")
    sched = few_step_schedule(steps, shift)
    kv = fill_cache(dit, params, state.kv, text, cond.ref, state.prev, state.block == 0)

    rng, k_init, k_steps = jax.random.split(state.rng, 3)
    x = jax.random.normal(k_init, (b, f, h, w, cfg.out_dim), jnp.float32)
    keys = jax.random.split(k_steps, len(sched.timesteps))
    extra = jnp.concatenate([cond.mask, cond.render], axis=-1).astype(jnp.float32)

    def denoise(x, step, exit_step=None):
        i, t, sigma, next_sigma, key = step
        flow = block_flow(dit, params, kv, text, x, jnp.full((b,), t), extra)
        x0 = x0_from_flow(x, flow, sigma)
        if exit_step is not None:  # at the exit step x0 itself is the block (re-noised to sigma 0)
            next_sigma = jnp.where(i == exit_step, 0.0, next_sigma)
        return add_noise(x0, jax.random.normal(key, x0.shape, jnp.float32), next_sigma)

    xs = (jnp.arange(len(sched.timesteps)), jnp.asarray(sched.timesteps), jnp.asarray(sched.sigmas),
          jnp.asarray(sched.next_sigmas), keys)
    if exit_step is None:
        x, _ = jax.lax.scan(lambda x, step: (denoise(x, step), None), x, xs)
        return RolloutState(kv, x, rng, state.block + 1), x, None

    # Self-Forcing's truncated rollout: the steps before `exit_step` run as usual, the exit step's
    # input is recorded and its x0 is the block; the later steps are skipped
    def until_exit(carry, step):
        x, x_in = carry
        i = step[0]
        x_new = jax.lax.cond(i <= exit_step, lambda: denoise(x, step, exit_step), lambda: x)
        return (x_new, jnp.where(i == exit_step, x, x_in)), None

    (x, x_in), _ = jax.lax.scan(until_exit, (x, jnp.zeros_like(x)), xs)
    return RolloutState(kv, x, rng, state.block + 1), x, x_in


def star_block(dit: WanDiT, params, state: RolloutState, text, cond: StarConditions,
               steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT):
    """Generates one block. cond: the block's conditions, (B, F, h, w, C) each; text (B, Lc, text_dim).
    Returns (new state, clean latents (B, F, h, w, 16) float32)."""
    state, x, _ = _denoise_block(dit, params, state, text, cond, steps, shift, None)
    return state, x


def star_block_exit(dit: WanDiT, params, state: RolloutState, text, cond: StarConditions, exit_step,
                    steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT):
    """`star_block` stopped at denoising step `exit_step` (an int32 scalar, traced or not): the steps
    before it run as usual, the exit step's x0 is the block (and the next block's context), the
    later steps are skipped. Returns (new state, block (B, F, h, w, 16), the exit step's input x
    (B, F, h, w, 16)). Self-Forcing training runs it without gradient and recomputes the exit
    forwards with gradient (`causal_block_x0`)."""
    return _denoise_block(dit, params, state, text, cond, steps, shift, jnp.asarray(exit_step, jnp.int32))


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
