"""Main job: navigate a reference video with the STAR rollout, one block at a time.

    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny --video clip.mp4 --trajectory t.txt

Writes to `config.output_dir`:
  navigate.mp4       the generated video
  renders.mp4        the reference warped into the target cameras (the explicit spatial constraint)
  contact_sheet.png  rows of reference | render | mask | output at a few frames
  metadata.json      inputs, weights (random or checkpoint), text source, depth source, per-block
                     latency (warp / encode / DiT / decode) and frames per second
"""

from __future__ import annotations

import os
import sys
import time

import jax
import numpy as np

from star_jax.io import files as io
from star_jax.io.manifest import ManifestEntry, load_manifest
from star_jax.geometry.controller import ControllerConfig, parse_key_script_file
from star_jax.inference.model import load_star_model, random_star_model
from star_jax.inference.session import NavigationSession
from star_jax.render import build_target_cameras, contact_sheet, load_reference


def total_frames(num_blocks: int, frames_per_block: int = 3) -> int:
    """Output frames of `num_blocks` blocks: 1 + 4 (3 blocks - 1) = 9 + 12 (blocks - 1)."""
    return 1 + 4 * (frames_per_block * num_blocks - 1)


def _progress(iterable, total):
    try:
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc="blocks", unit="block", file=sys.stderr)
    except ImportError:  # pragma: no cover
        return iterable


def run(config, log=print) -> dict:
    t0 = time.perf_counter()
    if config.num_blocks < 1:
        raise ValueError(f"num_blocks must be >= 1, got {config.num_blocks}")
    if not (config.manifest or config.video):
        raise ValueError("config: set either `manifest` or `video`")
    entry = (ManifestEntry(video=config.video, caption=config.caption) if config.video
             else load_manifest(config.manifest)[0])
    clip, geometry = load_reference(entry, config, log)
    H, W = clip.frames.shape[1:3]

    rng = jax.random.PRNGKey(config.seed)
    if config.checkpoint:
        model = load_star_model(config.variant, os.path.join(config.checkpoint, "dit"),
                                os.path.join(config.checkpoint, "vae"), config.text_embedding or None, config.dtype)
    else:
        model = random_star_model(config.variant, rng, config.dtype, config.text_embedding or None)
        log(f"no --checkpoint: {model.weights} weights, so the video shows the pipeline, not a trained model")
    fpb = model.dit.cfg.frames_per_block
    n_total = total_frames(config.num_blocks, fpb)

    freeze = None if config.camera.freeze_frame < 0 else int(config.camera.freeze_frame)
    ctl = config.controller
    session = NavigationSession(
        model, clip.frames, geometry, rng=jax.random.fold_in(rng, 1), steps=tuple(config.sampler.steps),
        shift=config.sampler.shift, point_size=config.warp.point_size, freeze_frame=freeze,
        controller=ControllerConfig(fps=clip.fps, max_speed=ctl.max_speed, max_accel=ctl.max_accel,
                                    clearance=ctl.clearance))
    if config.keys_file:
        keys = parse_key_script_file(config.keys_file)
        keys = (keys + [frozenset()] * n_total)[:n_total]
        cam_info, w2c = {"source": config.keys_file, "kind": "keys"}, None
    else:
        w2c, cam_info = build_target_cameras(config, geometry, n_total, entry.radius_ratio)
        keys = None

    blocks, start = [], 0
    for _ in _progress(range(config.num_blocks), config.num_blocks):
        n = session.frames_needed()
        sl = slice(start, start + n)
        blocks.append(session.step(target_w2c=w2c[sl]) if keys is None else session.step(keys=keys[sl]))
        start += n

    frames = np.concatenate([b.frames for b in blocks])
    renders = np.concatenate([b.renders for b in blocks])
    masks = np.concatenate([b.masks for b in blocks])
    reference = np.concatenate([b.reference for b in blocks])
    out = config.output_dir
    codec = io.write_mp4(os.path.join(out, "navigate.mp4"), frames, clip.fps)
    io.write_mp4(os.path.join(out, "renders.mp4"), renders, clip.fps)
    mask_rgb = np.repeat(io.to_uint8(masks)[..., None], 3, axis=-1)
    io.write_png(os.path.join(out, "contact_sheet.png"), contact_sheet([reference, renders, mask_rgb, frames]))

    lat = [b.latency for b in blocks]
    # blocks 0 and 1 include compilation (stream start, then the first continuing chunk)
    warm = blocks[2:] or blocks[-1:]
    steady = [b.latency for b in warm]
    steady_total = sum(x["total"] for x in steady)
    steady_frames = sum(len(b.frames) for b in warm)
    meta = {
        "video": entry.video, "caption": entry.caption, "frames": int(len(frames)), "size_hw": [H, W],
        "fps": clip.fps, "blocks": config.num_blocks, "variant": config.variant, "dtype": config.dtype,
        "weights": model.weights, "text": model.text_source, "depth": geometry.kind, "camera": cam_info,
        "sampler": {"steps": list(config.sampler.steps), "shift": config.sampler.shift},
        "valid_fraction_mean": float(masks.mean()), "codec": codec, "jax_backend": jax.default_backend(),
        "latency_per_block_s": lat,
        "steady_state": {"frames_per_s": steady_frames / steady_total,
                         "share": {k: sum(x[k] for x in steady) / steady_total
                                   for k in ("warp", "encode", "dit", "decode")}},
        "total_s": time.perf_counter() - t0,
    }
    io.write_json(os.path.join(out, "metadata.json"), meta)
    log(f"wrote {out}/: navigate.mp4 renders.mp4 contact_sheet.png metadata.json ({len(frames)} frames, "
        f"steady state {meta['steady_state']['frames_per_s']:.2f} frames/s, total {meta['total_s']:.1f}s)")
    return meta


def main(argv):
    del argv
    config = _CONFIG.value
    overrides = {"video": FLAGS.video, "trajectory": FLAGS.trajectory, "w2c_file": FLAGS.w2c,
                 "keys_file": FLAGS.keys, "checkpoint": FLAGS.checkpoint, "text_embedding": FLAGS.text,
                 "output_dir": FLAGS.output_dir}
    with config.unlocked():
        for k, v in overrides.items():
            if v:
                config[k] = v
    run(config)


if __name__ == "__main__":
    from absl import app, flags
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file("config", "experiments/navigate.py:variant=tiny", "experiment config",
                                              lock_config=True)
    flags.DEFINE_string("video", "", "reference video (replaces the config's manifest)")
    flags.DEFINE_string("trajectory", "", "InSpatio keyframe trajectory file (pitch / yaw / displacement)")
    flags.DEFINE_string("w2c", "", "per-frame OpenCV world-to-camera matrices (.npy / .json / .txt)")
    flags.DEFINE_string("keys", "", "key script: lines '<frames> forward+yaw_left'")
    flags.DEFINE_string("checkpoint", "", "folder with dit/ and vae/ converted orbax checkpoints")
    flags.DEFINE_string("text", "", "precomputed umT5 text embedding (.npy)")
    flags.DEFINE_string("output_dir", "", "where outputs go")
    FLAGS = flags.FLAGS
    sys.path.insert(0, os.getcwd())
    app.run(main)
