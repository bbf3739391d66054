"""The causal 4-step student by Self-Forcing DMD (jdmd=0) or JDMD (jdmd=w > 0): the generator
(block-causal, rolled out with the inference code), the teachers T_c (conditional, with CFG) and
T_m (real appearance, render dropped), a critic per teacher (star_jax/train/distill.py).

Launch (repository root):
    python -m star_jax.train --config experiments/train_student.py:variant=tiny,runlocal     # synthetic smoke
    python -m star_jax.train --config experiments/train_student.py:variant=tiny,data=/work/data/latents21_tex,\
teacher=/work/runs/s21/teacher_flat_export,init=/work/runs/s21/student_ode --workdir /work/runs/s21/student_dmd
    ... ,real_teacher=/work/runs/s21/teacher_tex_export,jdmd=0.5 --workdir /work/runs/s21/student_jdmd

Needs: a teacher (`teacher=`: a teacher workdir or export; the `runlocal` smoke run trains none
and starts every network from the same random init, which exercises the machinery only).
`init=` is the generator's start (the ODE init of experiments/train_ode.py; default: T_c's
weights). `data=DIR` is a latent dataset (`star_latents_<name>`, split "train"): the student
needs only its conditions (ref / render / mask / text), never its targets.
Self-Forcing's recipe (REFERENCE.md) at 1.3B: lr 2e-6 / critic 4e-7, betas (0, 0.999), constant
lr, clip 10, gen_every 5, EMA 0.99, T_c's CFG weight 4 (`cfg_scale=4`: x_u + 4 (x_c - x_u), the
convention of star_jax/diffusion/guidance.py; `real_cfg_scale=1`: T_m unguided). The tiny variant
trains from a teacher that is itself small and quickly trained, with larger learning rates and a
generator update every second iteration (gen_every=2) to fit a CPU budget.
Rerunning the same command resumes from the newest checkpoint.
"""

from __future__ import annotations

import ml_collections

from experiments.common import model_config, parse_arg
from star_jax import sharding as sh
from star_jax.diffusion.guidance import renamed_guidance

# arguments of the older x_c + g (x_c - x_u) convention -> their new names
_RENAMED = {"guidance": "cfg_scale", "real_guidance": "real_cfg_scale"}

# per variant: pixels, latent frames, batch, generator / critic learning rates, generator updates
# per critic update, EMA decay
_SIZES = {
    "tiny": dict(height=96, width=160, frames=6, batch=4, lr=3e-5, critic_lr=1e-4, gen_every=2, ema=0.99,
                 text_len=16),
    "1.3B": dict(height=480, width=832, frames=21, batch=64, lr=2e-6, critic_lr=4e-7, gen_every=5, ema=0.99,
                 text_len=512),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    for item in filter(None, (arg or "").split(",")):
        old = item.partition("=")[0].strip()
        if old in _RENAMED:
            raise ValueError("experiments/train_student.py: argument " + renamed_guidance(old, _RENAMED[old]))
    a = parse_arg(arg, variant="tiny", steps=0, batch=0, lr=0.0, critic_lr=0.0, frames=0, height=0, width=0,
                  mesh="1x-1x1", examples=64, seed=0, workdir="", dtype="", data="", teacher="", real_teacher="",
                  jdmd=0.0, init="", cfg_scale=4.0, real_cfg_scale=1.0, gen_every=0, attention="", remat="",
                  every=0, runlocal=False)
    if a.variant not in _SIZES:
        raise ValueError(f"experiments/train_student.py: variant must be one of {sorted(_SIZES)}, got {a.variant!r}")
    size = _SIZES[a.variant]
    height, width, frames = a.height or size["height"], a.width or size["width"], a.frames or size["frames"]
    if a.runlocal:  # a quick look at the machinery: small clips, a few iterations
        height, width = a.height or 32, a.width or 48
    c = ml_collections.ConfigDict()
    c.task = "distill"
    c.model = model_config(a.variant)
    big = a.variant != "tiny"
    c.model.dit.update(in_dim=36, dtype=a.dtype or ("bfloat16" if big else "float32"), param_dtype="float32",
                       attention=a.attention or ("blockwise" if big else "xla"),
                       remat=a.remat or ("nothing_saveable" if big else "none"))
    c.data = dict(source="records" if a.data else "synthetic", path=a.data, split="train",
                  num_examples=a.examples, latent_frames=frames, latent_hw=(height // 8, width // 8),
                  text_len=size["text_len"], seed=a.seed, max_shift=2, conditioning="inspatio-release")
    c.distill = dict(teacher=a.teacher or ("random" if a.runlocal else ""), real_teacher=a.real_teacher,
                     jdmd_weight=a.jdmd, cfg_scale=a.cfg_scale, real_cfg_scale=a.real_cfg_scale,
                     steps=(1000, 750, 500, 250), shift=5.0, dmd_shift=5.0, min_sigma=0.02, max_sigma=0.98,
                     gen_every=a.gen_every or size["gen_every"])
    steps = 6 if a.runlocal else (a.steps or 600)
    c.run = dict(num_steps=steps, batch_size=a.batch or (2 if a.runlocal else size["batch"]), seed=a.seed,
                 workdir=a.workdir or f"outputs/train/student_{a.variant}", shuffle=True, tensorboard=True,
                 init_from=a.init,
                 # runlocal: compile ~3x faster on a CPU (compilation dominates a 6-step run)
                 compiler_options={"xla_backend_optimization_level": 0} if a.runlocal else {})
    adam = dict(warmup_steps=0, decay="constant", b1=0.0, b2=0.999, eps=1e-8, weight_decay=0.01, clip_norm=10.0,
                grad_accum=1)
    c.optim = dict(lr=a.lr or size["lr"], **adam)
    c.critic_optim = dict(lr=a.critic_lr or size["critic_lr"], **adam)
    c.ema = dict(decay=size["ema"], start_step=20 if not big else 200)  # in generator updates
    c.mesh = dict(shape=tuple(int(v) for v in a.mesh.split("x")), param_rules=sh.DEFAULT_RULES,
                  activation_rules=sh.ACTIVATION_RULES)
    c.checkpoint = dict(every_steps=a.every or (3 if a.runlocal else 100), max_to_keep=3, async_save=True)
    c.lock()
    return c
