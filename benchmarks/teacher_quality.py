"""Novel-view quality of a trained STAR teacher on a latent dataset's test split.

    python -m benchmarks.teacher_quality --data /work/data/latents_worlds_tiny \
        --vae /work/runs/vae_tiny_export --teacher /work/runs/teacher_tiny [--steps 20 --cfg_scale 1.0 --num 32]

For each of the first `num` test clips, five target videos are compared with the true target
(target_rgb, from the latent dataset or, matched by example_id, from the pixel dataset --pixels):
  (a) render     the warped source alone (render_rgb, holes as they are: what the DiT is given);
  (b) untrained  the teacher network at its random initialisation (the run's seed), same sampler;
  (c) trained    the trained teacher (EMA params when the run kept them): Euler, `steps` steps,
                 the run's timestep shift, classifier-free guidance on the text `cfg_scale`
                 (v_u + s (v_c - v_u), star_jax.diffusion.guidance; 1: none);
  (d) VAE recon  the dataset's target latents decoded (the VAE's ceiling for (b) and (c));
  (e) diagnostic the render latents decoded: what the teacher is given, through the VAE (a teacher
                 that only copied its render where the mask is valid would match (e) there).
(b) and (c) are decoded with the VAE. PSNR and SSIM (star_jax.evaluation.ground_truth, the
implementation behind star_jax.evaluate's metrics.json: RGB in [0, 1], 11x11 Gaussian SSIM) over
all pixels, inside the render mask (render_valid) and in the holes, per clip (its 9 frames
pooled), then averaged over clips (a region a clip lacks is left out of that mean).

--teacher is a training workdir (run.json, checkpoints/<step>/, metrics.jsonl) or an export
(`python -m star_jax.checkpoint.export teacher ...`: dit/ + teacher.json). --vae is the tiny
VAE's folder (vae.json + orbax params, read by `data_pipelines.precompute.load_vae`); it must be
the VAE that encoded the latents (the fingerprint in the dataset's metadata). --pixels defaults to
the pixel dataset the latent dataset's metadata names. The table goes to stdout and to
benchmarks/results/teacher_quality_<dataset>.md (--out), with the run's facts.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from star_jax.errors import InputError
from star_jax.evaluation.ground_truth import ground_truth_metrics
from star_jax.io.files import atomic_path
from star_jax.models.vae import decode, denormalize_latents
from star_jax.train.metrics import read_metrics
from star_jax.train.teacher import conditions_from_batch, sample_teacher

METHODS = ("render", "untrained", "trained", "vae_recon", "render_latent")
LABELS = {"render": "(a) warped render alone", "untrained": "(b) untrained teacher (random init)",
          "trained": "(c) trained teacher", "vae_recon": "(d) VAE reconstruction of the target (ceiling)",
          "render_latent": "(e) the render latent decoded (the teacher's input; diagnostic)"}
REGIONS = ("all", "rendered", "holes")
ONE = jax.devices()[:1]


def read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: cannot read it as JSON ({type(e).__name__}: {e})") from e


def load_teacher(path: str) -> dict:
    """A training workdir or an export -> {dit, params, init_params, shift, config, facts}."""
    import flax.linen as nn

    from star_jax.train.teacher import initial_params, teacher_model

    if os.path.exists(os.path.join(path, "teacher.json")):  # an export
        from star_jax.checkpoint.storage import restore_params

        meta = read_json(os.path.join(path, "teacher.json"))
        config = ml_collections.ConfigDict(meta["config"])
        params = restore_params(os.path.join(path, "dit"))
        facts = {k: meta.get(k) for k in ("step", "train_wall_s", "params")}
    else:
        from star_jax.train import CheckpointConfig, Checkpointer
        from star_jax.train.loop import setup

        config = ml_collections.ConfigDict(read_json(os.path.join(path, "run.json"))["config"])
        s = setup(config, devices=ONE)
        ckpt = Checkpointer(os.path.join(path, "checkpoints"), CheckpointConfig())
        step = ckpt.latest_step()
        if step is None:
            raise InputError(f"{path}/checkpoints: no checkpoint to evaluate")
        state = ckpt.restore_state(step, s.abstract)
        ckpt.close()
        params = state.ema_params if state.ema_params is not None else state.params
        records = [r for r in read_metrics(path) if r["step"] <= step]
        facts = {"step": step, "train_wall_s": float(sum(r["step_time_s"] for r in records)),
                 "params": "EMA" if state.ema_params is not None else "raw"}
    return {"dit": teacher_model(config), "params": nn.meta.unbox(params), "init_params": initial_params(config),
            "shift": float(config.flow.shift), "config": config, "facts": facts}


def to_unit(frames) -> np.ndarray:
    """Decoder frames in [-1, 1] -> [0, 1] float64 (clipped, as a saved video would be)."""
    return np.clip((np.asarray(frames, np.float64) + 1.0) / 2.0, 0.0, 1.0)


def clip_metrics(pred, target, valid) -> dict:
    """pred, target (T, H, W, 3) in [0, 1] or uint8, valid (T, H, W) -> {metric/region: value}: PSNR
    and SSIM pooled over the clip's frames, from `ground_truth_metrics` (the numbers `star_jax.evaluate`
    writes to metrics.json); NaN where the clip lacks the region."""
    out = {}
    for m in ground_truth_metrics(pred, target, masks=np.asarray(valid) > 0):
        for r in REGIONS:
            v = None if m.raw is None else m.raw[r]
            out[f"{m.name}/{r}"] = float("nan") if v is None else float(v)
    return out


def nan_mean(values) -> float:
    """The mean of the values that are not NaN (a region the clip lacks); NaN when none is."""
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def _stack(examples, key):
    return np.stack([np.asarray(e[key]) for e in examples])


def evaluate(latents, pixels, vae, vae_params, teacher, num: int, steps: int, cfg_scale: float, seed: int = 0,
             batch: int = 4) -> tuple[dict, int]:
    """-> ({method: {metric/region: mean over clips}}, clips evaluated)."""
    num = min(num, len(latents))
    if num == 0:
        raise InputError("teacher_quality: the test split has no examples")
    by_id = None
    if pixels is not None:
        by_id = {int(pixels[i]["example_id"]): i for i in range(len(pixels))}
    dit, shift = teacher["dit"], teacher["shift"]

    @jax.jit
    def sample(params, ref, render, mask, text, rng):
        cond = conditions_from_batch({"ref": ref, "render": render, "mask": mask})
        return sample_teacher(dit, params, cond, text, rng, num_steps=steps, shift=shift, cfg_scale=cfg_scale)

    to_pixels = lambda z: to_unit(decode(vae, vae_params, denormalize_latents(jnp.asarray(z), vae.cfg)))
    per = {m: [] for m in METHODS}
    for start in range(0, num, batch):
        exs = [latents[i] for i in range(start, min(start + batch, num))]
        cond = [jnp.asarray(_stack(exs, k), jnp.float32) for k in ("ref", "render", "mask", "text")]
        rng = jax.random.PRNGKey(seed + start)  # the same noise for (b) and (c)
        videos = {"untrained": to_pixels(sample(teacher["init_params"], *cond, rng)),
                  "trained": to_pixels(sample(teacher["params"], *cond, rng)),
                  "vae_recon": to_pixels(_stack(exs, "target")),
                  "render_latent": to_pixels(_stack(exs, "render"))}
        for j, ex in enumerate(exs):
            if "target_rgb" in ex:
                target = np.asarray(ex["target_rgb"])
            else:
                eid = int(ex["example_id"])
                if by_id is None or eid not in by_id:
                    raise InputError(f"teacher_quality: example_id {eid} has no target_rgb in the latent dataset "
                                     f"and no match in --pixels")
                target = np.asarray(pixels[by_id[eid]]["target_rgb"])
            valid = np.asarray(ex["render_valid"])
            preds = {"render": np.asarray(ex["render_rgb"]), **{m: v[j] for m, v in videos.items()}}
            for m, p in preds.items():
                if p.shape != target.shape:
                    raise InputError(f"teacher_quality: example {start + j}: {m} is {p.shape}, target_rgb "
                                     f"{target.shape}")
                per[m].append(clip_metrics(p, target, valid))
    means = {m: {k: nan_mean([r[k] for r in rows]) for k in rows[0]} for m, rows in per.items()}
    return means, num


def table(means: dict) -> str:
    head = ("| method | PSNR all | PSNR rendered | PSNR holes | SSIM all | SSIM rendered | SSIM holes |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    rows = []
    for m in METHODS:
        v = means[m]
        rows.append(f"| {LABELS[m]} | " + " | ".join(f"{v[f'psnr/{r}']:.2f}" for r in REGIONS) + " | "
                    + " | ".join(f"{v[f'ssim/{r}']:.4f}" for r in REGIONS) + " |")
    return head + "\n".join(rows) + "\n"


def open_eval_data(data: str, pixels: str, split: str, vae_dir: str):
    """A latent dataset's split, the pixel split with its true targets (None when the latents carry
    target_rgb), the pixel folder, and the VAE (vae, params, fingerprint), refused when the
    latents were encoded by another encoder (`precompute.check_latents_vae`: a decoder fine-tuned on
    the same frozen encoder decodes them)."""
    from data_pipelines.precompute import check_latents_vae, load_vae
    from star_jax.train import records

    info = records.dataset_info(data)
    latents = records.open_split(data, split)
    pixels_dir = pixels or (info.metadata.get("pixels") or {}).get("path", "")
    if "target_rgb" not in info.features and not pixels_dir:
        raise InputError(f"{info.folder}: no target_rgb and no pixel dataset in its metadata; give --pixels")
    pixel_split = records.open_split(pixels_dir, split) if "target_rgb" not in info.features else None
    vae = load_vae(vae_dir)
    check_latents_vae(info.metadata.get("vae") or {}, vae_dir, vae[0].cfg, vae[1], info.folder, vae[2])
    return info, latents, pixel_split, pixels_dir, vae


def write_results(text: str, out: str, default_name: str) -> None:
    """`text` to `out` (default benchmarks/results/<default_name>), atomically."""
    out = out or os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", default_name)
    with atomic_path(out) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="latent dataset folder (star_latents_<name>)")
    p.add_argument("--pixels", default="", help="pixel dataset folder with target_rgb (matched by example_id)")
    p.add_argument("--vae", required=True, help="tiny VAE export folder (params + vae.json)")
    p.add_argument("--teacher", required=True, help="teacher training workdir or export folder")
    p.add_argument("--split", default="test")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--cfg_scale", type=float, default=1.0,
                   help="classifier-free guidance on the text, v_u + cfg_scale (v_c - v_u) (1: none)")
    p.add_argument("--guidance", type=float, default=None, help=argparse.SUPPRESS)  # renamed --cfg_scale
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--out", default="", help="results file (default benchmarks/results/teacher_quality_<dataset>.md)")
    a = p.parse_args(argv)
    if a.guidance is not None:
        raise InputError(f"--guidance: renamed --cfg_scale, the same value (sample_teacher always used v_u + s (v_c - "
                         f"v_u)): use --cfg_scale {a.guidance:g}")
    t0 = time.perf_counter()
    info, latents, pixels, pixels_dir, (vae, vae_params, _) = open_eval_data(a.data, a.pixels, a.split, a.vae)
    teacher = load_teacher(a.teacher)
    means, n = evaluate(latents, pixels, vae, vae_params, teacher, a.num, a.steps, a.cfg_scale, a.seed, a.batch)
    name = info.name.removeprefix("star_latents_")
    f = teacher["facts"]
    wall = f.get("train_wall_s")
    init_from = teacher["config"].get("run", {}).get("init_from", "")
    facts = [f"dataset: {info.folder} (split {a.split!r}, {n} clips)"
             + (f"; targets from {pixels_dir}" if pixels is not None else ""),
             f"teacher: {a.teacher}, step {f.get('step')}, {f.get('params')} params; training wall time "
             + (f"{wall / 60:.1f} min (sum of step times in metrics.jsonl)" if wall else "unknown")
             + (f"; warm-started from {init_from}" if init_from else "; trained from scratch"),
             f"sampler: Euler, {a.steps} steps, timestep shift {teacher['shift']:g}, CFG scale {a.cfg_scale:g}, "
             f"seed {a.seed}; untrained = the same network at its random initialisation (the run's seed), same noise",
             f"VAE: {a.vae}; metrics: PSNR (dB) / SSIM (11x11 Gaussian, RGB) per clip, averaged over clips; "
             f"rendered = render_valid, holes = its complement",
             f"evaluation took {time.perf_counter() - t0:.0f} s on {jax.devices()[0].device_kind}"]
    text = f"# Teacher quality: {name}\n\n" + table(means) + "\n" + "".join(f"- {x}\n" for x in facts)
    sys.stdout.write(text)
    write_results(text, a.out, f"teacher_quality_{name}.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
