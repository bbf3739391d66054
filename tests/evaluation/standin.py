"""A stand-in latent dataset (the records contract of `star_jax.train.records`, in memory) and a
stand-in tiny VAE export, for tests of the teacher's records source and the quality benchmark.

    clips = standin_latents(4)                         # list of dicts, every contract field
    use_standin_records(monkeypatch, {"/d": {"train": clips}})   # records.open_split reads them
    vae_dir = standin_vae(tmp_path / "vae")            # vae.json + params/ (random init)
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from star_jax.io.files import write_json
from star_jax.train.synthetic import SyntheticStarSource

LATENT_HW = (4, 4)  # 32 x 32 pixels
FRAMES = 9  # 3 latent frames
TEXT = (4, 16)  # the smoke config's text_len, text_dim


def standin_latents(num: int, seed: int = 0) -> list[dict]:
    """`num` examples with the latent dataset's fields: latents from `SyntheticStarSource` (a
    learnable pan), pixels: a random target video, its render = the target where the latent
    cell is rendered, black in the holes."""
    src = SyntheticStarSource(num, 3, LATENT_HW, *TEXT, seed=seed, max_shift=1)
    rng = np.random.default_rng(seed)
    out = []
    for i in range(num):
        ex = src[i]
        h, w = LATENT_HW
        cell_valid = ex["mask"][..., 0] > 0  # (3, h, w)
        frame_valid = np.concatenate([cell_valid[:1], np.repeat(cell_valid[1:], 4, axis=0)])  # (9, h, w)
        valid = np.repeat(np.repeat(frame_valid, 8, axis=1), 8, axis=2).astype(np.uint8)
        target_rgb = rng.integers(0, 256, size=(FRAMES, 8 * h, 8 * w, 3), dtype=np.uint8)
        out.append({**ex, "render_rgb": target_rgb * valid[..., None], "render_valid": valid,
                    "target_rgb": target_rgb, "example_id": np.int64(1000 + i)})
    return out


def use_standin_records(monkeypatch, datasets: dict) -> None:
    """`star_jax.train.records.open_split(path, split)` returns datasets[path][split]."""
    from star_jax.errors import InputError
    from star_jax.train import records

    def open_split(data_dir, split):
        if data_dir not in datasets:
            raise InputError(f"{data_dir}: dataset folder not found")
        return datasets[data_dir][split]

    monkeypatch.setattr(records, "open_split", open_split)


def standin_vae(folder) -> str:
    """A random tiny VAE written as an export: vae.json (its VAEConfig) + params/ (orbax)."""
    from star_jax.checkpoint.storage import save_params
    from star_jax.models.vae import WanVAE, init_vae_params
    from star_jax.models.variants import vae_variant

    cfg = vae_variant("tiny")
    # random weights of the init's shapes (jit-compiling the VAE's init takes minutes on a busy CPU)
    shapes = jax.eval_shape(lambda k: init_vae_params(WanVAE(cfg), k, 16, 16), jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)
    folder = os.fspath(folder)
    os.makedirs(folder, exist_ok=True)
    save_params(params, os.path.join(folder, "params"))
    write_json(os.path.join(folder, "vae.json"), dataclasses.asdict(cfg))
    return folder
