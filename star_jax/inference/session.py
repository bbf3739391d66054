"""A navigation session: serves the generated video one STAR block at a time.

    session = NavigationSession(model, reference_frames, geometry, rng=jax.random.PRNGKey(0))
    out = session.step(target_w2c=w2c[:session.frames_needed()])   # cameras for this block's frames
    out = session.step(keys=[{"forward"}] * session.frames_needed())  # or driven by key presses
    out.frames, out.latency                                          # (n, H, W, 3) uint8, seconds
    NavigationSession(model, frames, geometry, decoder="tiny")       # decode with the model's TAEHV
    NavigationSession(model, frames, geometry, fused=True)           # one compiled program per block

Per block: the reference frames time-aligned with the block are warped into its target cameras
(depth-image warping with the warp recipe of the model's conditioning convention, e.g. the
release's supersampled point renderer for InSpatio weights; `session.conditioning_metadata()`
says which), the renders are VAE-encoded as one causal stream (the encoder state carries over
between blocks, so streaming equals encoding the whole video at once), the block is denoised
(`star_block`, the body of the jitted rollout scan), and its latents are decoded by the causal
VAE decoder (`decoder="wan"`) or the model's TAEHV (`decoder="tiny"`, `tiny_decoder(model)`;
both take the raw latents, `denormalize_latents` of the DiT's), whose state also carries over.
The first block yields 9 frames (latent frames 0-2 = frames 0-8), every later one 12.

Past the end of the reference video the source frames bounce back and forth (or stay on
`freeze_frame`), so a session can run forever; its state has a fixed size.

The reference latents do not depend on the camera, so they are encoded once per session (at the
first step). The source index of output frame t repeats every P frames (P = 2 (T - 1) for a
bounced clip of T frames, 1 for a frozen frame or T = 1), so the source window of latent j >= 1
(frames 4j - 3 .. 4j) repeats every L = lcm(P, 4) / 4 latents. What is cached: the reference
stream exactly as the per-block encode would see it (the bounced source frames, one causal
stream from frame 0, encoded in the session's own block shapes) for its first N = F ceil((L + 1)
/ F) latents, whole blocks covering one cycle of windows. Latent j < N is that stream's latent j:
equal to encoding the reference per block, through the first pass and the first bounce back.
Latent j >= N reuses the cached latent with the same source window, N - L + (j - N + L) mod L,
from the last cycle of the stream: the same frames, encoded after the history of one cycle and
not of every cycle since the start (a causal encoder's latent depends on the frames before its
window, so the per-block encode differed slightly from cycle to cycle; the cached one repeats).
With `reference_once=False` (and always with `fuse=True`) the reference is encoded per block as a
second stream beside the renders, as before the cache.

Staged or fused. By default every stage (warp, render encode with the mask latents, DiT block,
decode) runs as its own jitted program of `star_jax.inference.pipeline` with a host sync after
each, so `BlockOutput.latency` splits the block's time by stage (the table `rollout_bench`
prints). With `fused=True` the block is `pipeline.block_step_jit`: the same stage functions
compiled as one program (one for the first block, one for every later block), the carried
state (rollout state, encoder cache, decoder cache: `session.carry`, fixed shapes) donated and
overwritten in place, no host sync between stages; its outputs equal the staged path's bit for
bit (tests/inference/test_session_fused.py) and its latency holds the total only. Per-block
reference encoding (`reference_once=False`) and fused views (`fuse=True`) always run staged
(`session.fused` says which path runs).

With `fuse=True` (a four-image scene, `from_scene`) the reference holds V views, not a timeline:
every view is rendered into each target camera (with view 0's intrinsics) and the renders are
fused by a z-test; the block's source latents show the views chosen by coverage
(`star_jax.inference.multiview`), recorded in `BlockOutput.views`. The views behind each latent
follow the camera, so that reference stream is encoded per block.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.io import files as io
from star_jax.geometry.cameras import invert_rigid
from star_jax.geometry.controller import CameraController, ControllerConfig
from star_jax.geometry.trajectory import TrajectoryError, check_w2c, foreground_depth
from star_jax.inference.conditions import StarConditions, mask_to_latent
from star_jax.checkpoint.storage import CheckpointError
from star_jax.inference.model import StarModel, tiny_decoder
from star_jax.inference.multiview import assign_views, group_coverage, latent_groups, render_views
from star_jax.inference.pipeline import (
    DECODERS,
    BlockInputs,
    BlockParams,
    BlockSpec,
    block_step_jit,
    condition_stage,
    decode_stage,
    init_block_state,
    warp_stage,
)
from star_jax.inference.rollout import DEFAULT_SHIFT, DEFAULT_STEPS, init_rollout_state, star_block_jit
from star_jax.models.vae import WanVAE, encode_continue, encode_start, normalize_latents


@dataclasses.dataclass
class BlockOutput:
    index: int
    frames: np.ndarray  # (n, H, W, 3) uint8: the generated video
    renders: np.ndarray  # (n, H, W, 3) uint8: the reference warped into the target cameras
    masks: np.ndarray  # (n, H, W) bool: True where a point landed
    reference: np.ndarray  # (n, H, W, 3) uint8: the time-aligned reference frames
    target_w2c: np.ndarray  # (n, 4, 4)
    latents: np.ndarray  # (1, F, h, w, 16) float32: the block's clean normalised latents
    latency: dict  # seconds: warp, encode, dit, decode, total (a fused session: total only)
    source_indices: np.ndarray | None = None  # (n,) int: the reference frame (or view) behind each frame
    target_K: np.ndarray | None = None  # (n, 3, 3) float32: the intrinsics each frame was rendered with
    views: dict | None = None  # fused views only: per latent its view, the views kept, covered pixels


@functools.partial(jax.jit, static_argnums=0)
def _encode_stream(vae: WanVAE, params, video, cache):
    """video (B, n, H, W, 3): n = 1 + 4k with cache None (stream start), else 4k."""
    return encode_start(vae, params, video) if cache is None else encode_continue(vae, params, video, cache)


# the staged path: each stage of `pipeline.block_step` compiled on its own
_warp_stage = jax.jit(warp_stage, static_argnums=0)
_condition_stage = jax.jit(condition_stage, static_argnums=0, static_argnames="first")
_decode_stage = jax.jit(decode_stage, static_argnums=0, static_argnames="first")


def bounce_index(t: np.ndarray, num_source: int) -> np.ndarray:
    """Frame t of an endless stream -> a source frame, playing the reference forward, backward, ..."""
    t = np.asarray(t)
    if num_source == 1:
        return np.zeros_like(t)
    period = 2 * (num_source - 1)
    i = t % period
    return np.where(i < num_source, i, period - i)


def cycle_latents(num_source: int, frozen: bool = False) -> int:
    """L: the source window of latent j >= 1 (output frames 4j - 3 .. 4j) repeats every L latents."""
    period = 1 if frozen or num_source == 1 else 2 * (num_source - 1)
    return math.lcm(period, 4) // 4


def cached_latent_index(j: np.ndarray, cycle: int, cached: int) -> np.ndarray:
    """Latent j of the endless reference stream -> the index of the cached latent standing for it:
    j itself below `cached` (N), else the one in the cache's last cycle with the same source window."""
    j = np.asarray(j)
    if cached < cycle + 1:
        raise ValueError(f"the cache must hold a whole cycle after latent 0: cached {cached} < cycle {cycle} + 1")
    start = cached - cycle
    return np.where(j < cached, j, start + (j - start) % cycle)


class NavigationSession:
    """reference: (T, H, W, 3) uint8; geometry: a `SceneGeometry` (depth (T, H, W), K (T, 3, 3),
    w2c (T, 4, 4)). Target cameras are world-to-camera in the geometry's world. `point_size`: the
    splat footprint at output resolution (the release's 2); the rest of the warp recipe and the
    mask encoding come from `model.conditioning`. `fuse`: the reference is V >= 3 views of a
    four-image scene (geometry one entry per view), fused per target (module docstring).
    `decoder`: "wan" (the VAE's decoder) or "tiny" (the model's TAEHV; CheckpointError without
    one). `reference_once`: encode the reference once per session (module docstring); False
    encodes it per block (the behaviour before the cache; fused views always do). `fused`: one
    compiled program per block with the carried state donated (module docstring; latency: total
    only); ignored (staged) with `reference_once=False` or `fuse=True`."""

    def __init__(self, model: StarModel, reference: np.ndarray, geometry, *, rng=None,
                 steps: Sequence[int] = DEFAULT_STEPS, shift: float = DEFAULT_SHIFT, point_size: int = 2,
                 freeze_frame: int | None = None, controller: ControllerConfig | None = None,
                 fuse: bool = False, decoder: str = "wan", reference_once: bool = True, fused: bool = False):
        reference = np.asarray(reference)
        if reference.ndim != 4 or reference.shape[-1] != 3 or reference.dtype != np.uint8:
            raise ValueError(f"reference must be (T, H, W, 3) uint8, got {reference.shape} {reference.dtype}")
        T, H, W, _ = reference.shape
        if geometry.depth.shape != (T, H, W):
            raise ValueError(f"geometry depth {geometry.depth.shape} does not match the reference {(T, H, W)}")
        f = model.vae.cfg.spatial_factor
        if H % (2 * f) or W % (2 * f):
            raise ValueError(f"frame size {H}x{W} must be a multiple of {2 * f} (VAE x DiT patch)")
        self.model = model
        self.reference = reference
        self.geometry = geometry
        self.steps, self.shift, self.point_size = tuple(steps), float(shift), point_size
        self.warp_recipe = model.conditioning.warp_recipe(point_size)
        self.freeze_frame = freeze_frame
        self.fuse = bool(fuse)
        if self.fuse and T < model.dit.cfg.frames_per_block:
            raise ValueError(f"fused views: {model.dit.cfg.frames_per_block} latents per block need at least as many "
                             f"views, got {T}")
        self.latent_hw = (H // f, W // f)
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        self.decoder = decoder
        if decoder == "tiny":
            tae, _ = tiny_decoder(model)
            vc, tc = model.vae.cfg, tae.cfg
            if (tc.latent_channels, tc.spatial_factor, tc.temporal_factor) != (vc.z_dim, f, vc.temporal_factor):
                raise CheckpointError(f"decoder 'tiny': {model.taehv_source}: expected a TAEHV of the VAE's latents "
                                      f"({vc.z_dim} channels, {f}x space, {vc.temporal_factor}x time), found "
                                      f"({tc.latent_channels}, {tc.spatial_factor}x, {tc.temporal_factor}x)")
        self.reference_once = bool(reference_once) and not self.fuse
        self.fused = bool(fused) and self.reference_once  # fused views and per-block reference: staged
        self._spec = BlockSpec.of(model, (H, W), decoder, point_size, self.steps, self.shift)
        self._params = BlockParams.of(model, decoder)
        self._ref_latents = None  # (1, N, h, w, z) normalised: the cached reference stream (module docstring)
        self.reference_seconds = 0.0  # time spent encoding it
        self.scene_scale = foreground_depth(geometry.depth[0])
        self.controller = CameraController(controller or ControllerConfig(), self.scene_scale,
                                           geometry.depth[0], geometry.K[0])
        self._anchor_c2w = np.asarray(invert_rigid(jnp.asarray(geometry.w2c[0], jnp.float32)), np.float64)
        self._rng = jax.random.PRNGKey(0) if rng is None else rng
        self.reset()

    @classmethod
    def from_scene(cls, model: StarModel, folder, hw: tuple[int, int] | None = None, **kw) -> "NavigationSession":
        """A session on an InSpatio-World 1.5 scene folder (`star_jax.io.scene_folder`) at (H, W) = hw
        (default: the scene's size). Its own target cameras: `load_scene(folder).target_w2c`."""
        from star_jax.io.scene_folder import load_scene, scene_clip, scene_source_type

        scene = load_scene(folder)
        clip, geometry = scene_clip(scene, str(folder), hw)
        return cls(model, clip.frames, geometry, fuse=scene_source_type(scene) == "multi-image", **kw)

    def reset(self) -> None:
        cfg = self.model.dit.cfg
        self.block = 0
        self.frame = 0  # first output frame of the next block
        if self.fused:  # one donated pytree: rollout state, encoder and decoder caches
            self.carry = init_block_state(self._spec, self._params, self._rng)
            self.state = self._enc_cache = self._dec_cache = None
        else:
            self.carry = None
            self.state = init_rollout_state(cfg, 1, self.latent_hw, self._rng)
            self._enc_cache = None  # the renders' encoder stream (and the reference's when encoded per block)
            self._dec_cache = None
        self.controller.reset()  # the cached reference latents stay: they depend on no camera

    def conditioning_metadata(self) -> dict:
        """The conditioning this session feeds the DiT (convention, mask encoding, warp recipe, and
        where the convention came from), for output metadata."""
        return {**self.model.conditioning.metadata(self.point_size), "source": self.model.conditioning_source}

    def decoder_metadata(self) -> dict:
        """Which decoder turns latents into frames, and its weights, for output metadata."""
        weights = self.model.weights if self.decoder == "wan" else self.model.taehv_source
        return {"decoder": self.decoder, "network": "Wan VAE decoder" if self.decoder == "wan" else "TAEHV",
                "weights": weights}

    def reference_metadata(self) -> dict:
        """How the reference latents are encoded: once (the cycle and cache sizes, the seconds it
        took) or per block."""
        if not self.reference_once:
            return {"encoded": "per block"}
        cycle, cached = self._reference_sizes()
        return {"encoded": "once", "cycle_latents": cycle, "cached_latents": cached,
                "seconds": self.reference_seconds}

    def _reference_sizes(self) -> tuple[int, int]:
        F = self.model.dit.cfg.frames_per_block
        cycle = cycle_latents(len(self.reference), self.freeze_frame is not None)
        return cycle, F * -(-(cycle + 1) // F)

    def reference_latents(self) -> jnp.ndarray:
        """The cached reference stream (1, N, h, w, z), normalised; encoded on the first call, as
        the per-block encode would: the bounced source frames in the session's block shapes."""
        if self._ref_latents is None:
            t0 = time.perf_counter()
            m, F = self.model, self.model.dit.cfg.frames_per_block
            _, cached = self._reference_sizes()
            cache, parts, t = None, [], 0
            for b in range(cached // F):
                n = 1 + 4 * (F - 1) if b == 0 else 4 * F
                video = jnp.asarray(self.reference[self._source_at(t, n)], jnp.float32)[None] / 127.5 - 1.0
                dist, cache = _encode_stream(m.vae, m.vae_params, video, cache)
                parts.append(normalize_latents(dist.mean, m.vae.cfg))
                t += n
            self._ref_latents = jax.block_until_ready(jnp.concatenate(parts, axis=1))
            self.reference_seconds = time.perf_counter() - t0
        return self._ref_latents

    def frames_needed(self) -> int:
        """Output frames of the next block: 1 + 4 (F - 1) for the first, 4 F after."""
        f = self.model.dit.cfg.frames_per_block
        return 1 + 4 * (f - 1) if self.block == 0 else 4 * f

    def source_indices(self, n: int) -> np.ndarray:
        """The source frames behind the next block's n output frames."""
        return self._source_at(self.frame, n)

    def _source_at(self, start: int, n: int) -> np.ndarray:
        t = np.arange(start, start + n)
        if self.freeze_frame is not None:
            return np.full_like(t, self.freeze_frame)
        return bounce_index(t, len(self.reference))

    def cameras_from_keys(self, keys: Iterable[Iterable[str]]) -> np.ndarray:
        """Steps the controller once per frame -> world-to-camera (n, 4, 4) anchored at the first
        reference camera."""
        rel = self.controller.run(list(keys))
        return np.linalg.inv(self._anchor_c2w @ rel).astype(np.float32)

    def step(self, target_w2c: np.ndarray | None = None, keys: Iterable[Iterable[str]] | None = None) -> BlockOutput:
        n = self.frames_needed()
        if (target_w2c is None) == (keys is None):
            raise ValueError("give exactly one of target_w2c (n, 4, 4) or keys (n sets of key names)")
        if keys is not None:
            keys = list(keys)
            if len(keys) != n:
                raise ValueError(f"block {self.block} needs keys for {n} frames, got {len(keys)}")
            target_w2c = self.cameras_from_keys(keys)
        target_w2c = np.asarray(target_w2c, np.float32)
        if target_w2c.shape != (n, 4, 4):
            raise TrajectoryError(f"block {self.block} needs target_w2c of shape {(n, 4, 4)}, got {target_w2c.shape}")
        target_w2c = check_w2c(target_w2c, f"block {self.block} target_w2c").astype(np.float32)
        if self.fused:
            out = self._step_fused(target_w2c, n)
        else:
            out = self._step_staged(target_w2c, n)
        self.block += 1
        self.frame += n
        return out

    def _reference_block(self) -> jnp.ndarray:
        """The next block's reference latents (1, F, h, w, z), from the cached stream (encoded on
        the first call)."""
        F = self.model.dit.cfg.frames_per_block
        return self.reference_latents()[:, cached_latent_index(F * self.block + np.arange(F), *self._reference_sizes())]

    def _block_inputs(self, src: np.ndarray, target_K: np.ndarray, target_w2c: np.ndarray, z_ref) -> BlockInputs:
        """The host inputs of a block: the time-aligned source frames `src`, their geometry, the
        targets, the block's reference latents `z_ref` (None where the warp alone reads them)."""
        g = self.geometry
        f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
        return BlockInputs(self.reference[src], f32(g.depth[src]), f32(g.K[src]), f32(g.w2c[src]), f32(target_K),
                           f32(target_w2c), z_ref)

    def _step_fused(self, target_w2c: np.ndarray, n: int) -> BlockOutput:
        """`pipeline.block_step` as one program, the carried state donated; latency: total only."""
        t0 = time.perf_counter()
        src = self.source_indices(n)
        target_K = self.geometry.K[src]
        inputs = self._block_inputs(src, target_K, target_w2c, self._reference_block())  # block 0: + reference encode
        self.carry, out = block_step_jit(self._spec, self._params, self.carry, inputs, first=self.block == 0)
        out = jax.device_get(out)
        lat = {"total": time.perf_counter() - t0}
        return BlockOutput(self.block, out.frames, out.renders, out.masks, self.reference[src], target_w2c,
                           out.latents, lat, np.asarray(src), np.asarray(target_K, np.float32))

    def _step_staged(self, target_w2c: np.ndarray, n: int) -> BlockOutput:
        """The stages as separate programs with a host sync after each: per-stage latency."""
        m = self.model
        g = self.geometry
        lat = {}
        t0 = time.perf_counter()

        first = self.block == 0
        views = None
        if self.fuse:
            warped, counts = render_views(self.reference.astype(np.float32) / 255.0, g.depth, g.K, g.w2c, g.K[0],
                                          target_w2c, self.warp_recipe)
            groups = latent_groups(n, first)
            overlap = group_coverage(counts, groups)
            chosen, kept = assign_views(overlap)
            src = np.concatenate([np.full(gr.stop - gr.start, v) for gr, v in zip(groups, chosen)])
            target_K = np.broadcast_to(g.K[0], (n, 3, 3))
            views = {"latent_views": list(chosen), "kept_views": list(kept), "overlap_pixels": overlap.tolist()}
            renders = io.to_uint8(warped.rgb)
        else:
            src = self.source_indices(n)
            target_K = g.K[src]
            warped, renders = _warp_stage(self._spec, self._block_inputs(src, target_K, target_w2c, None))
        ref = self.reference[src]
        jax.block_until_ready(warped)
        t1 = time.perf_counter()
        lat["warp"] = t1 - t0

        if self.reference_once:  # the first block also pays for the one-time reference encode
            cond, self._enc_cache = _condition_stage(self._spec, m.vae_params, warped, self._reference_block(),
                                                     self._enc_cache, first=first)
        else:
            pair = jnp.stack([jnp.asarray(ref, jnp.float32) / 127.5 - 1.0, warped.rgb * 2.0 - 1.0])  # (2, n, H, W, 3)
            dist, self._enc_cache = _encode_stream(m.vae, m.vae_params, pair, self._enc_cache)
            z = normalize_latents(dist.mean, m.vae.cfg)
            mask = mask_to_latent(warped.mask[None], m.vae.cfg.spatial_factor, m.vae.cfg.temporal_factor,
                                  first=first, convention=m.conditioning)
            cond = StarConditions(z[:1], z[1:], mask)
        jax.block_until_ready(cond)
        t2 = time.perf_counter()
        lat["encode"] = t2 - t1

        self.state, latents = star_block_jit(m.dit, m.dit_params, self.state, m.text, cond, steps=self.steps,
                                             shift=self.shift)
        jax.block_until_ready(latents)
        t3 = time.perf_counter()
        lat["dit"] = t3 - t2

        frames, self._dec_cache = _decode_stage(self._spec, self._params, latents, self._dec_cache, first=first)
        frames = np.asarray(frames)
        t4 = time.perf_counter()
        lat["decode"] = t4 - t3
        lat["total"] = t4 - t0

        return BlockOutput(self.block, frames, np.asarray(renders), np.asarray(warped.mask), ref, target_w2c,
                           np.asarray(latents), lat, np.asarray(src), np.asarray(target_K, np.float32), views)
