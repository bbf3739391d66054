"""Latent clips -> ODE pairs for the student's ODE initialisation (`star_ode_<name>`).

    python -m data_pipelines.ode_pairs --latents /work/data/latents21_tex \\
        --teacher /work/runs/s21/teacher_flat_export --out /work/data/ode21 [--steps 32 --cfg_scale 3.0 \\
        --split train --limit N --batch 4 --seed 0 --frames 6]
    # 108 clips of 6 latent frames (12x20) by the tiny teacher, 32 steps with CFG: 234 s on a
    # shared 2-core CPU (~40 s of it compiling), 62 MB

For each example of the split(s) of a latent dataset (`data_pipelines/precompute.py`), the
conditional teacher's ODE (`star_jax.train.ode.teacher_ode`: Euler, CFG on the text, `--steps`
steps on a grid through the student's levels `few_step_schedule((1000, 750, 500, 250), 5)`, i.e.
sigmas 1, .9375, .8333, .625) from noise seeded by (--seed, example_id). Records: ref, render,
mask, text (copied from the latents), ode_x (4, n, h, w, 16) the states at the 4 levels (ode_x[0]
the noise), ode_x0 (n, h, w, 16) the endpoint, example_id. Metadata: the teacher (path, kind,
step, fingerprint), cfg_scale, Euler steps, shift, levels (steps, timesteps, sigmas), the seed,
and the latent dataset's VAE, conditioning and text encoder (copied), so the ODE task and later
stages can check what they are given. Read with `star_jax.train.records.open_split`.

--teacher is a teacher export (`python -m star_jax.checkpoint.export teacher`: dit/ +
teacher.json) or a teacher training workdir (run.json + checkpoints/, its newest EMA params). The
teacher must fit the latents (in_dim 36, 16 latent channels, text width and length, patch size)
and, when both record it, have been trained on latents of the same VAE and conditioning.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from data_pipelines.tfds_builders import add_output_arguments, check_output, quiet_tfds, write_dataset
from star_jax import cli
from star_jax.checkpoint.storage import CheckpointError
from star_jax.errors import InputError

LATENT_FIELDS = ("ref", "render", "mask", "text", "example_id")


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON ({type(e).__name__}: {e})") from e


def load_teacher(path: str, attention: str = ""):
    """A teacher export or training workdir -> (WanDiT, params, facts). CheckpointError names
    what is missing or does not fit (every parameter is checked against the recorded config).
    `attention` replaces the recorded attention implementation (the same function; "xla" is
    the fastest for the tiny model on a CPU); "" keeps it."""
    import flax.linen as nn

    from data_pipelines.precompute import vae_fingerprint
    from star_jax.models.dit import WanDiT
    from star_jax.models.variants import DiTConfig
    from star_jax.train import init as init_lib
    from star_jax.train.config import section

    path = os.path.abspath(path)
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: teacher not found: expected a teacher export (dit/ + teacher.json) or a "
                              f"teacher training workdir (run.json + checkpoints/)")
    if os.path.isfile(os.path.join(path, "teacher.json")):
        meta = _read_json(os.path.join(path, "teacher.json"))
        kind, config, dit_fields, step = "export", meta.get("config") or {}, meta.get("dit"), meta.get("step")
    elif os.path.isfile(os.path.join(path, "run.json")):
        config = _read_json(os.path.join(path, "run.json")).get("config") or {}
        kind, dit_fields, step = "workdir", (config.get("model") or {}).get("dit"), None
    else:
        raise CheckpointError(f"{path}: expected a teacher export (teacher.json) or a training workdir (run.json), "
                              f"found {sorted(os.listdir(path))[:5]}")
    if config.get("task") not in (None, "teacher"):
        raise CheckpointError(f"{path}: a run of task {config.get('task')!r}; the ODE pairs need the bidirectional "
                              f"teacher (task 'teacher')")
    if not isinstance(dit_fields, dict):
        raise CheckpointError(f"{path}: records no DiT config (teacher.json 'dit' / run.json config.model.dit)")
    try:
        cfg = section(DiTConfig, {"dit": dit_fields}, "dit", path)
    except InputError as e:
        raise CheckpointError(str(e)) from e
    recorded = cfg
    try:
        cfg = dataclasses.replace(cfg, remat="none", attention=attention or cfg.attention)  # memory / speed only
    except ValueError as e:
        raise InputError(f"--attention: {e}") from e
    dit = WanDiT(cfg)
    f = cfg.frames_per_block
    abstract = nn.meta.unbox(jax.eval_shape(lambda k: dit.init(
        k, jnp.zeros((1, f, 2, 2, cfg.in_dim)), jnp.zeros((1,)), jnp.zeros((1, 1, cfg.text_dim)))["params"],
        jax.random.PRNGKey(0)))
    params = init_lib.map_params(init_lib.read_source_params(path), abstract, cfg.patch_size, f"teacher {path}")
    if step is None:
        ckpt = os.path.join(path, "checkpoints")
        step = max(int(d) for d in os.listdir(ckpt) if d.isdigit())
    conv = None
    if os.path.isfile(os.path.join(path, "star_model.json")):
        from star_jax.inference.model import read_star_model_json

        conv = read_star_model_json(os.path.join(path, "star_model.json")).name
    data = config.get("data") or {}
    facts = {"path": path, "kind": kind, "step": step, "fingerprint": vae_fingerprint(recorded, params),
             "conditioning": conv or data.get("conditioning"),
             "data": data.get("path") if data.get("source") == "records" else None}
    return dit, jax.device_put(params), facts


def check_fit(cfg, facts: dict, info, frames: int) -> None:
    """The teacher (cfg, facts from load_teacher) and the latent dataset `info` agree."""
    from star_jax.train import records

    where, t = info.folder, facts["path"]
    missing = [k for k in LATENT_FIELDS if k not in info.features]
    if missing:
        raise InputError(f"{where}: not a latent dataset: missing field(s) {missing} (write one with "
                         f"python -m data_pipelines.precompute)")
    (n, h, w, c), (text_rows, text_dim) = info.features["ref"][0], info.features["text"][0]
    if n != frames:
        raise InputError(f"{where}: latents of {n} latent frames, expected {frames} (--frames: whole blocks of "
                         f"{cfg.frames_per_block} latent frames)")
    if n % cfg.frames_per_block:
        raise InputError(f"{where}: latents of {n} latent frames are not whole blocks of {cfg.frames_per_block}")
    _, ph, pw = cfg.patch_size
    wrong = []
    if cfg.in_dim != 2 * c + info.features["mask"][0][-1] or cfg.out_dim != c:
        wrong.append(f"in_dim {cfg.in_dim} / out_dim {cfg.out_dim} for latents of {c} channels (needs "
                     f"{2 * c + info.features['mask'][0][-1]} / {c})")
    if text_dim != cfg.text_dim or text_rows > cfg.text_len:
        wrong.append(f"text_dim {cfg.text_dim}, text_len {cfg.text_len} for text embeddings of {(text_rows, text_dim)}")
    if h % ph or w % pw:
        wrong.append(f"patch size {cfg.patch_size} for {h}x{w} latent cells")
    if wrong:
        raise CheckpointError(f"teacher {t} does not fit the latents {where}: {'; '.join(wrong)}")
    conv = (info.metadata.get("conditioning") or {}).get("name")
    if conv and facts["conditioning"] and conv != facts["conditioning"]:
        raise CheckpointError(f"teacher {t}: trained with conditioning {facts['conditioning']!r}, the latents "
                              f"{where} were made with {conv!r}")
    if facts["data"] and os.path.isfile(os.path.join(facts["data"], "dataset_info.json")):
        from data_pipelines.precompute import comparable_fingerprints

        kind, mine, theirs = comparable_fingerprints(info.metadata.get("vae") or {},
                                                     records.dataset_info(facts["data"]).metadata.get("vae") or {})
        if mine and theirs and mine != theirs:
            raise CheckpointError(f"teacher {t}: trained on latents of {kind} {theirs} ({facts['data']}), the "
                                  f"latents {where} are of {kind} {mine}")


def ode_features(latent_shape: tuple[int, int, int], mask_channels: int, text_shape: tuple[int, int],
                 num_levels: int, latent_channels: int = 16):
    """The FeaturesDict of a pairs dataset: latent_shape (n, h, w), text_shape (L, D)."""
    import tensorflow_datasets as tfds

    n, h, w = latent_shape
    lat = lambda *lead, c=latent_channels: tfds.features.Tensor(shape=lead + (n, h, w, c), dtype=np.float32)  # noqa: E731
    return tfds.features.FeaturesDict({
        "ref": lat(), "render": lat(), "mask": lat(c=mask_channels),
        "text": tfds.features.Tensor(shape=tuple(text_shape), dtype=np.float32),
        "ode_x": lat(num_levels), "ode_x0": lat(),
        "example_id": tfds.features.Scalar(dtype=np.int64),
    })


@functools.partial(jax.jit, static_argnums=(0, 1))
def solve_batch(dit, cfg_scale: float, params, grid, seed, ref, render, mask, text, example_ids):
    """A batch of examples (B, n, ...) -> (ode_x (B, L, n, h, w, 16), ode_x0 (B, n, h, w, 16))."""
    from star_jax.inference.conditions import StarConditions
    from star_jax.train.ode import example_noise, teacher_ode

    noise = example_noise(seed, example_ids, ref.shape[1:-1] + (dit.cfg.out_dim,))
    return teacher_ode(dit, params, StarConditions(ref, render, mask), text, noise, grid, cfg_scale)


def pair_examples(source, dit, params, grid, cfg_scale: float, seed: int, batch: int, limit: int = 0, bar=None):
    """(key, pairs example) for the first `limit` (0: all) records of a latent split, in order,
    `batch` per solve (the last batch padded by repetition: one compile)."""
    n = len(source) if not limit else min(limit, len(source))
    for start in range(0, n, batch):
        idx = [min(i, n - 1) for i in range(start, start + batch)]
        recs = [source[i] for i in idx]
        arr = {k: np.stack([np.asarray(r[k]) for r in recs]) for k in LATENT_FIELDS}
        xs, x0 = solve_batch(dit, float(cfg_scale), params, grid, jnp.uint32(seed),
                             *(arr[k].astype(np.float32) for k in ("ref", "render", "mask", "text")),
                             (arr["example_id"].astype(np.int64) & 0xFFFFFFFF).astype(np.uint32))
        xs, x0 = np.asarray(xs), np.asarray(x0)
        for j in range(min(batch, n - start)):
            ex = {k: arr[k][j].astype(np.float32) for k in ("ref", "render", "mask", "text")}
            ex.update(ode_x=xs[j], ode_x0=x0[j], example_id=np.int64(arr["example_id"][j]))
            yield int(arr["example_id"][j]), ex
        if bar is not None:
            bar.update(min(batch, n - start))


def build(latents: str, teacher: str, out: str, steps: int = 32, cfg_scale: float = 3.0, splits=("train",),
          limit: int = 0, batch: int = 4, seed: int = 0, frames: int = 6, shift: float = 5.0,
          levels=(1000, 750, 500, 250), attention: str = "xla", overwrite: bool = False, progress: bool = True,
          command: str = "") -> dict:
    """Writes the pairs dataset of `latents` by `teacher` at `out`; returns its metadata. cfg_scale:
    the teacher's classifier-free guidance on the text, v_u + cfg_scale (v_c - v_u)
    (`star_jax.diffusion.guidance`; 3, the value every pairs dataset so far was made with)."""
    from tqdm import tqdm

    from star_jax.diffusion.guidance import check_cfg_scale
    from star_jax.diffusion.schedule import few_step_schedule
    from star_jax.train.ode import level_grid
    from star_jax.train.records import dataset_info, open_split

    if batch < 1 or limit < 0:
        raise InputError(f"--batch must be >= 1 and --limit >= 0, got {batch}, {limit}")
    cfg_scale = check_cfg_scale(cfg_scale, "--cfg_scale")
    sched = few_step_schedule(levels, shift)
    if steps < len(sched.sigmas) or steps % len(sched.sigmas):
        raise InputError(f"--steps: expected a multiple of the {len(sched.sigmas)} student levels (the grid passes "
                         f"through each), got {steps}")
    info = dataset_info(latents)
    unknown = [s for s in splits if s not in info.splits]
    if unknown:
        raise InputError(f"{info.folder}: no split(s) {unknown} (the dataset has {sorted(info.splits)})")
    check_output(out, overwrite)
    dit, params, facts = load_teacher(teacher, attention)
    check_fit(dit.cfg, facts, info, frames)
    grid = level_grid(sched.sigmas, steps // len(sched.sigmas), shift)
    n, h, w, c = info.features["ref"][0]
    features = ode_features((n, h, w), info.features["mask"][0][-1], info.features["text"][0], len(sched.sigmas), c)
    name = "star_ode_" + info.name.removeprefix("star_latents_").removeprefix("star_")
    meta = info.metadata
    metadata = {"generator": "data_pipelines.ode_pairs", "command": command,
                "teacher": facts, "cfg_scale": float(cfg_scale), "euler_steps": int(steps), "shift": float(shift),
                "cfg": "v = v_u + cfg_scale * (v_c - v_u), v_u with zero text (star_jax.diffusion.guidance)",
                "seed": int(seed), "grid": grid.tolist(),
                "levels": {"steps": list(map(int, levels)), "shift": float(shift),
                           "timesteps": sched.timesteps.tolist(), "sigmas": sched.sigmas.tolist()},
                "latents": {"path": info.folder, "name": info.name, "splits": dict(info.splits)},
                "vae": meta.get("vae"), "conditioning": meta.get("conditioning"),
                "text_encoder": meta.get("text_encoder")}
    sizes = {s: min(limit, info.splits[s]) if limit else info.splits[s] for s in splits}
    bar = tqdm(total=sum(sizes.values()), desc="ode pairs", unit="clip", file=sys.stderr, disable=not progress)
    start = time.time()

    def split_examples(split):
        source = open_split(info.folder, split)
        return lambda: pair_examples(source, dit, params, grid, cfg_scale, seed, batch, limit, bar)

    try:
        write_dataset(out, name, features, {s: split_examples(s) for s in splits}, metadata,
                      description=f"teacher ODE pairs of {info.name} ({info.folder}) by {facts['path']}",
                      overwrite=overwrite)
    finally:
        bar.close()
    metadata["seconds"] = time.time() - start
    metadata["examples"] = sizes
    return metadata


def job(argv) -> None:
    parser = cli.ArgumentParser(prog="python -m data_pipelines.ode_pairs", description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", required=True, help="latent dataset folder (data_pipelines.precompute)")
    parser.add_argument("--teacher", required=True, help="teacher export (dit/ + teacher.json) or training workdir")
    parser.add_argument("--out", required=True, help="pairs dataset folder to write (new or empty)")
    parser.add_argument("--steps", type=int, default=32, help="Euler steps in all (a multiple of the 4 levels)")
    parser.add_argument("--cfg_scale", type=float, default=3.0,
                        help="classifier-free guidance on the text, v_u + cfg_scale (v_c - v_u) (1: none)")
    parser.add_argument("--guidance", type=float, default=None, help=argparse.SUPPRESS)  # renamed --cfg_scale
    parser.add_argument("--split", default="train", help="split(s) of the latents, comma-separated")
    parser.add_argument("--limit", type=int, default=0, help="at most this many examples per split (0: all)")
    parser.add_argument("--batch", type=int, default=4, help="examples per jitted solve")
    parser.add_argument("--seed", type=int, default=0, help="noise seed (folded with each example_id)")
    parser.add_argument("--frames", type=int, default=6, help="latent frames per example the latents must have")
    parser.add_argument("--attention", default="xla", help="attention implementation of the solve (xla, "
                        "dot_product, blockwise: the same function; '' keeps the teacher's)")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    if args.guidance is not None:
        raise InputError(f"--guidance: renamed --cfg_scale, the same value (the pairs always used v_u + s (v_c - "
                         f"v_u)): use --cfg_scale {args.guidance:g}")
    quiet_tfds()
    meta = build(args.latents, args.teacher, args.out, args.steps, args.cfg_scale,
                 tuple(s for s in args.split.split(",") if s), args.limit, args.batch, args.seed, args.frames,
                 attention=args.attention, overwrite=args.overwrite, progress=not args.no_progress,
                 command="python -m data_pipelines.ode_pairs " + " ".join(argv))
    print(f"wrote {args.out}: {meta['examples']} examples, teacher {meta['teacher']['fingerprint']} step "
          f"{meta['teacher']['step']}, {meta['euler_steps']} Euler steps, cfg_scale {meta['cfg_scale']:g}, "
          f"{meta['seconds']:.0f} s")


if __name__ == "__main__":
    cli.main(job, sys.argv[1:])
