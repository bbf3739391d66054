"""One navigation block as one compiled program: warp -> render encode -> mask latent -> DiT
block -> decode, with the whole carried state as one donated pytree.

    spec = BlockSpec.of(model, out_hw=(H, W), decoder="wan")       # static: networks and settings
    params = BlockParams.of(model, "wan")                          # DiT, VAE (and TAEHV) params, text
    state = init_block_state(spec, params, rng)                    # fixed shapes and dtypes
    state, out = block_step_jit(spec, params, state, inputs, first=True)   # 9 frames
    state, out = block_step_jit(spec, params, state, inputs, first=False)  # 12 frames, and so on

`block_step` is the body of `NavigationSession(..., fused=True)`; the session's staged path
calls the same stage functions (`warp_stage`, `condition_stage`, `rollout.star_block`,
`decode_stage`) as separate jitted programs with a host sync between them, to time each stage.

Per block the host supplies `BlockInputs`: the time-aligned reference frames (uint8) with their
depth, intrinsics and world-to-camera, the target cameras, and the block's reference latents
(the session's cached stream, gathered per block). The carried `BlockState` is the DiT rollout
state (KV cache, previous block, rng, block index), the renders' causal encoder cache and the
decoder's cache (Wan VAE) or memories (TAEHV): its shapes and dtypes never change, so
`block_step_jit` donates it (`donate_argnums`) and XLA writes the new state over the old one.

Two programs: the first block (9 frames, 3 latents: each stream starts, the input caches are
not read) and every later block (12 frames). Both take and return a state of the same shapes.
Outputs are uint8 frames and renders, the bool mask and the block's float32 latents.

`block_memory` lowers the step on abstract shapes (nothing allocated) and returns XLA's compiled
memory analysis: the bytes of the arguments, outputs, temporaries and of the donated state that
the outputs alias.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from star_jax.geometry.warp import WarpRecipe, WarpResult, warp_frames
from star_jax.inference.conditions import Conditioning, StarConditions, mask_to_latent
from star_jax.inference.rollout import DEFAULT_SHIFT, DEFAULT_STEPS, RolloutState, init_rollout_state, star_block
from star_jax.models import taehv
from star_jax.models.dit import WanDiT
from star_jax.models.vae import (
    WanVAE,
    decode_continue,
    decode_start,
    denormalize_latents,
    encode_continue,
    encode_start,
    normalize_latents,
)

DECODERS = ("wan", "tiny")


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """What a compiled block depends on besides arrays (hashable: the jit's static argument).
    `decoder`: "wan" (the VAE's decoder) or "tiny" (`taehv`, the TAEHV module)."""

    dit: WanDiT
    vae: WanVAE
    conditioning: Conditioning
    recipe: WarpRecipe
    out_hw: tuple[int, int]
    decoder: str = "wan"
    taehv: Any = None
    steps: tuple[int, ...] = DEFAULT_STEPS
    shift: float = DEFAULT_SHIFT

    def __post_init__(self):
        if self.decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {self.decoder!r}")
        if self.decoder == "tiny" and self.taehv is None:
            raise ValueError("decoder 'tiny' needs the TAEHV module (spec.taehv)")

    @classmethod
    def of(cls, model, out_hw: tuple[int, int], decoder: str = "wan", point_size: int = 2,
           steps=DEFAULT_STEPS, shift: float = DEFAULT_SHIFT) -> "BlockSpec":
        """The spec of a `StarModel` at frame size out_hw (H, W), its conditioning's warp recipe."""
        return cls(model.dit, model.vae, model.conditioning, model.conditioning.warp_recipe(point_size),
                   tuple(out_hw), decoder, model.taehv if decoder == "tiny" else None, tuple(steps), float(shift))

    @property
    def latent_hw(self) -> tuple[int, int]:
        f = self.vae.cfg.spatial_factor
        return self.out_hw[0] // f, self.out_hw[1] // f


class BlockParams(struct.PyTreeNode):
    """dit, vae: params; taehv: the TAEHV params (None with decoder "wan"); text (1, Lc, text_dim)."""

    dit: Any
    vae: Any
    taehv: Any
    text: jnp.ndarray

    @classmethod
    def of(cls, model, decoder: str = "wan") -> "BlockParams":
        return cls(model.dit_params, model.vae_params, model.taehv_params if decoder == "tiny" else None, model.text)


class BlockState(struct.PyTreeNode):
    """The carried state: rollout (the DiT's `RolloutState`), encoder (the renders' Wan encoder
    cache), decoder (the Wan decoder cache or the TAEHV memories). Fixed shapes and dtypes."""

    rollout: RolloutState
    encoder: Any
    decoder: Any


class BlockInputs(struct.PyTreeNode):
    """One block of n frames (n = 9 first, 12 after) from the host.
    source (n, H, W, 3) uint8: the time-aligned reference frames; depth (n, H, W) float32;
    source_K, target_K (n, 3, 3); source_w2c, target_w2c (n, 4, 4) float32;
    reference_latents (1, F, h, w, z) float32: the block's normalised reference latents."""

    source: jnp.ndarray
    depth: jnp.ndarray
    source_K: jnp.ndarray
    source_w2c: jnp.ndarray
    target_K: jnp.ndarray
    target_w2c: jnp.ndarray
    reference_latents: jnp.ndarray


class BlockOutputs(struct.PyTreeNode):
    """frames, renders (n, H, W, 3) uint8; masks (n, H, W) bool; latents (1, F, h, w, 16) float32
    (the block's clean normalised latents)."""

    frames: jnp.ndarray
    renders: jnp.ndarray
    masks: jnp.ndarray
    latents: jnp.ndarray


def to_uint8(x):
    """[0, 1] floats -> uint8, as `star_jax.io.files.to_uint8` (clip, x 255, + 0.5, truncate)."""
    return (jnp.clip(x, 0.0, 1.0) * 255.0 + 0.5).astype(jnp.uint8)


def warp_stage(spec: BlockSpec, inputs: BlockInputs) -> tuple[WarpResult, jnp.ndarray]:
    """The reference frames warped into the target cameras -> (WarpResult (n, H, W[, 3]) with rgb
    in [0, 1], the renders as uint8 (n, H, W, 3))."""
    rgb = inputs.source.astype(jnp.float32) / 255.0
    warped = warp_frames(rgb, inputs.depth, inputs.source_K, inputs.source_w2c, inputs.target_K, inputs.target_w2c,
                         out_hw=spec.out_hw, recipe=spec.recipe)
    return warped, to_uint8(warped.rgb)


def condition_stage(spec: BlockSpec, vae_params, warped: WarpResult, reference_latents, cache, first: bool):
    """The block's DiT conditions: the render encoded as the continuation of one causal stream
    (a new stream when `first`; `cache` is then not read), its mask packed into latents, the
    given reference latents. Returns (StarConditions (1, F, h, w, C), encoder cache)."""
    render = (warped.rgb * 2.0 - 1.0)[None]  # (1, n, H, W, 3)
    vae = spec.vae
    dist, cache = encode_start(vae, vae_params, render) if first else encode_continue(vae, vae_params, render, cache)
    mask = mask_to_latent(warped.mask[None], vae.cfg.spatial_factor, vae.cfg.temporal_factor, first=first,
                          convention=spec.conditioning)
    return StarConditions(reference_latents, normalize_latents(dist.mean, vae.cfg), mask), cache


def decode_stage(spec: BlockSpec, params: BlockParams, latents, cache, first: bool):
    """Normalised latents (1, F, h, w, 16) -> (frames (n, H, W, 3) uint8, decoder cache), with the
    Wan decoder or TAEHV (both take the raw latents), continuing the stream (new when `first`;
    `cache` is then not read)."""
    raw = denormalize_latents(latents, spec.vae.cfg)
    if spec.decoder == "tiny":
        frames, cache = (taehv.decode_start(spec.taehv, params.taehv, raw) if first
                         else taehv.decode_continue(spec.taehv, params.taehv, raw, cache))
    else:
        frames, cache = (decode_start(spec.vae, params.vae, raw) if first
                         else decode_continue(spec.vae, params.vae, raw, cache))
    return to_uint8((frames[0] + 1.0) / 2.0), cache


def block_step(spec: BlockSpec, params: BlockParams, state: BlockState, inputs: BlockInputs, first: bool):
    """One block, every stage: -> (new BlockState, BlockOutputs). `first` (static): the session's
    first block (9 frames; the encoder and decoder streams start, their input caches unread)."""
    warped, renders = warp_stage(spec, inputs)
    cond, enc = condition_stage(spec, params.vae, warped, inputs.reference_latents, state.encoder, first)
    rollout, latents = star_block(spec.dit, params.dit, state.rollout, params.text, cond, spec.steps, spec.shift)
    frames, dec = decode_stage(spec, params, latents, state.decoder, first)
    return BlockState(rollout, enc, dec), BlockOutputs(frames, renders, warped.mask, latents)


# The whole block compiled once per (spec, first, shapes), the carried state donated.
block_step_jit = jax.jit(block_step, static_argnums=0, static_argnames="first", donate_argnums=2, keep_unused=True)


def _zeros(tree):
    return jax.tree_util.tree_map(lambda s: jnp.zeros(s.shape, s.dtype), tree)


def state_shapes(spec: BlockSpec, params: BlockParams, rng) -> BlockState:
    """The carried state as ShapeDtypeStructs: what the first block's stages leave behind (every
    later block keeps it), from `jax.eval_shape` (nothing computed)."""
    H, W = spec.out_hw
    F = spec.dit.cfg.frames_per_block
    n = 1 + 4 * (F - 1)
    warped = WarpResult(jax.ShapeDtypeStruct((n, H, W, 3), jnp.float32), jax.ShapeDtypeStruct((n, H, W), jnp.bool_),
                        jax.ShapeDtypeStruct((n, H, W), jnp.float32))
    ref = jax.ShapeDtypeStruct((1, F, *spec.latent_hw, spec.vae.cfg.z_dim), jnp.float32)
    _, enc = jax.eval_shape(lambda p, w, r: condition_stage(spec, p, w, r, None, True), params.vae, warped, ref)
    _, dec = jax.eval_shape(lambda p, z: decode_stage(spec, p, z, None, True), params, ref)
    rollout = jax.eval_shape(lambda k: init_rollout_state(spec.dit.cfg, 1, spec.latent_hw, k), rng)
    return BlockState(rollout, enc, dec)


def init_block_state(spec: BlockSpec, params: BlockParams, rng) -> BlockState:
    """The state before the first block: the rollout's initial state (`init_rollout_state`) and
    all-zero caches of their steady shapes."""
    shapes = state_shapes(spec, params, rng)
    return BlockState(init_rollout_state(spec.dit.cfg, 1, spec.latent_hw, rng), _zeros(shapes.encoder),
                      _zeros(shapes.decoder))


def input_shapes(spec: BlockSpec, first: bool) -> BlockInputs:
    """A block's BlockInputs as ShapeDtypeStructs (9 frames first, 12 after)."""
    H, W = spec.out_hw
    F = spec.dit.cfg.frames_per_block
    n = 1 + 4 * (F - 1) if first else 4 * F
    f32 = jnp.float32
    return BlockInputs(jax.ShapeDtypeStruct((n, H, W, 3), jnp.uint8), jax.ShapeDtypeStruct((n, H, W), f32),
                       *(jax.ShapeDtypeStruct((n, *s), f32) for s in ((3, 3), (4, 4), (3, 3), (4, 4))),
                       jax.ShapeDtypeStruct((1, F, *spec.latent_hw, spec.vae.cfg.z_dim), f32))


def tree_bytes(tree) -> int:
    """Bytes of every array (or ShapeDtypeStruct) leaf of a pytree."""
    return sum(x.size * jnp.dtype(x.dtype).itemsize for x in jax.tree_util.tree_leaves(tree))


def block_memory(spec: BlockSpec, params: BlockParams, first: bool = False) -> dict:
    """XLA's compiled memory analysis of `block_step_jit` on abstract shapes (`params` may be
    ShapeDtypeStructs: nothing is allocated). Bytes: arguments (params, state, inputs), outputs
    (state and block outputs), alias (outputs written over donated arguments), temporaries,
    generated code; with state_bytes and params_bytes (the argument parts), and the compile
    seconds."""
    import time

    state = state_shapes(spec, params, jax.ShapeDtypeStruct((2,), jnp.uint32))
    t0 = time.perf_counter()
    compiled = block_step_jit.lower(spec, params, state, input_shapes(spec, first), first=first).compile()
    seconds = time.perf_counter() - t0
    m = compiled.memory_analysis()
    return dict(arguments=m.argument_size_in_bytes, outputs=m.output_size_in_bytes, alias=m.alias_size_in_bytes,
                temporaries=m.temp_size_in_bytes, code=m.generated_code_size_in_bytes, state_bytes=tree_bytes(state),
                params_bytes=tree_bytes(params), compile_seconds=seconds)


def abstract_block(variant: str, out_hw: tuple[int, int], decoder: str = "wan", dtype: str = "bfloat16",
                   num_layers: int | None = None, attention: str | None = None) -> tuple[BlockSpec, BlockParams]:
    """(spec, params as ShapeDtypeStructs) of a variant's block at frame size out_hw, weights and
    compute in `dtype` (the KV cache and the VAE activations follow it), the default conditioning,
    the text (1, text_len, text_dim) float32 as `load_text_embedding` gives it. `num_layers`: a
    reduced-depth DiT (same widths); `attention`: the DiT's implementation (default: the variant's).
    Nothing is allocated: for `block_memory`."""
    import flax.linen as nn

    from star_jax.inference.conditions import DEFAULT_CONDITIONING, get_conditioning
    from star_jax.models.dit import abstract_params
    from star_jax.models.variants import dit_variant, vae_variant
    from star_jax.models.vae import init_vae_params

    over = dict(dtype=dtype, param_dtype=dtype)
    if num_layers is not None:
        over["num_layers"] = num_layers
    if attention is not None:
        over["attention"] = attention
    dit = WanDiT(dit_variant(variant, **over), block_causal=True)
    vae = WanVAE(vae_variant(variant, dtype=dtype, param_dtype=dtype))
    tae = None
    if decoder == "tiny":
        name = "tiny" if variant == "tiny" else "wan2.1"
        tae = taehv.TAEHV(taehv.taehv_variant(name, dtype=dtype, param_dtype=dtype))

    def cast(tree):
        return jax.tree_util.tree_map(lambda s: jax.ShapeDtypeStruct(s.shape, jnp.dtype(dtype)), tree)

    dit_params = cast(nn.meta.unbox(abstract_params(dit.cfg)))
    vae_params = cast(jax.eval_shape(lambda: init_vae_params(vae, jax.random.PRNGKey(0), 16, 16)))
    tae_params = cast(taehv.taehv_param_shapes(tae)) if tae is not None else None
    text = jax.ShapeDtypeStruct((1, dit.cfg.text_len, dit.cfg.text_dim), jnp.float32)
    cond = get_conditioning(DEFAULT_CONDITIONING)
    spec = BlockSpec(dit, vae, cond, cond.warp_recipe(2), tuple(out_hw), decoder, tae)
    return spec, BlockParams(dit_params, vae_params, tae_params, text)
