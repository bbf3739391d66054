"""Trained networks -> inference folders. The teacher: `dit/` (orbax params), `star_model.json`
(its conditioning convention) and `teacher.json` (the run's config, step, training time), a
folder that `run.init_from` and `benchmarks/teacher_quality.py --teacher` read. The VAE: an orbax
params folder (the format of `storage.save_params`, what `load_star_model(vae=...)` restores)
holding a `vae.json` beside the arrays: every VAEConfig field, the latent statistics measured
after training among them.

    export_vae("runs/vae_tiny", "ckpt/vae", cfg, (mean, std))  # a train workdir: its newest EMA params
    cfg = read_vae_json("ckpt/vae/vae.json")                     # VAEConfig (CheckpointError if bad)
    python -m star_jax.checkpoint.export vae --workdir runs/vae_tiny --out ckpt/vae
    export_teacher("runs/teacher_tiny", "ckpt/teacher")        # dit/ + star_model.json + teacher.json
    python -m star_jax.checkpoint.export teacher --workdir runs/teacher_tiny --out ckpt/teacher
    export_student("runs/student_jdmd", "runs/vae_tiny_export", "star_jax/assets/tiny_model")
    python -m star_jax.checkpoint.export student --workdir runs/student_jdmd --vae runs/vae_tiny_export \
        --out star_jax/assets/tiny_model    # a model folder (star_jax.inference.model): dit/ vae/ star_model.json

The student export is a MODEL FOLDER, everything inference needs: dit/ (the student's EMA params),
vae/ (a copy of the VAE export, vae.json included), star_model.json (format 2: conditioning,
variant, the DiT's architecture, training resolution and latent frames, sampler, the text
encoder's id, a description). `--dit FOLDER` exports an orbax DiT params folder instead of a
workdir's newest checkpoint (e.g. a teacher export's dit/, run block-causal as a stand-in).

The vae / teacher commands read the run's config from <workdir>/run.json, measures the per-channel mean / std
of the posterior means on `--stats_videos` training videos, and writes the folder atomically.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from star_jax.checkpoint.storage import CheckpointError, restore_params, save_params
from star_jax.io import files
from star_jax.models.variants import VAEConfig

VAE_JSON = "vae.json"
VAE_JSON_FORMAT = 1
# what save_params (orbax) writes into a params folder, plus vae.json: an export replaces only that
EXPORT_NAMES = ("_CHECKPOINT_METADATA", "_METADATA", "_sharding", "manifest.ocdbt", "ocdbt.process_0", "d",
                "array_metadatas", "descriptor", "commit_success.txt", VAE_JSON)


def newest_state(workdir: str) -> tuple[dict, int]:
    """(the train state as a dict of arrays, its step) of the newest checkpoint under
    <workdir>/checkpoints."""
    ckpt = os.path.join(workdir, "checkpoints")
    steps = sorted(int(s) for s in os.listdir(ckpt) if s.isdigit()) if os.path.isdir(ckpt) else []
    if not steps:
        raise CheckpointError(f"{ckpt}: expected train checkpoints (<step>/state folders), found none")
    return restore_params(os.path.join(ckpt, str(steps[-1]), "state"), what="vae"), steps[-1]


def train_params(workdir: str, ema: bool = True) -> tuple[Any, int]:
    """(params, step) of the newest checkpoint under <workdir>/checkpoints: the EMA params when
    the run kept them (and `ema`), else the raw ones."""
    state, step = newest_state(workdir)
    params = state.get("ema_params") if ema else None
    return (params if params is not None else state["params"]), step


def vae_config_dict(cfg: VAEConfig) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def export_vae(workdir_or_params, out_dir: str, cfg: VAEConfig, stats=None, info: dict | None = None) -> str:
    """Writes `out_dir`: the params (a train workdir's newest EMA params, or a params tree) as an
    orbax folder and vae.json with `cfg`, its latents_mean / latents_std replaced by `stats`
    ((z_dim,) mean, (z_dim,) std) when given. `info` (e.g. steps, data) is stored under
    "training". Returns the folder's absolute path."""
    import jax

    from star_jax.checkpoint.vae import check_vae_against_model

    step = None
    if isinstance(workdir_or_params, (str, os.PathLike)):
        params, step = train_params(os.fspath(workdir_or_params))
    else:
        params = workdir_or_params
    check_vae_against_model(params, cfg)
    if stats is not None:
        mean, std = (np.asarray(s, np.float64).reshape(-1) for s in stats)
        if mean.shape != (cfg.z_dim,) or std.shape != (cfg.z_dim,) or not np.all(std > 0):
            raise CheckpointError(f"VAE export: latent stats must be ({cfg.z_dim},) means and positive stds, got "
                                  f"{mean.shape}, {std.shape}")
        cfg = dataclasses.replace(cfg, latents_mean=tuple(map(float, mean)), latents_std=tuple(map(float, std)))
    meta = {"format": VAE_JSON_FORMAT, "config": vae_config_dict(cfg),
            "training": {**(info or {}), **({"step": step} if step is not None else {})}}
    params = jax.tree_util.tree_map(np.asarray, params)
    with files.staged_folder(out_dir, EXPORT_NAMES, create=False) as d:
        save_params(params, d)
        files.write_json(os.path.join(d, VAE_JSON), meta)
    return os.path.abspath(out_dir)


def read_vae_json(path: str, **overrides) -> VAEConfig:
    """The VAEConfig a vae.json records (`overrides`, e.g. dtype, replace fields). CheckpointError
    naming the file and the field when it is unreadable or a field is missing, unknown or
    ill-typed."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON ({type(e).__name__}: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != VAE_JSON_FORMAT or not isinstance(meta.get("config"), dict):
        found = meta.get("format") if isinstance(meta, dict) else type(meta).__name__
        raise CheckpointError(f"{path}: expected {{'format': {VAE_JSON_FORMAT}, 'config': {{VAEConfig fields}}}}, "
                              f"found format {found!r}")
    fields = {f.name: f for f in dataclasses.fields(VAEConfig)}
    given = meta["config"]
    unknown = sorted(set(given) - set(fields))
    missing = sorted(set(fields) - set(given) - set(overrides))
    if unknown or missing:
        raise CheckpointError(f"{path}: config fields must be VAEConfig's; unknown {unknown}, missing {missing}")
    values = {}
    for name, value in given.items():
        default = getattr(VAEConfig(), name)
        if isinstance(default, tuple):
            ok = isinstance(value, list) and all(isinstance(v, type(default[0])) or
                                                 (isinstance(default[0], float) and isinstance(v, int)) for v in value)
            if ok and name in ("latents_mean", "latents_std"):
                ok = len(value) == given.get("z_dim") and all(np.isfinite(value)) and (
                    name == "latents_mean" or all(v > 0 for v in value))
            value = tuple(value) if ok else value
        else:
            ok = isinstance(value, type(default)) and not (isinstance(value, bool) != isinstance(default, bool))
        if not ok:
            raise CheckpointError(f"{path}: config.{name}: expected {type(default).__name__} like {default!r}"
                                  f"{' (z_dim entries, std > 0)' if name.startswith('latents') else ''}, found "
                                  f"{value!r}")
        values[name] = value
    return VAEConfig(**{**values, **overrides})


def folder_vae_config(folder: str, **overrides) -> VAEConfig | None:
    """The VAEConfig recorded in `folder`/vae.json, or None when the folder has no vae.json."""
    path = os.path.join(folder, VAE_JSON)
    return read_vae_json(path, **overrides) if os.path.exists(path) else None


TEACHER_JSON = "teacher.json"
TEACHER_JSON_FORMAT = 1
TEACHER_NAMES = ("dit", "star_model.json", TEACHER_JSON)


def _run_config(workdir: str) -> dict:
    try:
        with open(os.path.join(workdir, "run.json"), encoding="utf-8") as f:
            return json.load(f)["config"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{workdir}/run.json: cannot read the run's config ({type(e).__name__}: {e})") from e


def export_teacher(workdir: str, out_dir: str, ema: bool = True) -> str:
    """A teacher train workdir -> `out_dir` (written atomically; a previous export there is
    replaced): dit/ (the newest checkpoint's EMA params, or raw ones without EMA or with
    ema=False, as an orbax folder), star_model.json (the conditioning convention of the run's
    config.data, `write_star_model_json`) and teacher.json: {"format": 1, "config": the run's
    config, "dit": its DiTConfig fields, "step", "params": "EMA" | "raw", "train_wall_s": the sum
    of the step times in metrics.jsonl up to that step}. Returns the folder's absolute path."""
    import jax

    from star_jax.checkpoint.convert import check_against_model
    from star_jax.inference.conditions import DEFAULT_CONDITIONING
    from star_jax.inference.model import write_star_model_json
    from star_jax.models.variants import DiTConfig
    from star_jax.train.config import section
    from star_jax.train.metrics import read_metrics

    config = _run_config(workdir)
    if config.get("task") != "teacher":
        raise CheckpointError(f"{workdir}/run.json: a teacher export needs a run of task 'teacher', found "
                              f"{config.get('task')!r}")
    cfg = section(DiTConfig, config.get("model", {}), "dit", "config.model")
    params, step = train_params(workdir, ema)
    check_against_model(params, cfg)
    state_kind = "EMA" if ema and (config.get("ema") or {}).get("decay", 0) > 0 else "raw"  # init_state keeps EMA iff decay > 0
    wall = float(sum(r["step_time_s"] for r in read_metrics(workdir) if r["step"] <= step))
    meta = {"format": TEACHER_JSON_FORMAT, "config": config, "dit": dataclasses.asdict(cfg), "step": step,
            "params": state_kind, "train_wall_s": wall, "workdir": os.path.abspath(workdir)}
    params = jax.tree_util.tree_map(np.asarray, params)
    with files.staged_folder(out_dir, TEACHER_NAMES, create=False) as d:
        save_params(params, os.path.join(d, "dit"))
        write_star_model_json(d, config.get("data", {}).get("conditioning", DEFAULT_CONDITIONING))
        files.write_json(os.path.join(d, TEACHER_JSON), meta)
    return os.path.abspath(out_dir)


STUDENT_NAMES = ("dit", "vae", "star_model.json")
DEFAULT_DESCRIPTION = (
    "A tiny STAR model trained on CPU, for demonstration: a ~150K-parameter block-causal DiT (2 layers, "
    "dim 64) that generates each 3-latent-frame block in 4 steps, and a ~0.9M-parameter causal VAE "
    "(8x spatial, 4x temporal). It was trained only on procedural courtyard worlds (boxes and spheres, "
    "96x160, 21-frame clips) rendered by data_pipelines.worlds. On such worlds it reproduces the "
    "reference's warped content and fills holes with plausible blurry surfaces; on real video it has "
    "never seen real footage: expect blurred, smoothed views that follow the render, and made-up, "
    "texture-less content in the holes.")


def _student_params(workdir: str, ema: bool) -> tuple[Any, int, str, dict]:
    """(generator params, step, "EMA" | "raw", the run's config) of a student train workdir: the
    generator's EMA when the run kept one (and `ema`), else its trained params (a distillation
    state holds them beside the critics', under "generator"; an ODE-init state holds them alone)."""
    config = _run_config(workdir)
    state, step = newest_state(workdir)
    params, kind = state.get("ema_params") if ema else None, "EMA"
    if not params:
        params, kind = state["params"], "raw"
    if isinstance(params, dict) and "generator" in params:
        params = params["generator"]
    return params, step, kind, config


def export_student(source: str, vae_dir: str, out_dir: str, variant: str = "tiny", ema: bool = True,
                   description: str = DEFAULT_DESCRIPTION, resolution_hw=(96, 160), latent_frames: int = 6,
                   steps=(1000, 750, 500, 250), shift: float = 5.0, conditioning: str | None = None,
                   info: dict | None = None) -> str:
    """A student -> the model folder `out_dir` (module docstring), written atomically (a previous
    export there is replaced). `source`: a student train workdir (run.json + checkpoints/; its
    newest EMA params, else its generator's; the training resolution, latent frames, sampler and
    conditioning then come from the run's config, not the arguments) or an orbax DiT params
    folder. `vae_dir`: a VAE export (orbax + vae.json), copied. The DiT params are checked against
    `variant`, the VAE against its vae.json, before anything is written. `info` joins the card's
    "training" record. Returns the folder's path."""
    import shutil

    import jax

    from star_jax.checkpoint.convert import check_tree_shapes, dit_abstract
    from star_jax.checkpoint.vae import check_vae_folder
    from star_jax.inference.conditions import DEFAULT_CONDITIONING, get_conditioning
    from star_jax.inference.model import ARCH_FIELDS, ModelCard, check_model_folder
    from star_jax.models.variants import dit_variant
    from star_jax.text import prompt_encoder

    cfg = dit_variant(variant)
    training, latent_hw = dict(info or {}), None
    if not os.path.isdir(source):
        raise CheckpointError(f"{source}: no such folder (expected a student train workdir, run.json + "
                              f"checkpoints/, or an orbax DiT params folder)")
    if os.path.exists(os.path.join(source, "run.json")) or os.path.isdir(os.path.join(source, "checkpoints")):
        params, step, kind, config = _student_params(source, ema)
        training.update(workdir=os.path.abspath(source), step=step, params=kind, task=config.get("task"))
        data, distill = config.get("data") or {}, config.get("distill") or config.get("ode") or {}  # its sampler
        conditioning = conditioning or data.get("conditioning")
        latent_hw = data.get("latent_hw")
        latent_frames = data.get("latent_frames", latent_frames)
        steps, shift = distill.get("steps", steps), distill.get("shift", shift)
        training.update({k: distill[k] for k in ("jdmd_weight", "teacher", "real_teacher") if k in distill})
        if config.get("distill"):  # T_c's / T_m's CFG scales (an older run's `guidance` converted)
            from star_jax.train.distill import recorded_cfg_scales

            training["cfg_scale"], training["real_cfg_scale"] = recorded_cfg_scales(config["distill"])
        where = os.path.join(source, "checkpoints", str(step))
    else:
        params = restore_params(source, what="dit")
        training.setdefault("dit_source", os.path.abspath(source))
        where = source
    check_tree_shapes(params, dit_abstract(cfg), f"{where}: the student's DiT params do not match the {variant} "
                      f"variant")
    vae_cfg = folder_vae_config(vae_dir)
    if vae_cfg is None:
        raise CheckpointError(f"{os.path.join(vae_dir, VAE_JSON)}: expected a VAE export's config (python -m "
                              f"star_jax.checkpoint.export vae), found no such file")
    check_vae_folder(vae_dir, vae_cfg)
    if latent_hw:  # a workdir's clips: latents x the VAE's stride
        resolution_hw = [vae_cfg.spatial_factor * int(x) for x in latent_hw]
    training.setdefault("vae_source", os.path.abspath(vae_dir))
    training.setdefault("what", "trained tiny STAR student")
    arch = {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items() if k in ARCH_FIELDS}
    card = ModelCard(get_conditioning(conditioning or DEFAULT_CONDITIONING).name, variant, arch,
                     tuple(int(x) for x in resolution_hw), int(latent_frames), tuple(int(x) for x in steps),
                     float(shift), prompt_encoder(variant).id, description, training)
    params = jax.tree_util.tree_map(np.asarray, params)
    with files.staged_folder(out_dir, STUDENT_NAMES, create=False) as d:
        save_params(params, os.path.join(d, "dit"))
        top = os.path.abspath(vae_dir)  # the export's own files only (a stray file there stays behind)
        shutil.copytree(vae_dir, os.path.join(d, "vae"), ignore=lambda folder, names: [
            n for n in names if os.path.abspath(folder) == top and n not in EXPORT_NAMES])
        files.write_json(os.path.join(d, "star_model.json"), card.to_json())
        check_model_folder(d, variant, conditioning=card.conditioning)  # the folder reads back as written
    return os.path.abspath(out_dir)


def _export_vae_command(workdir: str, out: str, stats_videos: int, ema: bool) -> str:
    import jax

    from star_jax.train import vae as vae_task
    from star_jax.train.config import section

    try:
        with open(os.path.join(workdir, "run.json"), encoding="utf-8") as f:
            config = json.load(f)["config"]
    except (OSError, ValueError, KeyError) as e:
        raise CheckpointError(f"{workdir}/run.json: cannot read the run's config ({type(e).__name__}: {e})") from e
    cfg = vae_task.vae_config(config)
    data = section(vae_task.VAEDataConfig, config, "data")
    train = section(vae_task.VAETrainConfig, config, "vae_train")
    params, step = train_params(workdir, ema)
    info = {"workdir": os.path.abspath(workdir), "ema": ema,
            "data": {k: data.__dict__[k] for k in ("source", "path", "split")}}
    if not train.train_encoder and train.init_from:
        # decoder-only fine-tuning: the start's encoder side and latent statistics, exactly (the EMA
        # of constant params may move them by an ulp), so every latent a DiT was fit to stays the same
        start = restore_params(train.init_from, what="vae")
        params = {k: start[k] if k in vae_task.ENCODER_PARAMS else v for k, v in params.items()}
        start_cfg = read_vae_json(os.path.join(train.init_from, VAE_JSON))
        stats = (start_cfg.latents_mean, start_cfg.latents_std)
        info.update(encoder_from=os.path.abspath(train.init_from))
    else:
        source = vae_task.make_source(data)
        count = min(stats_videos, len(source))
        idx = np.linspace(0, len(source) - 1, count).round().astype(int)
        videos = np.stack([source[int(i)]["video"] for i in idx])
        stats = vae_task.latent_stats(vae_task.WanVAE(cfg), jax.device_put(params), videos)
        info.update(stats_videos=int(count))
    return export_vae(params, out, cfg, stats, {**info, "step": step})


def main(argv=None) -> None:
    """The export command (module docstring); unusable inputs raise CheckpointError / InputError."""
    from star_jax.cli import ArgumentParser

    p = ArgumentParser(prog="python -m star_jax.checkpoint.export", description="export trained networks for inference")
    sub = p.add_subparsers(dest="what", required=True)
    v = sub.add_parser("vae", help="a VAE train workdir -> orbax params folder + vae.json")
    v.add_argument("--workdir", required=True, help="the training run's folder (run.json, checkpoints/)")
    v.add_argument("--out", required=True, help="the folder to write (a previous export there is replaced)")
    v.add_argument("--stats_videos", type=int, default=256, help="training videos the latent stats are measured on")
    v.add_argument("--no_ema", action="store_true", help="export the raw params, not the EMA")
    t = sub.add_parser("teacher", help="a teacher train workdir -> dit/ + star_model.json + teacher.json")
    t.add_argument("--workdir", required=True, help="the training run's folder (run.json, checkpoints/)")
    t.add_argument("--out", required=True, help="the folder to write (a previous export there is replaced)")
    t.add_argument("--no_ema", action="store_true", help="export the raw params, not the EMA")
    s = sub.add_parser("student", help="a student -> a model folder: dit/ + vae/ + star_model.json")
    src = s.add_mutually_exclusive_group(required=True)
    src.add_argument("--workdir", help="the student training run's folder (run.json, checkpoints/)")
    src.add_argument("--dit", help="an orbax DiT params folder instead (e.g. a teacher export's dit/)")
    s.add_argument("--vae", required=True, help="the VAE export (orbax params + vae.json)")
    s.add_argument("--out", required=True, help="the model folder to write (a previous export there is replaced)")
    s.add_argument("--variant", default="tiny")
    s.add_argument("--resolution", default="96x160", help="HxW the model was trained at")
    s.add_argument("--latent_frames", type=int, default=6, help="latent frames of its training clips")
    s.add_argument("--summary", default="trained tiny STAR student", help="one line: what these weights are")
    s.add_argument("--description", default=DEFAULT_DESCRIPTION, help="a paragraph: what the model is and can do "
                   "(default: the tiny student's)")
    s.add_argument("--no_ema", action="store_true", help="export the raw params, not the EMA")
    a = p.parse_args(argv)
    if a.what == "student":
        try:
            hw = tuple(int(x) for x in a.resolution.lower().split("x"))
            assert len(hw) == 2 and min(hw) > 0
        except (ValueError, AssertionError):
            raise CheckpointError(f"--resolution: expected HxW like 96x160, found {a.resolution!r}") from None
        out = export_student(a.workdir or a.dit, a.vae, a.out, a.variant, not a.no_ema, a.description,
                             resolution_hw=hw, latent_frames=a.latent_frames, info={"what": a.summary})
        print(f"exported {out}")
        return
    if a.what == "teacher":
        print(f"exported {export_teacher(a.workdir, a.out, not a.no_ema)}")
        return
    print(f"exported {_export_vae_command(a.workdir, a.out, a.stats_videos, not a.no_ema)}")


if __name__ == "__main__":
    import sys

    from star_jax import cli

    cli.main(main, sys.argv[1:])
