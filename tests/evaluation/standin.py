"""Stand-in datasets of the training-data contract (a pixel dataset and its latent dataset,
written by `data_pipelines.tfds_builders` and read by `star_jax.train.records`) and a stand-in
tiny VAE folder, for tests of the teacher's records source and of the quality benchmark.

    latents, pixels = write_standin(tmp_path, {"train": 8, "test": 2}, vae_dir=standin_vae(tmp_path / "vae"))
    clips = standin_clips(2, seed=1)      # what split "test" holds (seed = split index)

Latent shapes are the smoke config's (experiments/train_smoke.py): 3 latent frames of 4x4 cells
(9 frames of 32x32 pixels), text (4, 16).
"""

from __future__ import annotations

import os

import jax
import numpy as np

from star_jax.train.synthetic import SyntheticStarSource

LATENT_HW = (4, 4)
FRAMES = 9
TEXT = (4, 16)


def standin_clips(num: int, seed: int = 0) -> list[dict]:
    """`num` clips with every field of both datasets: latents from `SyntheticStarSource` (a
    learnable pan), pixels: a random target video, its render = the target where the latent
    cell is rendered, black in the holes."""
    src = SyntheticStarSource(num, 3, LATENT_HW, *TEXT, seed=seed, max_shift=1)
    rng = np.random.default_rng(seed)
    h, w = LATENT_HW
    out = []
    for i in range(num):
        ex = src[i]
        cell_valid = ex["mask"][..., 0] > 0  # (3, h, w)
        frame_valid = np.concatenate([cell_valid[:1], np.repeat(cell_valid[1:], 4, axis=0)])  # (9, h, w)
        valid = np.repeat(np.repeat(frame_valid, 8, axis=1), 8, axis=2).astype(np.uint8)
        target_rgb = rng.integers(0, 256, size=(FRAMES, 8 * h, 8 * w, 3), dtype=np.uint8)
        out.append({**ex, "render_rgb": target_rgb * valid[..., None], "render_valid": valid,
                    "target_rgb": target_rgb, "example_id": np.int64(1000 * seed + i)})
    return out


def write_standin(folder, splits: dict[str, int], vae_dir: str = "", conditioning: str = "inspatio-release"):
    """Writes <folder>/star_toy (pixels) and <folder>/star_latents_toy (latents, metadata naming
    the pixel folder, the VAE's fingerprint when `vae_dir` is given, and `conditioning`);
    split k of `splits` holds standin_clips(num, seed=k). Returns (latents, pixels) folders."""
    from data_pipelines.tfds_builders import latent_features, pixel_features, write_dataset

    clips = {s: standin_clips(n, seed=k) for k, (s, n) in enumerate(splits.items())}
    pix_keys = ("target_rgb", "example_id")
    lat_keys = ("target", "ref", "render", "mask", "text", "render_rgb", "render_valid", "example_id")
    h, w = 8 * LATENT_HW[0], 8 * LATENT_HW[1]
    zeros = {"source_rgb": np.zeros((FRAMES, h, w, 3), np.uint8), "source_depth": np.zeros((FRAMES, h, w), np.float32),
             "source_w2c": np.tile(np.eye(4, dtype=np.float32), (FRAMES, 1, 1)), "K": np.eye(3, dtype=np.float32),
             "target_depth": np.zeros((FRAMES, h, w), np.float32),
             "target_w2c": np.tile(np.eye(4, dtype=np.float32), (FRAMES, 1, 1)), "caption": "a stand-in"}
    gen = lambda s, keys, extra: lambda: ((i, {**extra, **{k: c[k] for k in keys}})  # noqa: E731
                                          for i, c in enumerate(clips[s]))
    pixels = write_dataset(os.path.join(folder, "star_toy"), "star_toy", pixel_features(FRAMES, h, w),
                           {s: gen(s, pix_keys, zeros) for s in clips}, {"generator": "tests.evaluation.standin"})
    meta = {"pixels": {"path": pixels}, "conditioning": {"name": conditioning}}
    if vae_dir:
        from data_pipelines.precompute import load_vae

        meta["vae"] = {"path": vae_dir, "fingerprint": load_vae(vae_dir)[2]}
    latents = write_dataset(os.path.join(folder, "star_latents_toy"), "star_latents_toy",
                            latent_features((3, *LATENT_HW), 4, TEXT, FRAMES, h, w),
                            {s: gen(s, lat_keys, {}) for s in clips}, meta)
    return latents, pixels


def standin_vae(folder, seed: int = 0) -> str:
    """A random tiny VAE folder written by `star_jax.checkpoint.export.export_vae` (vae.json +
    orbax params), what precompute and the quality benchmark read."""
    from star_jax.checkpoint.export import export_vae
    from star_jax.models.vae import WanVAE, init_vae_params
    from star_jax.models.variants import vae_variant

    cfg = vae_variant("tiny")
    # random weights of the init's shapes (jit-compiling the VAE's init takes minutes on a busy CPU)
    shapes = jax.eval_shape(lambda k: init_vae_params(WanVAE(cfg), k, 16, 16), jax.random.PRNGKey(0))
    rng = np.random.default_rng(seed)
    params = jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    return export_vae(params, os.fspath(folder), cfg)
