"""Pixel clips -> the latent dataset the teacher trains on (`star_latents_<name>`).

    python -m data_pipelines.precompute --pixels /work/data/worlds_tiny --vae /work/runs/vae/export \\
        --out /work/data/latents_tiny [--batch 8]
    # 320 clips of 96x160x9 with the tiny VAE: 616 s on a shared 2-core machine (~1 min of it
    # compiling), 101 MB; 120 clips of 96x160x21 (6 latent frames): 636 s / 247 s (CPU shared with
    # other jobs / less so), 83 MB textured, 36 MB flat

For each clip of every split, exactly what inference computes from the same inputs
(`star_jax.inference.session`, one block of the clip's length):
    render      the source warped into the target cameras by `warp_frames` with the recipe of the
                conditioning convention (default "inspatio-release": `warp_recipe("inspatio-release", 2)`),
                source frames as float32 in [0, 1]
    ref, target, render   VAE posterior means of source / target / render (frames x 2 - 1),
                normalised by the VAE's own latents_mean / latents_std (`normalize_latents`)
    mask        the warp's validity mask packed by `mask_to_latent` under that convention
    text        the caption through the tiny HashedWordEncoder, zero rows padded to text_len
    render_rgb / render_valid   the pixel render (uint8, rounded) and its mask, for evaluation
Metadata: the VAE fingerprint and config, the conditioning (convention, mask encoding, warp
recipe), the text encoder id, the pixel dataset's folder and metadata.

`--vae` is a VAE export folder (`python -m star_jax.checkpoint.export vae`): orbax params with a
`vae.json` (every VAEConfig field, the latent statistics measured after training among them).
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import logging
import os
import sys
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.tfds_builders import add_output_arguments, check_output, latent_features, quiet_tfds, write_dataset
from star_jax import cli
from star_jax.checkpoint.storage import CheckpointError
from star_jax.errors import InputError

log = logging.getLogger("data_pipelines.precompute")


def vae_fingerprint(cfg, params) -> str:
    """16 hex digits of sha256 over the config's fields and every parameter (path, shape, dtype, bytes)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for path, leaf in sorted(jax.tree_util.tree_flatten_with_path(params)[0], key=lambda kv: jax.tree_util.keystr(kv[0])):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(path)}:{a.shape}:{a.dtype}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def encoder_fingerprint(cfg, params) -> str:
    """`vae_fingerprint` of the config (latent statistics included) and the encoder-side params only
    (`train.vae.ENCODER_PARAMS`): what a latent depends on. A decoder fine-tuned with
    train_encoder=false keeps it, so latents encoded before still fit that VAE."""
    from star_jax.train.vae import ENCODER_PARAMS

    return vae_fingerprint(cfg, {k: v for k, v in params.items() if k in ENCODER_PARAMS})


def comparable_fingerprints(a: dict, b: dict) -> tuple[str, str | None, str | None]:
    """(kind, a's, b's) for two "vae" metadata entries: their encoder fingerprints where both record
    one (latents depend on nothing else), else their whole-VAE fingerprints; None where one is absent."""
    if a.get("encoder_fingerprint") and b.get("encoder_fingerprint"):
        return "encoder", a["encoder_fingerprint"], b["encoder_fingerprint"]
    return "VAE", a.get("fingerprint"), b.get("fingerprint")


def check_latents_vae(meta_vae: dict, vae_dir: str, cfg, params, where: str, fingerprint: str | None = None) -> None:
    """InputError unless the VAE (cfg, params) from `vae_dir` can decode latents whose metadata's "vae"
    entry is `meta_vae` (`comparable_fingerprints`: a decoder fine-tuned on the frozen encoder fits a
    dataset that records the encoder's fingerprint). `fingerprint`: the VAE's, when already computed."""
    mine = {"fingerprint": fingerprint or vae_fingerprint(cfg, params)}
    if meta_vae.get("encoder_fingerprint"):
        mine["encoder_fingerprint"] = encoder_fingerprint(cfg, params)
    kind, made_by, have = comparable_fingerprints(meta_vae, mine)
    if made_by is not None and made_by != have:
        raise InputError(f"{vae_dir}: {kind} fingerprint {have}, but {where} was encoded by {kind} {made_by} "
                         f"({meta_vae.get('path')}): decoding would not match its latents")


def load_vae(folder: str):
    """A VAE export folder (`star_jax.checkpoint.export.export_vae`: orbax params + vae.json) ->
    (WanVAE, params, fingerprint). CheckpointError names what is missing or malformed."""
    from star_jax.checkpoint.export import VAE_JSON, read_vae_json
    from star_jax.checkpoint.storage import restore_params
    from star_jax.models.vae import WanVAE

    folder = os.path.abspath(folder)
    if not os.path.isfile(os.path.join(folder, VAE_JSON)):
        raise CheckpointError(f"{folder}: expected a trained VAE folder (python -m star_jax.checkpoint.export vae) "
                              f"holding {VAE_JSON} and orbax params, found no {VAE_JSON}")
    cfg = read_vae_json(os.path.join(folder, VAE_JSON))
    params = restore_params(folder, what="vae")
    return WanVAE(cfg), params, vae_fingerprint(cfg, params)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def encode_clips(vae, recipe, convention, params, source_rgb, source_depth, source_w2c, target_rgb, target_w2c, K):
    """A batch of pixel clips (B, T, H, W, ...) -> dict of target, ref, render (B, n, h, w, 16)
    normalised latents, mask (B, n, h, w, 4), render_rgb (B, T, H, W, 3) float32 in [0, 1] and
    render_valid (B, T, H, W) bool. `recipe` a WarpRecipe, `convention` a Conditioning (static)."""
    from star_jax.geometry.warp import warp_frames
    from star_jax.inference.conditions import mask_to_latent
    from star_jax.models.vae import encode, normalize_latents

    B, T, H, W, _ = source_rgb.shape
    src = source_rgb.astype(jnp.float32) / 255.0
    warp = jax.vmap(lambda r, d, ws, wt, k: warp_frames(r, d, k, ws, k, wt, out_hw=(H, W), recipe=recipe))
    warped = warp(src, source_depth, source_w2c, target_w2c, K)
    videos = jnp.concatenate([target_rgb.astype(jnp.float32) / 127.5 - 1.0, src * 2.0 - 1.0,
                              warped.rgb * 2.0 - 1.0])  # (3B, T, H, W, 3)
    z = normalize_latents(encode(vae, params, videos).mean, vae.cfg).astype(jnp.float32)
    cfg = vae.cfg
    mask = mask_to_latent(warped.mask, cfg.spatial_factor, cfg.temporal_factor, convention=convention)
    return {"target": z[:B], "ref": z[B:2 * B], "render": z[2 * B:], "mask": mask.astype(jnp.float32),
            "render_rgb": warped.rgb, "render_valid": warped.mask}


_PIXEL_FIELDS = ("source_rgb", "source_depth", "source_w2c", "target_rgb", "target_w2c", "K")


def latent_examples(source, vae, params, conditioning, recipe, text_encoder, text_len: int, batch: int,
                    bar=None) -> Iterator[tuple[int, dict]]:
    """(key, latent example) for every record of a pixel source, in order, `batch` clips per call
    (the last batch padded by repetition: one compile)."""
    from star_jax.io.files import to_uint8

    n = len(source)
    for start in range(0, n, batch):
        idx = [min(i, n - 1) for i in range(start, start + batch)]
        records = [source[i] for i in idx]
        arrays = {k: np.stack([r[k] for r in records]) for k in _PIXEL_FIELDS}
        out = {k: np.asarray(v) for k, v in encode_clips(vae, recipe, conditioning, params, **arrays).items()}
        for j in range(min(batch, n - start)):
            r = records[j]
            emb = np.asarray(text_encoder(r["caption"]), np.float32)[:text_len]
            text = np.zeros((text_len, emb.shape[1]), np.float32)
            text[:len(emb)] = emb
            ex = {k: out[k][j] for k in ("target", "ref", "render", "mask")}
            ex.update(text=text, render_rgb=to_uint8(out["render_rgb"][j]),
                      render_valid=out["render_valid"][j].astype(np.uint8), example_id=np.int64(r["example_id"]))
            yield int(r["example_id"]), ex
        if bar is not None:
            bar.update(min(batch, n - start))


def build(pixels: str, vae_dir: str, out: str, batch: int = 8, name: str = "", conditioning: str = "inspatio-release",
          point_size: int = 2, text_variant: str = "tiny", overwrite: bool = False, progress: bool = True,
          command: str = "") -> dict:
    """Writes the latent dataset of the pixel dataset `pixels` at `out`; returns its metadata."""
    from tqdm import tqdm

    from star_jax.inference.conditions import get_conditioning
    from star_jax.models.variants import dit_variant
    from star_jax.text import prompt_encoder
    from star_jax.train.records import dataset_info, open_split

    if batch < 1:
        raise InputError(f"--batch: expected >= 1, got {batch}")
    info = dataset_info(pixels)
    missing = [k for k in _PIXEL_FIELDS + ("caption", "example_id") if k not in info.features]
    if missing:
        raise InputError(f"{info.folder}: not a pixel-clip dataset: missing field(s) {missing}")
    name = name or "star_latents_" + info.name.removeprefix("star_")
    check_output(out, overwrite)
    cond = get_conditioning(conditioning)
    recipe = cond.warp_recipe(point_size)
    vae, params, fingerprint = load_vae(vae_dir)
    T, H, W, _ = info.features["source_rgb"][0]
    f, tf = vae.cfg.spatial_factor, vae.cfg.temporal_factor
    if H % f or W % f or (T - 1) % tf:
        raise InputError(f"{info.folder}: clips of {T}x{H}x{W} do not fit the VAE (1 + {tf}k frames, sides multiples "
                         f"of {f})")
    n_lat = 1 + (T - 1) // tf
    text_cfg = dit_variant(text_variant)
    encoder = prompt_encoder(text_variant)
    features = latent_features((n_lat, H // f, W // f), 4, (text_cfg.text_len, text_cfg.text_dim), T, H, W,
                               vae.cfg.z_dim)
    metadata = {"generator": "data_pipelines.precompute", "command": command,
                "vae": {"path": os.path.abspath(vae_dir), "fingerprint": fingerprint,
                        "encoder_fingerprint": encoder_fingerprint(vae.cfg, params),
                        "config": dataclasses.asdict(vae.cfg)},
                "conditioning": {**cond.metadata(point_size), "name": cond.name},
                "text_encoder": encoder.id, "latents": "VAE posterior mean, (z - latents_mean) / latents_std",
                "pixels": {"path": info.folder, "name": info.name, "splits": dict(info.splits),
                           "metadata": dict(info.metadata)}}
    total = sum(info.splits.values())
    bar = tqdm(total=total, desc="clips", unit="clip", file=sys.stderr, disable=not progress)
    start = time.time()

    def split_examples(split):
        source = open_split(info.folder, split)
        return lambda: latent_examples(source, vae, params, cond, recipe, encoder, text_cfg.text_len, batch, bar)

    try:
        write_dataset(out, name, features, {s: split_examples(s) for s in info.splits}, metadata,
                      description=f"latents of {info.name} ({info.folder}) by VAE {fingerprint}", overwrite=overwrite)
    finally:
        bar.close()
    metadata["seconds"] = time.time() - start
    return metadata


def job(argv) -> None:
    parser = cli.ArgumentParser(prog="python -m data_pipelines.precompute", description=__doc__.split("\n\n")[0])
    parser.add_argument("--pixels", required=True, help="pixel-clip dataset folder (synth_worlds / rgbd_pairs)")
    parser.add_argument("--vae", required=True, help="trained VAE folder (vae.json + orbax params)")
    parser.add_argument("--out", required=True, help="latent dataset folder to write (new or empty)")
    parser.add_argument("--batch", type=int, default=8, help="clips per VAE call")
    parser.add_argument("--name", default="", help="dataset name (default star_latents_<pixel name>)")
    parser.add_argument("--conditioning", default="inspatio-release", help="mask / warp convention")
    parser.add_argument("--point_size", type=int, default=2, help="warp footprint at output resolution")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    quiet_tfds()
    meta = build(args.pixels, args.vae, args.out, args.batch, args.name, args.conditioning, args.point_size,
                 overwrite=args.overwrite, progress=not args.no_progress,
                 command="python -m data_pipelines.precompute " + " ".join(argv))
    print(f"wrote {args.out}: {meta['pixels']['splits']} clips, VAE {meta['vae']['fingerprint']}, "
          f"{meta['seconds']:.0f} s")


if __name__ == "__main__":
    cli.main(job, sys.argv[1:])
