"""The ablation table of the few-step students: novel-view quality, realism and speed on a latent
dataset's held-out split, next to the teachers they were distilled from.

    python -m benchmarks.student_quality --data /work/data/latents21_tex --vae /work/runs/vae_tiny_export \
        --ode /work/runs/s21/student_ode --dmd /work/runs/s21/student_dmd --jdmd /work/runs/s21/student_jdmd \
        --teacher_c /work/runs/s21/teacher_flat_export --teacher_m /work/runs/s21/teacher_tex_export

Rows (a generator given by a path that does not exist, or not given, is a row saying "missing",
so the script runs before every network is trained):
    untrained   the block-causal student network at a random initialisation (seed --seed)
    ode / dmd / jdmd   the students: the causal rollout (`star_jax.inference.rollout.rollout`,
                blocks of 3 latent frames against the KV cache), `--student_steps` warped steps
                (default 1000, 750, 500, 250 through the shift-`--student_shift` table)
    teacher_c   T_c, the conditional teacher (trained on the flat-shaded worlds): bidirectional,
                `sample_teacher`, Euler `--teacher_steps` steps, its training shift, text CFG as the
                distillation used it (`--cfg_scale`, v_u + s (v_c - v_u); default the DMD / JDMD
                run's config.distill.cfg_scale, an older run's guidance g read as g + 1)
    teacher_m   T_m, the real-appearance teacher (trained on the textured worlds), same sampler,
                its CFG `--real_cfg_scale` (default the run's config.distill.real_cfg_scale)
    teacher_m_free   T_m with the render dropped (zeros, an all-hole mask): what JDMD's second
                direction pulls toward (a diagnostic)
    render      the warped source alone (render_rgb, holes black: what every generator is given)
    vae_recon   the target latents decoded: the VAE's ceiling for every generated row
    flat_truth  the true target of the same world, camera and time rendered flat-shaded (the
                synthetic appearance T_c learnt; from `--flat_pixels`, matched by example_id): the
                realism gap between the two appearances, for scale
Columns: PSNR / SSIM over all pixels, inside the render mask (render_valid) and in the holes,
per clip (its frames pooled) then averaged over clips (`teacher_quality.clip_metrics`, i.e.
`star_jax.evaluation.ground_truth`, as star_jax.evaluate's metrics.json); realism =
`star_jax.evaluation.realism_distance` of the row's frames (all clips) against the split's true
target frames (lower is more alike; 0 only for the targets themselves, the VAE row shows the
floor a decoder leaves); frames/s of the generator on this machine, latent generation + VAE decode
of one batch, best of `--repeats` calls (already compiled and run by the evaluation); the speed-up
is the T_c row's time per batch over the row's, with and without the decode (the same decoder
serves every row, so the latents-only ratio is the DiT's). The same noise key per batch for every
generator. For clips of more than one STAR block a second table gives each row's PSNR (all pixels)
per block, pooled over the block's frames and averaged over clips: where a causal generator drifts.

--data is the latent dataset (`data_pipelines.precompute`), --pixels its pixel dataset (default:
the one its metadata names) for the true targets, matched by example_id; --vae the VAE that
encoded it (fingerprint checked). A student is a trainer workdir (run.json + checkpoints/: the
newest step's EMA params when kept; a distillation state's `generator` subtree) or an export
(dit/ beside a teacher.json or a model card star_model.json naming its DiT config); a teacher is what
`teacher_quality.load_teacher` reads. The table goes to stdout and benchmarks/results/student_quality.md.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.teacher_quality import (
    REGIONS,
    clip_metrics,
    load_teacher,
    nan_mean,
    open_eval_data,
    read_json,
    to_unit,
    write_results,
)
from benchmarks.vae_quality import chunk_ranges
from star_jax.errors import InputError
from star_jax.evaluation.ground_truth import psnr_metric
from star_jax.evaluation.realism import frechet_distance, gaussian_stats, patch_features
from star_jax.inference.conditions import StarConditions
from star_jax.models.vae import decode, denormalize_latents

STUDENTS = ("ode", "dmd", "jdmd")
GENERATORS = ("untrained",) + STUDENTS + ("teacher_c", "teacher_m", "teacher_m_free")
ROWS = GENERATORS + ("render", "vae_recon", "flat_truth")
LABELS = {"untrained": "untrained student (random init)", "ode": "student: ODE init",
          "dmd": "student: DMD (JDMD weight 0)", "jdmd": "student: JDMD",
          "teacher_c": "teacher T_c (conditional, flat-trained)", "teacher_m": "teacher T_m (real appearance)",
          "teacher_m_free": "T_m, render dropped (JDMD's appearance target; diagnostic)",
          "render": "warped render alone", "vae_recon": "VAE reconstruction of the target (ceiling)",
          "flat_truth": "the true target, flat-shaded (synthetic appearance; reference)"}
ONE = jax.devices()[:1]


def _record_dit_config(path: str):
    """The DiTConfig a student folder records (export json or run.json), or None."""
    from star_jax.models.variants import DiTConfig
    from star_jax.train.config import section

    for name in ("student.json", "teacher.json", "star_model.json"):  # star_model.json format 2: a model card
        f = os.path.join(path, name)
        if os.path.exists(f):
            meta = read_json(f)
            if isinstance(meta.get("dit"), dict):
                return DiTConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in meta["dit"].items()})
            if "model" in meta.get("config", {}):
                return section(DiTConfig, meta["config"]["model"], "dit", f"{f}: config.model")
    run = os.path.join(path, "run.json")
    if os.path.exists(run):
        model = read_json(run)["config"].get("model", {})
        if "dit" in model:
            return section(DiTConfig, model, "dit", f"{run}: config.model")
    return None


def _init(cfg, frames: int, latent_hw, text_len: int):
    """key -> fresh (unboxed) params of the STAR DiT `cfg` for examples of that shape."""
    import flax.linen as nn

    from star_jax.models.dit import WanDiT
    from star_jax.train.teacher import TeacherDataConfig, init_teacher

    data = TeacherDataConfig(latent_frames=frames, latent_hw=tuple(latent_hw), text_len=text_len)
    return lambda key: nn.meta.unbox(init_teacher(WanDiT(cfg), data, key))


def _abstract_params(cfg, frames: int, latent_hw, text_len: int):
    return jax.eval_shape(_init(cfg, frames, latent_hw, text_len), jax.random.PRNGKey(0))


def distill_cfg_scales(paths) -> tuple[float | None, float | None]:
    """(cfg_scale, real_cfg_scale) of the first distillation workdir among `paths` (its run.json's
    config.distill, `train.distill.recorded_cfg_scales`: an older run's guidance converted), or
    (None, None)."""
    from star_jax.train.distill import recorded_cfg_scales

    for path in paths:
        run = os.path.join(path, "run.json") if path else ""
        if run and os.path.exists(run):
            d = read_json(run)["config"].get("distill")
            if isinstance(d, dict):
                return recorded_cfg_scales(d)
    return None, None


def load_student(path: str, fallback_cfg=None, frames: int = 3, latent_hw=(4, 4), text_len: int = 4) -> dict:
    """A student workdir or export (module docstring) -> {cfg, params, facts}. Its DiT config is
    the one the folder records, else `fallback_cfg` (the student shares T_c's params tree)."""
    from star_jax.checkpoint.storage import CheckpointError
    from star_jax.train.init import map_params, read_source_params

    cfg = _record_dit_config(path) or fallback_cfg
    if cfg is None:
        raise InputError(f"{path}: no DiT config recorded (run.json config.model.dit, teacher.json, star_model.json) "
                         f"and no teacher to take it from")
    source = read_source_params(path)
    if any(k.startswith("generator/") for k in source):  # a distillation state: generator + critic(s)
        source = {k.removeprefix("generator/"): v for k, v in source.items() if k.startswith("generator/")}
    try:
        params = map_params(source, _abstract_params(cfg, frames, latent_hw, text_len), cfg.patch_size, path)
    except CheckpointError as e:
        raise InputError(str(e)) from e
    facts = {}
    ckpt = os.path.join(path, "checkpoints")
    if os.path.isdir(ckpt):
        steps = sorted(int(d) for d in os.listdir(ckpt) if d.isdigit())
        facts["step"] = steps[-1] if steps else None
    return {"cfg": cfg, "params": jax.tree_util.tree_map(jnp.asarray, params), "facts": facts}


def random_student(cfg, seed: int, frames: int, latent_hw, text_len: int):
    """The block-causal student's params at a random initialisation (key `seed`)."""
    return jax.jit(_init(cfg, frames, latent_hw, text_len))(jax.random.PRNGKey(seed))


@functools.lru_cache(maxsize=None)  # one compiled sampler per (config, steps, shift): students share it
def student_sampler(cfg, steps: tuple, shift: float):
    """-> jitted fn(params, ref, render, mask, text, rng) -> latents (B, n, h, w, 16): the causal rollout."""
    from star_jax.inference.rollout import rollout
    from star_jax.models.dit import WanDiT

    dit = WanDiT(cfg, block_causal=True)
    steps = tuple(int(s) for s in steps)
    return jax.jit(lambda params, ref, render, mask, text, rng: rollout(
        dit, params, text, StarConditions(ref, render, mask), rng, steps=steps, shift=shift))


@functools.lru_cache(maxsize=None)
def teacher_sampler(dit, shift: float, steps: int, cfg_scale: float, drop_render: bool = False,
                    mask_hole: float = -1.0):
    """-> jitted fn(params, ref, render, mask, text, rng) -> latents: Euler + CFG (`sample_teacher`);
    `drop_render`: the render zeroed and the mask all holes, as render dropout trains it."""
    from star_jax.train.teacher import sample_teacher

    def sample(params, ref, render, mask, text, rng):
        if drop_render:
            render, mask = jnp.zeros_like(render), jnp.full_like(mask, mask_hole)
        return sample_teacher(dit, params, StarConditions(ref, render, mask), text, rng, num_steps=steps,
                              shift=shift, cfg_scale=cfg_scale)

    return jax.jit(sample)


def _target(ex, by_id, pixels) -> np.ndarray:
    if "target_rgb" in ex and pixels is None:
        return np.asarray(ex["target_rgb"])
    eid = int(ex["example_id"])
    if by_id is None or eid not in by_id:
        raise InputError(f"student_quality: example_id {eid} has no target_rgb in the latent dataset and no match "
                         f"in the pixel dataset")
    return np.asarray(pixels[by_id[eid]]["target_rgb"])


def block_frames(n_latent: int, per_block: int = 3) -> list[tuple[int, int]]:
    """The pixel frames [start, stop) of each STAR block of a clip of `n_latent` latent frames, blocks
    of `per_block` latents: the causal VAE chunks of its latents joined (`vae_quality.chunk_ranges`:
    latent 0 is frame 0, latent i >= 1 frames 4i - 3 .. 4i)."""
    if n_latent % per_block:
        raise InputError(f"student_quality: {n_latent} latent frames are not whole blocks of {per_block}")
    chunks = chunk_ranges(4 * n_latent - 3)
    return [(chunks[i][0], chunks[i + per_block - 1][1]) for i in range(0, n_latent, per_block)]


def block_psnr(pred, target, blocks) -> list[float]:
    """PSNR (dB, all pixels) of each block's frames of one clip, pooled over them as the clip's column is
    (`ground_truth.psnr_metric`); `blocks` from `block_frames`."""
    return [float(psnr_metric(pred[a:b], target[a:b]).raw["all"]) for a, b in blocks]


def evaluate(latents, pixels, vae, vae_params, generators: dict, num: int, batch: int = 4, seed: int = 0,
             repeats: int = 2, flat=None) -> tuple[dict, int]:
    """generators: {name: (fn(params, ref, render, mask, text, rng) -> latents, params)}; `flat`: the
    flat-shaded pixel split (the flat_truth row) or None.
    -> ({row: {metric/region: mean over clips, "realism": float, "batch_s": float or None,
    "psnr_by_block": [dB per STAR block, mean over clips]}}, clips)."""
    num = min(num, len(latents))
    if num == 0:
        raise InputError("student_quality: the split has no examples")
    by_id = {int(pixels[i]["example_id"]): i for i in range(len(pixels))} if pixels is not None else None
    to_pixels = jax.jit(lambda p, z: decode(vae, p, denormalize_latents(z, vae.cfg)))
    flat_id = {int(flat[i]["example_id"]): i for i in range(len(flat))} if flat is not None else None
    rows = tuple(generators) + ("render", "vae_recon") + (("flat_truth",) if flat is not None else ())
    per = {r: [] for r in rows}
    by_block = {r: [] for r in rows}
    feats = {r: [] for r in rows + ("target",)}
    n_latent = int(np.asarray(latents[0]["target"]).shape[0])
    blocks = block_frames(n_latent) if n_latent % 3 == 0 else []  # the per-block table: whole blocks only
    first = None
    for start in range(0, num, batch):
        idx = [min(i, num - 1) for i in range(start, start + batch)]  # the last batch padded: one compile
        exs = [latents[i] for i in idx]
        cond = [jnp.asarray(np.stack([np.asarray(e[k]) for e in exs]), jnp.float32)
                for k in ("ref", "render", "mask", "text")]
        rng = jax.random.PRNGKey(seed + start)
        if first is None:
            first = (cond, rng)
        videos = {name: to_unit(to_pixels(vae_params, fn(params, *cond, rng))) for name, (fn, params) in
                  generators.items()}
        videos["vae_recon"] = to_unit(to_pixels(vae_params, jnp.asarray(np.stack([e["target"] for e in exs]))))
        for j in range(min(batch, num - start)):
            ex = exs[j]
            target, valid = _target(ex, by_id, pixels), np.asarray(ex["render_valid"])
            feats["target"].append(patch_features(target))
            preds = {"render": np.asarray(ex["render_rgb"]), **{r: v[j] for r, v in videos.items()}}
            if flat is not None:
                preds["flat_truth"] = _target(ex, flat_id, flat)
            for r, p in preds.items():
                if p.shape != target.shape:
                    raise InputError(f"student_quality: example {start + j}: {r} is {p.shape}, target_rgb "
                                     f"{target.shape}")
                per[r].append(clip_metrics(p, target, valid))
                by_block[r].append(block_psnr(p, target, blocks))
                feats[r].append(patch_features(p))
    real = gaussian_stats(np.concatenate(feats["target"]))
    out = {}
    for r in rows:
        out[r] = {k: nan_mean([m[k] for m in per[r]]) for k in per[r][0]}
        out[r]["realism"] = frechet_distance(*gaussian_stats(np.concatenate(feats[r])), *real)
        out[r]["psnr_by_block"] = [nan_mean(list(v)) for v in zip(*by_block[r])]
        out[r]["batch_s"] = out[r]["latent_s"] = None
    cond, rng = first
    for name, (fn, params) in generators.items():  # compiled by the loop above: no warm-up call needed
        out[name]["latent_s"] = _best(lambda: fn(params, *cond, rng), repeats)
        out[name]["batch_s"] = _best(lambda: to_pixels(vae_params, fn(params, *cond, rng)), repeats)
    return out, num


def _best(fn, repeats: int) -> float:
    """The best wall time (s) of `repeats` calls of an already compiled `fn` (its outputs awaited)."""
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return min(times)


def table(results: dict, frames_per_clip: int, batch: int, missing: dict, reference: str = "teacher_c",
          labels: dict | None = None) -> str:
    """The markdown table; `missing` {row: reason} for the rows not evaluated; `labels` {row: name}
    replaces LABELS' names."""
    labels = {**LABELS, **(labels or {})}
    head = ("| method | PSNR all | PSNR in mask | PSNR holes | SSIM all | SSIM in mask | SSIM holes | realism (FD) "
            "| frames/s | speed-up vs T_c | latents only: speed-up |\n|---|" + "---:|" * 10 + "\n")
    ref = results.get(reference) or {}
    lines = []
    for r in ROWS:
        if r in missing:
            lines.append(f"| {labels[r]} | missing: {missing[r]} |" + " |" * 9)
            continue
        v = results[r]
        cells = [f"{v[f'psnr/{g}']:.2f}" for g in REGIONS] + [f"{v[f'ssim/{g}']:.4f}" for g in REGIONS]
        cells.append(f"{v['realism']:.2f}")
        s = v["batch_s"]
        cells.append("-" if s is None else f"{batch * frames_per_clip / s:.1f}")
        for key in ("batch_s", "latent_s"):
            cells.append("-" if v[key] is None or ref.get(key) is None else f"{ref[key] / v[key]:.1f}x")
        lines.append(f"| {labels[r]} | " + " | ".join(cells) + " |")
    return head + "\n".join(lines) + "\n"


def block_table(results: dict, labels: dict | None = None) -> str:
    """PSNR (all pixels) per STAR block, one line per evaluated row: where a causal generator drifts.
    Empty for one-block clips."""
    labels = {**LABELS, **(labels or {})}
    rows = [r for r in ROWS if r in results]
    n = len(results[rows[0]]["psnr_by_block"]) if rows else 0
    if n < 2:
        return ""
    head = "| method | " + " | ".join(f"block {b + 1}" for b in range(n)) + " |\n|---|" + "---:|" * n + "\n"
    return ("\nPSNR all (dB) by STAR block (3 latent frames; block 1 holds 9 frames, the others 12):\n\n" + head
            + "".join(f"| {labels[r]} | " + " | ".join(f"{v:.2f}" for v in results[r]["psnr_by_block"]) + " |\n"
                      for r in rows))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, help="latent dataset folder (star_latents_<name>)")
    p.add_argument("--pixels", default="", help="pixel dataset with target_rgb (default: the one the metadata names)")
    p.add_argument("--vae", required=True, help="tiny VAE export folder (params + vae.json)")
    for name in STUDENTS:
        p.add_argument(f"--{name}", default="", help=f"{LABELS[name]}: a workdir or export")
    p.add_argument("--teacher_c", default="", help="T_c: a teacher workdir or export")
    p.add_argument("--teacher_m", default="", help="T_m: a teacher workdir or export")
    p.add_argument("--flat_pixels", default="", help="the same worlds' flat-shaded pixel dataset (flat_truth row)")
    p.add_argument("--split", default="test")
    p.add_argument("--num", type=int, default=32)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--student_steps", default="1000,750,500,250", help="the students' timesteps, before warping")
    p.add_argument("--student_shift", type=float, default=5.0)
    p.add_argument("--teacher_steps", type=int, default=48)
    p.add_argument("--cfg_scale", type=float, default=None,
                   help="T_c's classifier-free guidance on the text, v_u + s (v_c - v_u), as distillation uses it; "
                        "default: the DMD / JDMD run's config.distill.cfg_scale, else 4")
    p.add_argument("--real_cfg_scale", type=float, default=None,
                   help="T_m's CFG scale, the same convention (default: the run's config.distill.real_cfg_scale, "
                        "else 1: none)")
    for old in ("guidance", "real_guidance"):  # the older x_c + g (x_c - x_u) flags: refused, naming the new ones
        p.add_argument(f"--{old}", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--repeats", type=int, default=2, help="timed calls per generator (after the evaluation's)")
    p.add_argument("--label", action="append", default=[], metavar="ROW=NAME",
                   help="rename a row in the tables, e.g. --label 'dmd=JDMD, 2-block clips' (repeatable)")
    p.add_argument("--out", default="", help="results file (default benchmarks/results/student_quality.md)")
    a = p.parse_args(argv)
    labels = {}
    for item in a.label:
        row, sep, name = item.partition("=")
        if not sep or row.strip() not in LABELS or not name.strip():
            raise InputError(f"--label {item!r}: expected ROW=NAME with ROW one of {', '.join(LABELS)}")
        labels[row.strip()] = name.strip()
    from star_jax.diffusion.guidance import check_cfg_scale, renamed_guidance

    for old, new in (("guidance", "cfg_scale"), ("real_guidance", "real_cfg_scale")):
        if getattr(a, old) is not None:
            raise InputError(renamed_guidance(f"--{old}", f"--{new}"))
    from star_jax.inference.conditions import get_conditioning
    from star_jax.train import records

    t0 = time.perf_counter()
    info, latents, pixels, pixels_dir, (vae, vae_params, fingerprint) = open_eval_data(a.data, a.pixels, a.split,
                                                                                        a.vae)
    conv = get_conditioning((info.metadata.get("conditioning") or {}).get("name") or "inspatio-release")
    n_lat, h, w, _ = info.features["target"][0]
    text_len = info.features["text"][0][0]
    steps = tuple(int(s) for s in a.student_steps.split(","))

    s_c, s_m = distill_cfg_scales([a.jdmd, a.dmd])
    s_c = a.cfg_scale if a.cfg_scale is not None else (4.0 if s_c is None else s_c)
    s_m = a.real_cfg_scale if a.real_cfg_scale is not None else (1.0 if s_m is None else s_m)
    scales = {"teacher_c": check_cfg_scale(s_c, "--cfg_scale"), "teacher_m": check_cfg_scale(s_m, "--real_cfg_scale")}
    generators, missing, facts = {}, {}, []
    absent = lambda path: "not given" if not path else f"{path} does not exist"  # noqa: E731
    teachers = {}
    for name in ("teacher_c", "teacher_m"):
        path = getattr(a, name)
        if path and os.path.exists(path):
            t = teachers[name] = load_teacher(path)
            generators[name] = (teacher_sampler(t["dit"], t["shift"], a.teacher_steps, scales[name]), t["params"])
            facts.append(f"{name}: {path}, step {t['facts'].get('step')}, {t['facts'].get('params')} params, "
                         f"Euler {a.teacher_steps} steps, shift {t['shift']:g}, CFG v_u + s (v_c - v_u) with s = "
                         f"{scales[name]:g} (as distillation uses it)")
        else:
            missing[name] = absent(path)
    if "teacher_m" in teachers:
        t = teachers["teacher_m"]
        generators["teacher_m_free"] = (teacher_sampler(t["dit"], t["shift"], a.teacher_steps, scales["teacher_m"],
                                                        True, conv.mask_hole), t["params"])
    else:
        missing["teacher_m_free"] = missing["teacher_m"]
    fallback = teachers["teacher_c"]["dit"].cfg if "teacher_c" in teachers else None
    student_cfg = None
    for name in STUDENTS:
        path = getattr(a, name)
        ckpt = os.path.join(path, "checkpoints")
        if path and os.path.exists(os.path.join(path, "run.json")) and not (
                os.path.isdir(ckpt) and any(d.isdigit() for d in os.listdir(ckpt))):  # a run just started
            missing[name] = f"{path}: no finished checkpoint yet"
        elif path and os.path.exists(path):
            s = load_student(path, fallback, n_lat, (h, w), text_len)
            student_cfg = student_cfg or s["cfg"]
            generators[name] = (student_sampler(s["cfg"], steps, a.student_shift), s["params"])
            facts.append(f"{name}: {path}, step {s['facts'].get('step', 'n/a (export)')}")
        else:
            missing[name] = absent(path)
    student_cfg = student_cfg or fallback
    if student_cfg is not None:
        generators = {"untrained": (student_sampler(student_cfg, steps, a.student_shift),
                                    random_student(student_cfg, a.seed, n_lat, (h, w), text_len)), **generators}
    else:
        missing["untrained"] = "no student or T_c to take the network's config from"
    generators = {r: generators[r] for r in GENERATORS if r in generators}  # the table's order

    flat = None
    if a.flat_pixels and os.path.exists(a.flat_pixels):
        flat = records.open_split(a.flat_pixels, a.split)
        facts.append(f"flat_truth: {a.flat_pixels} (split {a.split!r}), matched by example_id")
    else:
        missing["flat_truth"] = absent(a.flat_pixels)
    results, n = evaluate(latents, pixels, vae, vae_params, generators, a.num, a.batch, a.seed, a.repeats, flat)
    frames = int(info.features["render_valid"][0][0])
    name = info.name.removeprefix("star_latents_")
    facts = [f"dataset: {info.folder} (split {a.split!r}, {n} clips of {frames} frames at {h * vae.cfg.spatial_factor}"
             f"x{w * vae.cfg.spatial_factor})" + (f"; targets from {pixels_dir}" if pixels is not None else ""),
             f"students: causal rollout, blocks of 3 latent frames, timesteps {list(steps)} warped with shift "
             f"{a.student_shift:g}; untrained = the student network at random init (seed {a.seed})", *facts,
             f"VAE: {a.vae}; PSNR (dB) / SSIM per clip, averaged over clips; in mask = render_valid, holes = its "
             f"complement; realism: Frechet distance of patch texture / colour statistics "
             f"(star_jax.evaluation.realism) vs the split's true target frames, lower is better",
             f"speed: latent generation + decode of a batch of {a.batch} clips, best of {a.repeats} (compiled), on "
             f"{jax.devices()[0].device_kind} ({os.cpu_count()} cores, shared)",
             f"evaluation took {time.perf_counter() - t0:.0f} s"]
    text = (f"# Student quality: {name}\n\n" + table(results, frames, a.batch, missing, labels=labels)
            + block_table(results, labels) + "\n"
            + "".join(f"- {x}\n" for x in facts))
    sys.stdout.write(text)
    write_results(text, a.out, "student_quality.md")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
