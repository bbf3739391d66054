"""The STAR teacher: a bidirectional DiT (in_dim 36) trained by flow matching on source -> target
pairs, conditioned as inference conditions the generator (`star_jax.inference.conditions`).

One sequence of 2n latent frames per example, full attention:
    frames 0 .. n-1    reference latents at t = 0, channels [ref (16) | zeros (20)]   (the context)
    frames n .. 2n-1   the target at noise level s, [x_s (16) | mask (4) | render (16)], t = 1000 s
Reference frame i and target frame i show the same time; the loss is on the target frames only.
This is the context / block layout of `inference.rollout.star_block` (context at t = 0 with zero
conditioning channels, then the noisy block with its mask and render), made bidirectional over
a whole clip. Condition dropout: the text (for classifier-free guidance) and, optionally, the
render and mask are zeroed per example.

Data (config.data.source): "synthetic" (`SyntheticStarSource`, needs nothing on disk) or
"records": a latent dataset `star_latents_<name>` (the contract of `star_jax.train.records`:
target / ref / render (n, h, w, 16) normalised latents, mask (n, h, w, 4), text (text_len,
text_dim)) at config.data.path, split config.data.split; the convention its metadata names and
its first example are checked against the config's before training.

    task = make_teacher_task(config)                      # config.task = "teacher"
    latents = sample_teacher(dit, params, cond, text, rng, num_steps=50, cfg_scale=3.0)
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.diffusion.flow_matching import (
    FlowMatchingConfig,
    drop_condition,
    drop_mask,
    euler_sample,
    flow_matching_loss,
)
from star_jax.diffusion.guidance import check_cfg_scale
from star_jax.errors import InputError
from star_jax.inference.conditions import DEFAULT_CONDITIONING, StarConditions, get_conditioning
from star_jax.models.dit import WanDiT
from star_jax.models.flops import dit_flops
from star_jax.models.variants import DiTConfig
from star_jax.train.config import section
from star_jax.train.synthetic import LATENT_CHANNELS, MASK_CHANNELS, SyntheticStarSource
from star_jax.train.task import Task

SOURCES = ("synthetic", "records")
FIELDS = ("target", "ref", "render", "mask", "text")


@dataclasses.dataclass(frozen=True)
class TeacherDataConfig:
    """source: "synthetic" or "records" (a latent dataset folder `path`, its split `split`; see
    the module docstring). Example shapes: `latent_frames` n, `latent_hw` (h, w) latent cells,
    `text_len` text rows (the records must have them). num_examples, max_shift: synthetic only."""

    source: str = "synthetic"
    path: str = ""
    split: str = "train"
    num_examples: int = 256
    latent_frames: int = 3
    latent_hw: tuple[int, int] = (4, 4)
    text_len: int = 4
    seed: int = 0
    max_shift: int = 1
    # the conditioning convention (star_jax.inference.conditions): the mask latent's values for
    # holes / rendered cells (render dropout fills the mask with the hole value)
    conditioning: str = DEFAULT_CONDITIONING

    def __post_init__(self):
        if self.source not in SOURCES:
            raise InputError(f"config.data.source: expected one of {SOURCES}, got {self.source!r}")
        if self.source == "records" and not self.path:
            raise InputError("config.data.path: the records source needs the latent dataset's folder, got ''")
        try:
            get_conditioning(self.conditioning)
        except InputError as e:
            raise InputError(f"config.data.conditioning: {e}") from e


class TeacherRecords:
    """A random-access source (`len`, `[i]`) of the teacher's fields (FIELDS) of the examples of
    `source` (e.g. `records.open_split(path, split)`, whose examples carry more fields).
    Subclasses name other `fields` (and the `task` that needs them, for errors)."""

    fields: tuple[str, ...] = FIELDS
    task: str = "teacher"

    def __init__(self, source, where: str):
        self.source, self.where = source, where

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict:
        ex = self.source[index]
        missing = [k for k in self.fields if k not in ex]
        if missing:
            raise InputError(f"{self.where}, example {index}: missing field(s) {missing}; the {self.task} needs "
                             f"{list(self.fields)}, the example has {sorted(ex)}")
        return {k: np.asarray(ex[k], np.float32) for k in self.fields}

    def check_shapes(self, spec, fields_hint: str = "config.data latent_frames / latent_hw / text_len") -> dict:
        """Example 0 (returned) has the shapes of `spec`; `fields_hint` names the config fields that set them."""
        if len(self) == 0:
            raise InputError(f"{self.where}: the split has no examples")
        ex = self[0]
        for k, want in spec.items():
            if ex[k].shape != tuple(want.shape):
                raise InputError(f"{self.where}, example 0: field {k!r} is {ex[k].shape}, the config needs "
                                 f"{tuple(want.shape)} ({fields_hint})")
        return ex

    def check(self, spec, conv) -> None:
        """Example 0 has the shapes of `spec` and mask values within the convention's range."""
        ex = self.check_shapes(spec)
        lo, hi = sorted((conv.mask_hole, conv.mask_valid))
        if ex["mask"].min() < lo - 1e-3 or ex["mask"].max() > hi + 1e-3:
            raise InputError(f"{self.where}, example 0: mask values in [{ex['mask'].min():.3g}, "
                             f"{ex['mask'].max():.3g}], the {conv.name!r} convention has [{lo:g}, {hi:g}] "
                             f"(config.data.conditioning)")


def open_records(data: TeacherDataConfig) -> TeacherRecords:
    """The latent dataset of config.data (source "records") as a TeacherRecords source."""
    from star_jax.train import records

    info = records.dataset_info(data.path)
    stored = (info.metadata.get("conditioning") or {}).get("name")
    if stored is not None and stored != data.conditioning:
        raise InputError(f"{info.folder}: the latents were made with conditioning {stored!r}, "
                         f"config.data.conditioning is {data.conditioning!r}")
    return TeacherRecords(records.open_split(data.path, data.split), f"{info.folder} (split {data.split!r})")


def conditions_from_batch(batch) -> StarConditions:
    return StarConditions(ref=batch["ref"], render=batch["render"], mask=batch["mask"])


def teacher_inputs(x_s, t, cond: StarConditions, in_dim: int):
    """x_s (B, n, h, w, 16), t (B,), cond (B, n, h, w, .) -> DiT input (B, 2n, h, w, in_dim) and
    per-frame times (B, 2n): the clean reference first (t = 0), then the noisy target."""
    b, n = x_s.shape[:2]
    ref = cond.ref.astype(jnp.float32)
    context = jnp.pad(ref, ((0, 0),) * 4 + ((0, in_dim - ref.shape[-1]),))
    noisy = jnp.concatenate([x_s.astype(jnp.float32), cond.mask.astype(jnp.float32),
                             cond.render.astype(jnp.float32)], axis=-1)
    times = jnp.concatenate([jnp.zeros((b, n), jnp.float32), jnp.broadcast_to(t[:, None], (b, n))], axis=1)
    return jnp.concatenate([context, noisy], axis=1), times


def teacher_velocity(dit: WanDiT, params, x_s, t, cond: StarConditions, text):
    """The teacher's flow prediction for the target frames, (B, n, h, w, 16) float32."""
    n = x_s.shape[1]
    x, times = teacher_inputs(x_s, t, cond, dit.cfg.in_dim)
    y, _ = dit.apply({"params": params}, x, times, text)
    return y[:, n:].astype(jnp.float32)


def teacher_loss(dit: WanDiT, fm: FlowMatchingConfig, params, batch, rng, mask_hole: float = -1.0):
    """Flow-matching loss of the teacher on a batch (see the module docstring); a dropped render
    is zeros with an all-hole mask (`mask_hole`). aux: the fraction of dropped texts."""
    k_fm, k_text, k_render = jax.random.split(rng, 3)
    b = batch["target"].shape[0]
    cond = conditions_from_batch(batch)
    text_dropped = drop_mask(k_text, b, fm.text_dropout)
    text = drop_condition(batch["text"], text_dropped)
    if fm.render_dropout > 0:
        dropped = drop_mask(k_render, b, fm.render_dropout)
        mask = jnp.where(dropped[:, None, None, None, None], jnp.float32(mask_hole), cond.mask)
        cond = StarConditions(cond.ref, drop_condition(cond.render, dropped), mask)
    predict = lambda x_s, t: teacher_velocity(dit, params, x_s, t, cond, text)
    loss, _ = flow_matching_loss(predict, batch["target"], k_fm, fm)
    return loss, {"text_dropped": jnp.mean(text_dropped.astype(jnp.float32))}


def sample_teacher(dit: WanDiT, params, cond: StarConditions, text, rng, num_steps: int = 50, shift: float = 5.0,
                   cfg_scale: float = 1.0):
    """Euler sampling of target latents (B, n, h, w, 16) given the conditions; a CFG scale s != 1
    (a Python float) mixes in the unconditional (zero-text) prediction: v = v_u + s (v_c - v_u)
    (`diffusion.guidance`; 1, the default, is the conditional model alone)."""
    b, n, h, w, _ = cond.ref.shape
    noise = jax.random.normal(rng, (b, n, h, w, dit.cfg.out_dim), jnp.float32)
    predict = lambda x, t: teacher_velocity(dit, params, x, t, cond, text)
    uncond = None
    if check_cfg_scale(cfg_scale, "sample_teacher: cfg_scale") != 1.0:
        uncond = lambda x, t: teacher_velocity(dit, params, x, t, cond, jnp.zeros_like(text))  # noqa: E731
    return euler_sample(predict, noise, num_steps, shift, cfg_scale, uncond)


def example_spec(dit_cfg: DiTConfig, data: TeacherDataConfig) -> dict[str, jax.ShapeDtypeStruct]:
    n, (h, w) = data.latent_frames, data.latent_hw
    f32 = jnp.float32
    return {"target": jax.ShapeDtypeStruct((n, h, w, LATENT_CHANNELS), f32),
            "ref": jax.ShapeDtypeStruct((n, h, w, LATENT_CHANNELS), f32),
            "render": jax.ShapeDtypeStruct((n, h, w, LATENT_CHANNELS), f32),
            "mask": jax.ShapeDtypeStruct((n, h, w, MASK_CHANNELS), f32),
            "text": jax.ShapeDtypeStruct((data.text_len, dit_cfg.text_dim), f32)}


def check_shapes(cfg: DiTConfig, data: TeacherDataConfig) -> None:
    """The model and the data agree (else an InputError naming the fields)."""
    need_in = 2 * LATENT_CHANNELS + MASK_CHANNELS
    if cfg.in_dim != need_in or cfg.out_dim != LATENT_CHANNELS:
        raise InputError(f"config.model.dit: the teacher needs in_dim {need_in} ([noisy | mask | render]) and out_dim "
                         f"{LATENT_CHANNELS}, got in_dim {cfg.in_dim}, out_dim {cfg.out_dim}")
    pt, ph, pw = cfg.patch_size
    h, w = data.latent_hw
    if data.latent_frames % pt or h % ph or w % pw:
        raise InputError(f"config.data: latent_frames {data.latent_frames} and latent_hw {(h, w)} must be multiples "
                         f"of the DiT patch size {cfg.patch_size}")
    if data.text_len > cfg.text_len:
        raise InputError(f"config.data.text_len {data.text_len} exceeds the model's text_len {cfg.text_len}")


def init_teacher(dit: WanDiT, data: TeacherDataConfig, rng):
    """Fresh teacher params (boxed with logical axis names) for examples shaped by `data`."""
    n, (h, w) = data.latent_frames, data.latent_hw
    x = jnp.zeros((1, 2 * n, h, w, dit.cfg.in_dim), jnp.float32)
    return dit.init(rng, x, jnp.zeros((1, 2 * n), jnp.float32),
                    jnp.zeros((1, data.text_len, dit.cfg.text_dim), jnp.float32))["params"]


def initial_params(config):
    """The (unboxed) params a run of `config` starts from: its seed's init key, as
    `train.state.init_state` splits it (for "untrained" baselines without the run's data)."""
    import flax.linen as nn

    data = section(TeacherDataConfig, config, "data")
    k_init = jax.random.split(jax.random.PRNGKey(config.run.seed))[0]
    return nn.meta.unbox(jax.jit(lambda k: init_teacher(teacher_model(config), data, k))(k_init))


def open_source(data: TeacherDataConfig, dit_cfg: DiTConfig, spec):
    """The examples of config.data: the latent records (checked against `spec` and the
    convention) or the synthetic source shaped by `data`."""
    conv = get_conditioning(data.conditioning)
    if data.source == "records":
        source = open_records(data)
        source.check(spec, conv)
        return source
    return SyntheticStarSource(data.num_examples, data.latent_frames, data.latent_hw, data.text_len,
                               dit_cfg.text_dim, data.seed, data.max_shift, conv.mask_hole, conv.mask_valid)


def make_teacher_task(config) -> Task:
    """config.model.dit (DiTConfig fields), config.flow (FlowMatchingConfig), config.data
    (TeacherDataConfig) -> the teacher Task."""
    dit_cfg = section(DiTConfig, config.get("model", {}), "dit", "config.model")
    fm = section(FlowMatchingConfig, config, "flow")
    data = section(TeacherDataConfig, config, "data")
    check_shapes(dit_cfg, data)
    dit = WanDiT(dit_cfg, block_causal=False)
    n, (h, w) = data.latent_frames, data.latent_hw
    init = lambda rng: init_teacher(dit, data, rng)

    conv = get_conditioning(data.conditioning)
    spec = example_spec(dit_cfg, data)
    source = open_source(data, dit_cfg, spec)
    _, ph, pw = dit_cfg.patch_size
    flops = dit_flops(dit_cfg, 2 * n, (h // ph) * (w // pw), dit_cfg.text_len)
    return Task(name="teacher", init=init, loss_fn=lambda p, b, r: teacher_loss(dit, fm, p, b, r, conv.mask_hole),
                example_spec=spec, source=source, flops_per_example=flops,
                sections=("model", "flow", "data"))


def teacher_model(config) -> WanDiT:
    """The teacher network a config trains (for sampling from its checkpoints)."""
    return WanDiT(section(DiTConfig, config.get("model", {}), "dit", "config.model"), block_causal=False)

