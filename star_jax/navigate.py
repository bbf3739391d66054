"""Main job: navigate a reference video with the STAR rollout, one block at a time.

    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny --video clip.mp4 --trajectory t.txt
    python -m star_jax.navigate ... --dry_run        # check every input and the output folder, then exit

Before anything heavy (decoding, building or compiling the model) `validate` opens every input:
the config's sizes, variant, dtype, sampler and camera fields, the video (header and first frame)
or manifest (with its depth folder and camera files), the camera path (trajectory, --w2c matrices
for every output frame, or key script), the checkpoint folders (their stored shapes against the
variant, without loading a weight), the text embedding and the output folder. The run is written
into a fresh hidden folder beside `config.output_dir` and swapped in at the end.

Per block the render coverage (the fraction of target pixels a reference point landed on) is
recorded; below LOW_RENDER_COVERAGE a warning is logged, and below `config.min_render_coverage`
(default MIN_RENDER_COVERAGE) the job stops with RenderCoverageError: a camera path that leaves
the part of the scene the reference shows (a displacement of 1e9, say) gives a black render, and
the model then invents the whole frame.

Writes to `config.output_dir`:
  navigate.mp4       the generated video
  renders.mp4        the reference warped into the target cameras (the explicit spatial constraint)
  contact_sheet.png  rows of reference | render | mask | output at a few frames
  metadata.json      inputs, the source video's size / frames / fps and the distinct reference
                     frames used, weights (random or checkpoint), text source, depth source, render
                     coverage and latency (warp / encode / DiT / decode) per block, frames per second
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.errors import InputError
from star_jax.io import files as io
from star_jax.io.video import VideoProbe
from star_jax.io.manifest import ManifestEntry
from star_jax.geometry.controller import ControllerConfig
from star_jax.geometry.trajectory import source_frame_indices
from star_jax.models.variants import DiTConfig, dit_variant
from star_jax.render import (
    CameraSource,
    build_target_cameras,
    check_camera_config,
    contact_sheet,
    load_reference,
    read_cameras,
    validate_reference,
)

OUTPUTS = ("navigate.mp4", "renders.mp4", "contact_sheet.png", "metadata.json")
MIN_RENDER_COVERAGE = 0.02  # default of config.min_render_coverage: a block below it stops the job
LOW_RENDER_COVERAGE = 0.10  # a block below it is logged as a warning


class RenderCoverageError(InputError):
    """A camera path whose renders hold almost no reference points (a block under the floor)."""


def total_frames(num_blocks: int, frames_per_block: int = 3) -> int:
    """Output frames of `num_blocks` blocks: 1 + 4 (3 blocks - 1) = 9 + 12 (blocks - 1)."""
    return 1 + 4 * (frames_per_block * num_blocks - 1)


def _progress(iterable, total):
    try:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc="blocks", unit="block", file=sys.stderr)
    except ImportError:  # pragma: no cover
        return iterable


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `validate` opened and worked out."""

    entry: ManifestEntry
    probe: VideoProbe
    cameras: CameraSource
    dit: DiTConfig
    num_frames: int  # output frames
    min_coverage: float


def _model_config(config) -> DiTConfig:
    import jax.numpy as jnp

    try:
        jnp.dtype(config.dtype)
    except TypeError:
        raise InputError(f"config.dtype: expected a dtype name (float32, bfloat16), found {config.dtype!r}") from None
    try:
        return dit_variant(config.variant, dtype=config.dtype)
    except ValueError as e:
        raise InputError(f"config.variant: {e}") from e


def _check_sampler(config) -> None:
    from star_jax.diffusion.schedule import few_step_schedule

    try:
        few_step_schedule(tuple(config.sampler.steps), config.sampler.shift)
    except ValueError as e:
        raise InputError(f"config.sampler: {e}") from e
    if not config.sampler.shift > 0:
        raise InputError(f"config.sampler.shift: expected a positive number, found {config.sampler.shift}")


def validate(config) -> Plan:
    """Opens every input and the output folder (see the module docstring); raises InputError
    within seconds, before anything is decoded, built or compiled."""
    if config.num_blocks < 1:
        raise InputError(f"config.num_blocks: expected >= 1, found {config.num_blocks}")
    cfg = _model_config(config)
    _check_sampler(config)
    if config.conditioning:
        from star_jax.inference.conditions import get_conditioning

        get_conditioning(config.conditioning)  # a known convention name
    check_camera_config(config)
    floor = float(config.get("min_render_coverage", MIN_RENDER_COVERAGE))
    if not 0 <= floor <= 1:
        raise InputError(f"config.min_render_coverage: expected a fraction in [0, 1], found {floor}")
    entry, probe = validate_reference(config)
    ctl = config.controller
    ControllerConfig(fps=config.video_spec.fps or probe.fps, max_speed=ctl.max_speed, max_accel=ctl.max_accel,
                     clearance=ctl.clearance)
    n_total = total_frames(config.num_blocks, cfg.frames_per_block)
    cameras = read_cameras(config, n_total)
    if config.checkpoint:
        from star_jax.checkpoint.convert import check_dit_folder
        from star_jax.checkpoint.export import folder_vae_config
        from star_jax.checkpoint.vae import check_vae_folder
        from star_jax.models.variants import vae_variant

        from star_jax.inference.model import checkpoint_conditioning

        check_dit_folder(os.path.join(config.checkpoint, "dit"), cfg)
        # a star_model.json beside it is readable and records the convention asked for (if any)
        checkpoint_conditioning(os.path.join(config.checkpoint, "dit"), config.conditioning or None)
        vae_dir = os.path.join(config.checkpoint, "vae")  # a trained VAE's vae.json states its own config
        check_vae_folder(vae_dir, folder_vae_config(vae_dir, dtype=config.dtype)
                         or vae_variant(config.variant, dtype=config.dtype))
    if config.prompt and config.text_embedding:
        raise InputError("config.prompt / config.text_embedding (--prompt / --text): expected one text source, "
                         "found both")
    if config.prompt:
        from star_jax.text import prompt_encoder

        prompt_encoder(config.variant, config.text_encoder or None, config.tokenizer or None)  # reads no weights
    if config.text_embedding:
        from star_jax.inference.model import load_text_embedding

        load_text_embedding(config.text_embedding, cfg.text_dim, cfg.text_len)  # InputError names the file
    io.check_output_folder(config.output_dir, OUTPUTS)
    return Plan(entry, probe, cameras, cfg, n_total, floor)


def _check_coverage(index: int, frames: tuple[int, int], coverage: float, plan: Plan, log) -> None:
    where = f"block {index} (frames {frames[0]}-{frames[1]})"
    if coverage < plan.min_coverage:
        raise RenderCoverageError(
            f"{plan.cameras.path}: {where}: expected a render coverage of at least {plan.min_coverage:.1%} "
            f"(config.min_render_coverage), found {coverage:.2%}: the camera path leaves the part of the scene the "
            f"reference shows (check its displacement scale)")
    if coverage < LOW_RENDER_COVERAGE:
        log(f"warning: {where}: render coverage {coverage:.1%} is low: the model invents most of these frames")


def run(config, log=print, dry_run: bool = False) -> dict:
    """validate, then ingest, build the model, generate block by block and write (module
    docstring); `dry_run` stops after validate."""
    t0 = time.perf_counter()
    plan = validate(config)
    entry = plan.entry
    if dry_run:
        log(f"dry run: inputs usable ({entry.video}: {plan.probe.size_hw[0]}x{plan.probe.size_hw[1]}, "
            f"{plan.cameras.kind} {plan.cameras.path}, {plan.num_frames} frames); output folder "
            f"{config.output_dir} writable")
        return {"dry_run": True, "video": entry.video, "camera": plan.cameras.kind, "frames": plan.num_frames}
    from star_jax.inference.model import load_star_model, random_star_model
    from star_jax.inference.session import NavigationSession, bounce_index

    clip, geometry = load_reference(entry, config, log)
    H, W = clip.frames.shape[1:3]
    freeze = None if config.camera.freeze_frame < 0 else int(config.camera.freeze_frame)
    if freeze is not None:
        source_frame_indices(1, len(clip.frames), freeze)  # a frame the clip has

    rng = jax.random.PRNGKey(config.seed)
    if config.checkpoint:
        model = load_star_model(config.variant, os.path.join(config.checkpoint, "dit"),
                                os.path.join(config.checkpoint, "vae"), config.text_embedding or None, config.dtype,
                                conditioning=config.conditioning or None)
    else:
        model = random_star_model(config.variant, rng, config.dtype, config.text_embedding or None,
                                  conditioning=config.conditioning or "inspatio-release")
        log(f"no --checkpoint: {model.weights} weights, so the video shows the pipeline, not a trained model")
    if config.prompt:
        from star_jax.text import embed_prompt

        emb, src = embed_prompt(config.prompt, config.variant, text_encoder=config.text_encoder or None,
                                tokenizer=config.tokenizer or None, cache_dir=config.prompt_cache or None)
        model = dataclasses.replace(model, text=jnp.asarray(emb), text_source=src)
    n_total = plan.num_frames

    ctl = config.controller
    session = NavigationSession(
        model, clip.frames, geometry, rng=jax.random.fold_in(rng, 1), steps=tuple(config.sampler.steps),
        shift=config.sampler.shift, point_size=config.warp.point_size, freeze_frame=freeze,
        controller=ControllerConfig(fps=clip.fps, max_speed=ctl.max_speed, max_accel=ctl.max_accel,
                                    clearance=ctl.clearance))
    if plan.cameras.kind == "keys":
        keys = (plan.cameras.value + [frozenset()] * n_total)[:n_total]
        cam_info, w2c = {"source": plan.cameras.path, "kind": "keys"}, None
    else:
        w2c, cam_info = build_target_cameras(config, geometry, n_total, entry.radius_ratio, plan.cameras)
        keys = None

    blocks, coverage, start = [], [], 0
    for i in _progress(range(config.num_blocks), config.num_blocks):
        n = session.frames_needed()
        sl = slice(start, start + n)
        block = session.step(target_w2c=w2c[sl]) if keys is None else session.step(keys=keys[sl])
        coverage.append(float(block.masks.mean()))
        _check_coverage(i, (start, start + n - 1), coverage[-1], plan, log)
        blocks.append(block)
        start += n

    frames = np.concatenate([b.frames for b in blocks])
    renders = np.concatenate([b.renders for b in blocks])
    masks = np.concatenate([b.masks for b in blocks])
    reference = np.concatenate([b.reference for b in blocks])
    lat = [b.latency for b in blocks]
    # blocks 0 and 1 include compilation (stream start, then the first continuing chunk)
    warm = blocks[2:] or blocks[-1:]
    steady = [b.latency for b in warm]
    steady_total = sum(x["total"] for x in steady)
    steady_frames = sum(len(b.frames) for b in warm)
    # the distinct source-video frames behind the output (the session plays the clip back and forth)
    shown = np.asarray([freeze]) if freeze is not None else bounce_index(np.arange(n_total), len(clip.frames))
    distinct_used = int(np.unique(clip.source_indices[shown]).size)
    with io.staged_folder(config.output_dir, OUTPUTS) as out:
        codec = io.write_mp4(os.path.join(out, "navigate.mp4"), frames, clip.fps)
        io.write_mp4(os.path.join(out, "renders.mp4"), renders, clip.fps)
        mask_rgb = np.repeat(io.to_uint8(masks)[..., None], 3, axis=-1)
        io.write_png(os.path.join(out, "contact_sheet.png"), contact_sheet([reference, renders, mask_rgb, frames]))
        meta = {
            "video": entry.video, "caption": entry.caption, "frames": int(len(frames)), "size_hw": [H, W],
            "fps": clip.fps, "reference": dict(clip.provenance(), distinct_source_frames_used=distinct_used),
            "blocks": config.num_blocks, "variant": config.variant, "dtype": config.dtype,
            "weights": model.weights, "text": model.text_source, "depth": geometry.kind,
            "camera": cam_info, "conditioning": session.conditioning_metadata(),
            "sampler": {"steps": list(config.sampler.steps), "shift": config.sampler.shift},
            "valid_fraction_mean": float(masks.mean()), "render_coverage_per_block": coverage,
            "min_render_coverage": plan.min_coverage, "codec": codec, "jax_backend": jax.default_backend(),
            "latency_per_block_s": lat,
            "steady_state": {"frames_per_s": steady_frames / steady_total,
                             "share": {k: sum(x[k] for x in steady) / steady_total
                                       for k in ("warp", "encode", "dit", "decode")}},
            "total_s": time.perf_counter() - t0,
        }
        io.write_json(os.path.join(out, "metadata.json"), meta)
    log(f"wrote {config.output_dir}/: {' '.join(OUTPUTS)} ({len(frames)} frames, "
        f"steady state {meta['steady_state']['frames_per_s']:.2f} frames/s, total {meta['total_s']:.1f}s)")
    return meta


def main(argv):
    del argv
    from absl import flags

    F = flags.FLAGS
    config = _CONFIG.value
    overrides = {"video": F.video, "trajectory": F.trajectory, "w2c_file": F.w2c, "keys_file": F.keys,
                 "checkpoint": F.checkpoint, "text_embedding": F.text, "prompt": F.prompt,
                 "text_encoder": F.text_encoder, "tokenizer": F.tokenizer, "output_dir": F.output_dir}
    with config.unlocked():
        for k, v in overrides.items():
            if v:
                config[k] = v
    run(config, dry_run=F.dry_run)


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    from star_jax import cli

    _CONFIG = config_flags.DEFINE_config_file("config", "experiments/navigate.py:variant=tiny", "experiment config",
                                              lock_config=True)
    flags.DEFINE_string("video", "", "reference video (replaces the config's manifest)")
    flags.DEFINE_string("trajectory", "", "InSpatio keyframe trajectory file (pitch / yaw / displacement)")
    flags.DEFINE_string("w2c", "", "per-frame OpenCV world-to-camera matrices (.npy / .json / .txt)")
    flags.DEFINE_string("keys", "", "key script: lines '<frames> forward+yaw_left'")
    flags.DEFINE_string("checkpoint", "", "folder with dit/ and vae/ converted orbax checkpoints")
    flags.DEFINE_string("text", "", "precomputed umT5 text embedding (.npy)")
    flags.DEFINE_string("prompt", "", "caption, embedded by umT5 (--text_encoder) or, for tiny, a hashed-word table")
    flags.DEFINE_string("text_encoder", "", "umT5 weights: Wan2.1 folder, models_t5_umt5-xxl-enc-bf16.pth, or a "
                        "transformers / diffusers folder")
    flags.DEFINE_string("tokenizer", "", "tokenizer.json or spiece.model (default: found beside the weights)")
    flags.DEFINE_string("output_dir", "", "where outputs go")
    cli.define_flags()
    sys.path.insert(0, os.getcwd())
    cli.main(main, parse=cli.absl_parser())
