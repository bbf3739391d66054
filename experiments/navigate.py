"""Navigate a reference video: the STAR rollout driven by a camera path, block by block.

Launch (repository root):
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny,blocks=2   # CI's quick run
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny,random_weights   # untrained
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny,blocks=8 \
        --video ../shared/data/reference_videos/coffee_martini.mp4 \
        --trajectory ../shared/data/trajectories/x_y_circle_cycle.txt   # a real clip (planar depth)
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny --keys keys.txt
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny \
        --moves forward:36 turn-right+forward:36 look-up:12      # scripted moves (config.moves_speed)
    python -m star_jax.prepare --source photo.png --output scene/ && \
        python -m star_jax.navigate --config experiments/navigate.py:variant=tiny --video scene/  # a 1.5 scene
    python -m star_jax.navigate --config experiments/navigate.py:variant=1.3B,height=480,width=832 \
        --checkpoint ckpt/   # ckpt/dit and ckpt/vae from `python -m star_jax.checkpoint.convert`
    python -m star_jax.navigate --config experiments/navigate.py:variant=tiny,random_weights --decoder tiny  # TAEHV

Needs: nothing beside the package. The default input is the embedded default world
(`star_jax/assets/default_world/`: a held-out procedural world, 45 frames at 96x160 with true
depth and cameras, its default trajectory, and the ground-truth target video along it for 4
blocks), and the default weights (variant tiny) the embedded trained tiny model
(`star_jax/assets/tiny_model/`); the job then writes comparison.mp4 (ground truth | generated)
and the PSNR against the ground truth. `--checkpoint` names another model folder;
`random_weights` (or another variant without --checkpoint) runs randomly initialised networks,
and the outputs say so. `ground_truth` is the default world's target video; the job clears it
when --video, --trajectory, --w2c or --keys is given (set --ground_truth to score those).
Runtime: the tiny default (4 blocks = 45 frames at 96x160) took 61 s of CPU time (3 min wall on a
2-core machine shared with training runs), most of it XLA compilation of the first two blocks, so
blocks=2 costs nearly as much; a later block took 5.4 s (VAE encode 2.7, decode 1.6, warp 1.1, DiT 0.03).
"""

from __future__ import annotations

import ml_collections

from experiments.common import parse_arg
from star_jax.assets import TINY_MODEL, default_world_path


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    a = parse_arg(arg, variant="tiny", blocks=4, height=96, width=160, fps=15.0, dtype="", runlocal=False,
                  random_weights=False)
    c = ml_collections.ConfigDict()
    c.variant = a.variant
    c.dtype = a.dtype or ("float32" if a.variant == "tiny" else "bfloat16")
    c.num_blocks = 2 if a.runlocal else a.blocks  # output frames: 9 + 12 (blocks - 1)
    c.manifest = default_world_path("manifest.json")  # InSpatio manifest: video + depth + cameras
    c.video = ""  # a bare video path; replaces `manifest` when set
    c.caption = ""
    c.geometry_checkpoint = ""  # Depth-Anything-3 weights: depth and cameras for a video without a depth folder
    c.trajectory = default_world_path("trajectory.txt")  # InSpatio keyframes (pitch, yaw, displacement)
    c.w2c_file = ""  # per-frame OpenCV w2c matrices; replaces `trajectory`
    c.keys_file = ""  # a key script ("<frames> forward+yaw_left" lines); replaces both
    c.moves = ""  # scripted moves "forward:36 turn-right+forward:36 look-up:12"; replaces all three
    # speeds of the moves per frame: scene scales (median depth of the first reference's centre),
    # degrees; the pitch bound; frames to reach full speed (the smoothing of the interactive controller)
    c.moves_speed = ml_collections.ConfigDict(dict(speed=0.02, turn_deg=1.5, max_pitch_deg=60.0, ramp_frames=4.0))
    c.scene_blocks = 0  # a scene folder with its own cameras: blocks to run (0: all its target poses, as 1.5)
    # a model folder (dit/, vae/, star_model.json); tiny: the embedded trained model; empty: random weights
    c.checkpoint = TINY_MODEL if a.variant == "tiny" and not a.random_weights else ""
    c.ground_truth = default_world_path("target.mp4")  # the true target video along the path; empty: none
    c.text_embedding = ""  # .npy (L <= text_len, text_dim) umT5 embedding of the caption; empty: zeros
    c.prompt = ""  # caption -> text by star_jax.text.embed_prompt (tiny: hashed-word table; else umT5)
    c.text_encoder = ""  # umT5: Wan2.1 folder, models_t5_umt5-xxl-enc-bf16.pth, or a transformers/diffusers one
    c.tokenizer = ""  # tokenizer.json / spiece.model or its folder; empty: found beside the weights
    c.prompt_cache = "~/.cache/star_jax/prompts"  # one .npz per (encoder, prompt); empty: no cache
    c.evaluate = False  # measure the video at the end (star_jax.evaluate): metrics.json + report.png
    c.min_render_coverage = 0.02  # a block whose renders cover less of the frame stops the job; 0 disables
    c.decoder = "wan"  # or "tiny": the model folder's taehv/ (TAEHV, convert_taehv), much faster; random: random
    c.output_dir = "outputs/navigate"
    c.seed = 0
    c.video_spec = dict(height=a.height, width=a.width, fps=a.fps, max_frames=0)
    c.sampler = ml_collections.ConfigDict(dict(steps=(1000, 750, 500, 250), shift=5.0))
    c.camera = ml_collections.ConfigDict(dict(
        relative_to_source=False, rotation_only=False, freeze_frame=-1, interpolation="linear",
        radius_ratio=1.0, planar_depth=1.0, planar_fov_x_deg=60.0))
    c.controller = ml_collections.ConfigDict(dict(max_speed=0.5, max_accel=1.0, clearance=0.2))
    c.warp = ml_collections.ConfigDict(dict(point_size=2))  # the recipe follows the model's conditioning convention
    # "inspatio-release" / "inspatio-1.5" / "star-jax-v0" / "star-jax-v1"; empty: what the checkpoint records
    # (else the release's)
    c.conditioning = ""
    c.lock()
    return c
