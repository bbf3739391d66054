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

The reference is a video, a manifest entry or an InSpatio-World 1.5 scene folder
(`star_jax.io.scene_folder`, made by `python -m star_jax.prepare`), in 1.5's three kinds: one
image (a static clip), four images (every view rendered into each target and fused by a z-test;
per block the views are assigned to its 3 source latents by coverage, recorded in the metadata
as views_per_block) or a video (target frame f from source frame f). A scene brings its own
target cameras (input/target_tcw.txt) unless another camera path is given: then its frame count
sets the blocks (`config.scene_blocks` caps them), the poses are padded to whole blocks by
repeating the last one, and only its valid_frames are written.

Camera paths: a keyframe trajectory, per-frame w2c matrices, a key script (--keys) or scripted
moves (--moves forward:36 turn-right+forward:36 look-up:12, `controller.parse_moves`), which
drive the interactive controller at the speeds of `config.moves_speed` and set the frame count
(blocks to cover them; only their frames are written).

Per block the render coverage (the fraction of target pixels a reference point landed on) is
recorded; below LOW_RENDER_COVERAGE a warning is logged, and below `config.min_render_coverage`
(default MIN_RENDER_COVERAGE) the job stops with RenderCoverageError: a camera path that leaves
the part of the scene the reference shows (a displacement of 1e9, say) gives a black render, and
the model then invents the whole frame.

Weights: `config.checkpoint`, a model folder (`star_jax.inference.model`: dit/, vae/,
star_model.json); for the tiny variant the default is the embedded trained tiny model. Its card
gives the text encoder: without --prompt / --text the reference's caption is embedded with it.
The card's description, and where this input leaves what the model was trained on (resolution,
planar depth, more latent frames than its clips), are logged and recorded under "model".
Empty `config.checkpoint`: random weights, and the outputs say so.

Decoder: `config.decoder` (--decoder) "wan" decodes with the Wan VAE's causal decoder, "tiny"
with the model folder's TAEHV (its taehv/, `python -m star_jax.checkpoint.convert_taehv`; a
folder without one stops the job at validate, naming it; random weights bring a random TAEHV).
The reference latents are encoded once per session (`star_jax.inference.session`); metadata
records the decoder and the reference encoding.

With `config.ground_truth` (a video of the true target views along the same camera path; the
default world ships one) the generated video is scored against it: PSNR over all pixels, inside
the render mask and in the holes (`star_jax.evaluation.ground_truth.psnr_metric`, pooled over the
clip; with --evaluate the evaluation's own "psnr" metric, the same numbers), logged and recorded,
and comparison.mp4 shows ground truth | generated side by side.

Writes to `config.output_dir`:
  navigate.mp4       the generated video
  renders.mp4        the reference warped into the target cameras (the explicit spatial constraint)
  comparison.mp4     ground truth | generated, side by side (only with a ground truth)
  contact_sheet.png  rows of reference | render | mask | output at a few frames
  cameras.npz        what the frames were generated for: target w2c (T, 4, 4), intrinsics K (T, 3, 3)
                     and the render masks (T, H, W) bool, so `python -m star_jax.evaluate --run` can
                     measure the video later
  metadata.json      frames written (valid_frames) and generated, the scene (kind, views, frames),
                     the views chosen per block (four-image scenes),
                     inputs, the source video's size / frames / fps and the distinct reference
                     frames used, weights (random or which model folder) and the model's card,
                     text source, depth source, render coverage and latency (warp / encode / DiT /
                     decode) per block, frames per second, and the PSNR against the ground truth
  metrics.json, report.png   with `config.evaluate` (--evaluate): `star_jax.evaluate` run on the
                     frames before compression (WorldScore-style metrics, ground-truth metrics)
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
from star_jax.io.scene_folder import is_scene_folder, read_scene_json
from star_jax.geometry.controller import ControllerConfig, MoveSpeeds, moves_controller_config
from star_jax.geometry.trajectory import TrajectoryError, source_frame_indices
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

OUTPUTS = ("navigate.mp4", "renders.mp4", "comparison.mp4", "contact_sheet.png", "cameras.npz", "metadata.json")
EVALUATION_OUTPUTS = ("metrics.json", "report.png")  # with config.evaluate
MIN_RENDER_COVERAGE = 0.02  # default of config.min_render_coverage: a block below it stops the job
LOW_RENDER_COVERAGE = 0.10  # a block below it is logged as a warning


class RenderCoverageError(InputError):
    """A camera path whose renders hold almost no reference points (a block under the floor)."""


def total_frames(num_blocks: int, frames_per_block: int = 3) -> int:
    """Output frames of `num_blocks` blocks: 1 + 4 (3 blocks - 1) = 9 + 12 (blocks - 1)."""
    return 1 + 4 * (frames_per_block * num_blocks - 1)


def blocks_for(frames: int, frames_per_block: int = 3) -> int:
    """The fewest blocks whose output covers `frames` frames (1.5's padding to whole blocks)."""
    latents = 1 + -(-(max(frames, 1) - 1) // 4)
    return -(-latents // frames_per_block)


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
    num_frames: int  # output frames generated (whole blocks)
    min_coverage: float
    card: object = None  # the model folder's ModelCard (None: random weights or a format-1 folder)
    num_blocks: int = 0
    valid_frames: int = 0  # output frames written (<= num_frames: a scene's valid_frames, the moves' frames)
    scene: dict | None = None  # a scene folder's scene.json, with "source_type" and "own_cameras"


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
    cameras, scene = _scene_cameras(config)
    if cameras is None:
        cameras = read_cameras(config)
    F = cfg.frames_per_block
    if scene is not None and scene["source_type"] == "multi-image" and config.camera.freeze_frame >= 0:
        raise InputError(f"config.camera.freeze_frame: a four-image scene ({config.video}) fuses every view into "
                         f"each frame, so no frame can be frozen: expected -1, found {config.camera.freeze_frame}")
    if cameras.kind == "moves":
        try:
            MoveSpeeds(**config.moves_speed)
        except TrajectoryError as e:
            raise InputError(f"config.moves_speed: {e}") from e
        n_valid = len(cameras.value)
        num_blocks = blocks_for(n_valid, F)
    elif scene is not None and scene["own_cameras"]:
        num_blocks = blocks_for(scene["frames"], F)
        if config.get("scene_blocks", 0) < 0:
            raise InputError(f"config.scene_blocks: expected 0 (all) or a block count, found {config.scene_blocks}")
        num_blocks = min(num_blocks, config.get("scene_blocks", 0) or num_blocks)
        n_valid = min(scene["valid_frames"], total_frames(num_blocks, F))
        w2c = cameras.value  # padded to whole blocks by repeating the last pose, as 1.5 pads its latents
        pad = total_frames(num_blocks, F) - len(w2c)
        cameras = dataclasses.replace(cameras, value=np.concatenate([w2c, np.repeat(w2c[-1:], max(pad, 0), 0)]))
    else:
        num_blocks = config.num_blocks
        n_valid = total_frames(num_blocks, F)
    n_total = total_frames(num_blocks, F)
    if cameras.kind == "w2c":
        from star_jax.render import check_w2c_count

        check_w2c_count(cameras.path, cameras.value, n_total)
    from star_jax.inference.pipeline import DECODERS

    decoder = config.get("decoder", "wan")
    if decoder not in DECODERS:
        raise InputError(f"config.decoder (--decoder): expected {' or '.join(map(repr, DECODERS))}, found {decoder!r}")
    if config.get("ground_truth", ""):
        _check_ground_truth(config.ground_truth, n_valid, probe)
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
    card = None
    if config.checkpoint:  # last: it traces the networks' shapes (seconds), the checks above are cheap
        from star_jax.inference.model import check_model_folder

        # dit/ and vae/ (shapes from orbax metadata), star_model.json (convention, variant, architecture)
        card = check_model_folder(config.checkpoint, config.variant, config.dtype, config.conditioning or None)
        if decoder == "tiny":
            from star_jax.inference.model import check_tiny_decoder_folder

            check_tiny_decoder_folder(config.checkpoint, config.dtype)  # CheckpointError naming <folder>/taehv
    return Plan(entry, probe, cameras, cfg, n_total, floor, card, num_blocks, n_valid, scene)


def _scene_cameras(config):
    """(cameras, scene) for a scene folder given as the video: its scene.json with "source_type"
    and "own_cameras" (True when the camera path is its input/target_tcw.txt, named or implied by
    giving no other), and those cameras; (None, None) for a video or manifest."""
    if not (config.video and is_scene_folder(config.video)):
        return None, None
    from star_jax.geometry import load_w2c_file
    from star_jax.render import CameraSource

    meta = read_scene_json(os.path.join(config.video, "scene.json"))
    kind = meta["kind"] if meta["kind"] == "video" else ("image" if meta["views"] == 1 else "multi-image")
    own = os.path.join(config.video, "input", "target_tcw.txt")
    named = config.w2c_file and os.path.abspath(config.w2c_file) == os.path.abspath(own)
    other = config.get("moves", "") or config.get("keys_file", "") or config.trajectory or config.w2c_file
    scene = dict(meta, source_type=kind, own_cameras=bool(named or not other))
    if scene["own_cameras"] and not (config.get("moves", "") or config.get("keys_file", "")):
        return CameraSource("w2c", own, load_w2c_file(own)), scene
    return None, dict(scene, own_cameras=False)


def _check_ground_truth(path: str, n_total: int, reference: VideoProbe) -> None:
    """The ground-truth video opens (header and first frame) and, when its header says, holds
    enough frames at the reference's rate."""
    from star_jax.io.video import probe_video

    if not os.path.isfile(path):
        raise InputError(f"config.ground_truth: {path}: no such file (the true target video; empty: no scoring)")
    gt = probe_video(path)
    if gt.num_frames is not None and gt.num_frames * reference.fps / gt.fps < n_total - 0.5:
        raise InputError(f"config.ground_truth: {path}: expected at least {n_total} frames at the reference's "
                         f"{reference.fps:g} fps, found {gt.num_frames} at {gt.fps:g} fps")


def _load_ground_truth(path: str, config, n: int) -> np.ndarray:
    """(n, H, W, 3) uint8: the ground-truth video at the job's size and rate."""
    from star_jax.io.video import load_video
    from star_jax.render import video_spec

    frames = load_video(path, video_spec(config)).frames
    if len(frames) < n:
        raise InputError(f"config.ground_truth: {path}: expected at least {n} frames, found {len(frames)}")
    return frames[:n]


def score(frames: np.ndarray, truth: np.ndarray, renders: np.ndarray, masks: np.ndarray, evaluation=None) -> dict:
    """PSNR (dB) of the generated frames against the ground truth over all pixels, inside the
    render mask and in the holes; the render itself inside its mask for reference. (T, H, W, 3)
    uint8 each, masks (T, H, W) bool. An empty region gives None. Read from `evaluation`'s "psnr"
    metric when the run evaluated (the same frames, truth, masks and renders), else measured by
    the same function (`ground_truth.psnr_metric`): one PSNR either way."""
    from star_jax.evaluation.ground_truth import psnr_metric

    m = None if evaluation is None else evaluation.metric("psnr")
    if m is None or not m.ok:
        m = psnr_metric(frames, truth, masks, renders)
    db = lambda v: None if v is None else round(float(v), 3)  # noqa: E731
    return {"psnr_db": {k: db(m.raw[k]) for k in ("all", "rendered", "holes")},
            "render_psnr_db": {"rendered": db(m.raw["render_rendered"])}, "hole_fraction": float(1 - masks.mean())}


def model_notes(card, config, hw: tuple[int, int], depth_kind: str, latent_frames: int) -> list[str]:
    """Where this run leaves what the model was trained on, one sentence each."""
    if card is None:
        return []
    notes = []
    if tuple(hw) != tuple(card.resolution_hw):
        notes.append(f"trained at {card.resolution_hw[0]}x{card.resolution_hw[1]}, running at {hw[0]}x{hw[1]}")
    if depth_kind == "planar-prior":
        notes.append("a planar depth prior stands in for measured depth: the renders only approximate the scene "
                     "and the model learned from exact depth")
    elif depth_kind == "estimated":
        notes.append("depth and cameras estimated by the geometry encoder (Depth-Anything-3): one scale for the "
                     "scene, frame 0's foreground depth 1; the model learned from exact depth")
    if config.video or not config.manifest or os.path.abspath(config.manifest) != default_world_manifest():
        notes.append("not the default world: on anything but the procedural worlds it was trained on (real video "
                     "above all) expect blurred views that follow the render and invented, texture-less holes")
    if latent_frames > card.latent_frames:
        notes.append(f"{latent_frames} latent frames, its training clips had {card.latent_frames}: later blocks "
                     f"continue from its own output through the cache")
    if tuple(config.sampler.steps) != card.steps or float(config.sampler.shift) != card.shift:
        notes.append(f"sampler {tuple(config.sampler.steps)} shift {config.sampler.shift:g}; it was trained for "
                     f"{card.steps} shift {card.shift:g}")
    return notes


def default_world_manifest() -> str:
    from star_jax.assets import default_world_path

    return default_world_path("manifest.json")


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
        weights = config.checkpoint or f"random-init ({config.variant})"
        log(f"dry run: inputs usable ({entry.video}: {plan.probe.size_hw[0]}x{plan.probe.size_hw[1]}, "
            f"{plan.cameras.kind} {plan.cameras.path}, {plan.num_frames} frames; weights {weights}); output folder "
            f"{config.output_dir} writable")
        return {"dry_run": True, "video": entry.video, "camera": plan.cameras.kind, "frames": plan.num_frames,
                "weights": weights}
    from star_jax.inference.model import load_model_folder, model_text_encoder, random_star_model
    from star_jax.inference.session import NavigationSession

    clip, geometry = load_reference(entry, config, log)
    H, W = clip.frames.shape[1:3]
    freeze = None if config.camera.freeze_frame < 0 else int(config.camera.freeze_frame)
    if freeze is not None:
        source_frame_indices(1, len(clip.frames), freeze)  # a frame the clip has
    n_valid = plan.valid_frames
    truth = _load_ground_truth(config.ground_truth, config, n_valid) if config.get("ground_truth") else None

    rng = jax.random.PRNGKey(config.seed)
    card = plan.card
    if config.checkpoint:
        model = load_model_folder(config.checkpoint, config.variant, config.dtype, config.conditioning or None,
                                  config.text_embedding or None)
        log(f"weights: {model.weights}")
    else:
        model = random_star_model(config.variant, rng, config.dtype, config.text_embedding or None,
                                  conditioning=config.conditioning or "inspatio-release")
        log(f"no --checkpoint: {model.weights} weights, so the video shows the pipeline, not a trained model")
    if config.prompt:
        from star_jax.text import embed_prompt

        emb, src = embed_prompt(config.prompt, config.variant, text_encoder=config.text_encoder or None,
                                tokenizer=config.tokenizer or None, cache_dir=config.prompt_cache or None)
        model = dataclasses.replace(model, text=jnp.asarray(emb), text_source=src)
    elif not config.text_embedding and card is not None and entry.caption and model_text_encoder(card):
        from star_jax.text import embed_prompt  # the caption through the text encoder the model was trained with

        emb, src = embed_prompt(entry.caption, config.variant)
        model = dataclasses.replace(model, text=jnp.asarray(emb), text_source=f"the reference's caption: {src}")
    n_total = plan.num_frames
    notes = model_notes(card, config, (H, W), geometry.kind, plan.num_blocks * plan.dit.frames_per_block)
    if card is not None:
        log(f"model: {card.description}")
        for note in notes:
            log(f"note: {note}")

    ctl = config.controller
    if plan.cameras.kind == "moves":
        rig = moves_controller_config(MoveSpeeds(**config.moves_speed), clip.fps, ctl.clearance)
    else:
        rig = ControllerConfig(fps=clip.fps, max_speed=ctl.max_speed, max_accel=ctl.max_accel, clearance=ctl.clearance)
    fuse = plan.scene is not None and plan.scene["source_type"] == "multi-image"
    session = NavigationSession(
        model, clip.frames, geometry, rng=jax.random.fold_in(rng, 1), steps=tuple(config.sampler.steps),
        shift=config.sampler.shift, point_size=config.warp.point_size, freeze_frame=freeze, controller=rig,
        fuse=fuse, decoder=config.get("decoder", "wan"))
    if plan.cameras.kind in ("keys", "moves"):
        keys = (plan.cameras.value + [frozenset()] * n_total)[:n_total]
        cam_info, w2c = {"source": plan.cameras.path, "kind": plan.cameras.kind}, None
        if plan.cameras.kind == "moves":
            cam_info.update(moves=config.moves, speeds=dict(config.moves_speed), scene_scale=session.scene_scale)
    else:
        w2c, cam_info = build_target_cameras(config, geometry, n_total, entry.radius_ratio, plan.cameras)
        keys = None

    blocks, coverage, start = [], [], 0
    for i in _progress(range(plan.num_blocks), plan.num_blocks):
        n = session.frames_needed()
        sl = slice(start, start + n)
        block = session.step(target_w2c=w2c[sl]) if keys is None else session.step(keys=keys[sl])
        coverage.append(float(block.masks.mean()))
        _check_coverage(i, (start, start + n - 1), coverage[-1], plan, log)
        blocks.append(block)
        start += n

    # only the valid frames are written (1.5: a scene's valid_frames; the moves' own frames)
    frames = np.concatenate([b.frames for b in blocks])[:n_valid]
    renders = np.concatenate([b.renders for b in blocks])[:n_valid]
    masks = np.concatenate([b.masks for b in blocks])[:n_valid]
    reference = np.concatenate([b.reference for b in blocks])[:n_valid]
    lat = [b.latency for b in blocks]
    # blocks 0 and 1 include compilation (stream start, then the first continuing chunk)
    warm = blocks[2:] or blocks[-1:]
    steady = [b.latency for b in warm]
    steady_total = sum(x["total"] for x in steady)
    steady_frames = sum(len(b.frames) for b in warm)
    # the distinct source-video frames (or views) behind the output (a video plays back and forth)
    shown = np.concatenate([b.source_indices for b in blocks])[:n_valid]
    distinct_used = int(np.unique(clip.source_indices[shown]).size)
    target_w2c = np.concatenate([b.target_w2c for b in blocks])[:n_valid]
    target_K = np.concatenate([b.target_K for b in blocks])[:n_valid]
    evaluation = None
    if config.get("evaluate"):
        from star_jax.evaluate import evaluate, summary

        evaluation = evaluate(frames, w2c=target_w2c, K=target_K[0], truth=truth, masks=masks, renders=renders)
        log(summary(evaluation))
    quality = None if truth is None else {"video": os.path.abspath(config.ground_truth),
                                          **score(frames, truth, renders, masks, evaluation)}
    with io.staged_folder(config.output_dir, OUTPUTS + EVALUATION_OUTPUTS) as out:
        codec = io.write_mp4(os.path.join(out, "navigate.mp4"), frames, clip.fps)
        io.write_mp4(os.path.join(out, "renders.mp4"), renders, clip.fps)
        if truth is not None:
            gutter = np.full((*truth.shape[:2], 4, 3), 255, np.uint8)
            io.write_mp4(os.path.join(out, "comparison.mp4"), np.concatenate([truth, gutter, frames], axis=2), clip.fps)
        mask_rgb = np.repeat(io.to_uint8(masks)[..., None], 3, axis=-1)
        io.write_png(os.path.join(out, "contact_sheet.png"), contact_sheet([reference, renders, mask_rgb, frames]))
        io.write_npz(os.path.join(out, "cameras.npz"), w2c=target_w2c, K=target_K, masks=masks)
        if evaluation is not None:
            from star_jax.evaluate import write_outputs

            write_outputs(out, evaluation, frames, truth=truth, renders=renders, masks=masks,
                          title=f"navigate: {os.path.basename(entry.video)}")
        meta = {
            "video": entry.video, "caption": entry.caption, "frames": int(len(frames)), "size_hw": [H, W],
            "fps": clip.fps, "reference": dict(clip.provenance(), distinct_source_frames_used=distinct_used),
            "generated_frames": int(n_total), "valid_frames": int(n_valid),
            "scene": None if plan.scene is None else {
                "source_type": plan.scene["source_type"], "views": plan.scene["views"],
                "frames": plan.scene["frames"], "valid_frames": plan.scene["valid_frames"],
                "own_cameras": plan.scene["own_cameras"], "geometry": plan.scene.get("geometry", "geometry-encoder")},
            "views_per_block": [b.views for b in blocks] if fuse else None,
            "blocks": plan.num_blocks, "variant": config.variant, "dtype": config.dtype,
            "weights": model.weights, "text": model.text_source, "depth": geometry.kind,
            "model": None if card is None else {
                "folder": os.path.abspath(config.checkpoint), "what": card.training.get("what", ""),
                "description": card.description, "trained_resolution_hw": list(card.resolution_hw),
                "trained_latent_frames": card.latent_frames, "text_encoder": card.text_encoder, "notes": notes},
            "ground_truth": quality,
            "camera": cam_info, "conditioning": session.conditioning_metadata(),
            "decoder": session.decoder_metadata(), "reference_encoding": session.reference_metadata(),
            "sampler": {"steps": list(config.sampler.steps), "shift": config.sampler.shift},
            "valid_fraction_mean": float(masks.mean()), "render_coverage_per_block": coverage,
            "min_render_coverage": plan.min_coverage, "codec": codec, "jax_backend": jax.default_backend(),
            "latency_per_block_s": lat,
            "steady_state": {"frames_per_s": steady_frames / steady_total,
                             "share": {k: sum(x[k] for x in steady) / steady_total
                                       for k in ("warp", "encode", "dit", "decode")}},
            "evaluation": None if evaluation is None else {"aggregate": evaluation.aggregate,
                                                           "seconds": evaluation.seconds},
            "total_s": time.perf_counter() - t0,
        }
        io.write_json(os.path.join(out, "metadata.json"), meta)
    if quality is not None:
        q = quality["psnr_db"]
        fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
        log(f"PSNR against the ground truth ({config.ground_truth}): all {fmt(q['all'])} dB, inside the render "
            f"mask {fmt(q['rendered'])} dB, holes {fmt(q['holes'])} dB ({quality['hole_fraction']:.1%} of pixels); "
            f"the render alone inside its mask {fmt(quality['render_psnr_db']['rendered'])} dB")
    written = [n for n in OUTPUTS if truth is not None or n != "comparison.mp4"]
    written += list(EVALUATION_OUTPUTS) if evaluation is not None else []
    log(f"wrote {config.output_dir}/: {' '.join(written)} ({len(frames)} frames, "
        f"steady state {meta['steady_state']['frames_per_s']:.2f} frames/s, total {meta['total_s']:.1f}s)")
    return meta


def main(argv):
    del argv
    from absl import flags

    F = flags.FLAGS
    config = _CONFIG.value
    overrides = {"video": F.video, "trajectory": F.trajectory, "w2c_file": F.w2c, "keys_file": F.keys,
                 "checkpoint": F.checkpoint, "text_embedding": F.text, "prompt": F.prompt,
                 "text_encoder": F.text_encoder, "tokenizer": F.tokenizer, "output_dir": F.output_dir,
                 "ground_truth": F.ground_truth, "moves": F.moves, "decoder": F.decoder,
                 "geometry_checkpoint": F.geometry_checkpoint}
    if F.evaluate:
        overrides["evaluate"] = True
    if F.random_weights and F.checkpoint:
        raise InputError("--random_weights / --checkpoint: expected at most one source of weights, found both")
    with config.unlocked():
        if F.video or F.trajectory or F.w2c or F.keys or F.moves:
            config.ground_truth = ""  # the default world's ground truth belongs to its own clip and path
        if F.random_weights:
            config.checkpoint = ""
        for k, v in overrides.items():
            if v:
                config[k] = v
        if is_scene_folder(config.video) and not (F.trajectory or F.w2c or F.keys or F.moves):
            config.trajectory = ""  # a scene folder brings its own target cameras
            config.w2c_file = os.path.join(config.video, "input", "target_tcw.txt")
    run(config, dry_run=F.dry_run)


def join_moves_argv(argv: list[str]) -> list[str]:
    """`--moves forward:36 turn-right+forward:36` (the moves as separate words, as the issue writes
    them) -> `--moves=forward:36 turn-right+forward:36`, one absl flag value; other words are kept."""
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "--moves":
            j = i + 1
            while j < len(argv) and not argv[j].startswith("-"):
                j += 1
            out.append("--moves=" + " ".join(argv[i + 1:j]))
            i = j
        else:
            out.append(argv[i])
            i += 1
    return out


if __name__ == "__main__":
    from absl import flags
    from ml_collections import config_flags

    from star_jax import cli

    _CONFIG = config_flags.DEFINE_config_file("config", "experiments/navigate.py:variant=tiny", "experiment config",
                                              lock_config=True)
    flags.DEFINE_string("video", "", "reference video or InSpatio-World 1.5 scene folder (replaces the "
                        "config's manifest; a scene folder brings its own target cameras)")
    flags.DEFINE_string("trajectory", "", "InSpatio keyframe trajectory file (pitch / yaw / displacement)")
    flags.DEFINE_string("w2c", "", "per-frame OpenCV world-to-camera matrices (.npy / .json / .txt)")
    flags.DEFINE_string("keys", "", "key script: lines '<frames> forward+yaw_left'")
    flags.DEFINE_string("moves", "", "scripted moves, e.g. --moves forward:36 turn-right+forward:36 look-up:12 "
                        "(name[*scale][+name...]:frames; speeds in config.moves_speed); sets the frame count")
    flags.DEFINE_string("checkpoint", "", "model folder: dit/ + vae/ (+ star_model.json); default for tiny: the "
                        "embedded trained model")
    flags.DEFINE_bool("random_weights", False, "randomly initialised networks instead of the default model")
    flags.DEFINE_string("geometry_checkpoint", "", "Depth-Anything-3 weights (.safetensors): depth and cameras of a "
                        "video without a depth folder, estimated in-process (else the planar prior)")
    flags.DEFINE_string("ground_truth", "", "true target video along the camera path: scored (PSNR) and shown "
                        "side by side in comparison.mp4")
    flags.DEFINE_bool("evaluate", False, "measure the generated video at the end (star_jax.evaluate): metrics.json "
                      "and report.png beside it")
    flags.DEFINE_string("text", "", "precomputed umT5 text embedding (.npy)")
    flags.DEFINE_string("prompt", "", "caption, embedded by umT5 (--text_encoder) or, for tiny, a hashed-word table")
    flags.DEFINE_string("text_encoder", "", "umT5 weights: Wan2.1 folder, models_t5_umt5-xxl-enc-bf16.pth, or a "
                        "transformers / diffusers folder")
    flags.DEFINE_string("tokenizer", "", "tokenizer.json or spiece.model (default: found beside the weights)")
    flags.DEFINE_string("output_dir", "", "where outputs go")
    flags.DEFINE_string("decoder", "", "'wan' (the Wan VAE decoder) or 'tiny' (the model folder's taehv/ TAEHV); "
                        "default: config.decoder")
    cli.define_flags()
    sys.path.insert(0, os.getcwd())
    cli.main(main, join_moves_argv(sys.argv), parse=cli.absl_parser())
