"""ODE initialisation of the block-causal student (REFERENCE.md "ODE initialisation"): the
conditional teacher's ODE solved from noise and stored at the student's own levels, then the
student regressing the trajectory's endpoint from each level.

    grid = level_grid(few_step_schedule().sigmas, sub_steps=8, shift=5.0)   # (4, 9) float64
    xs, x0 = teacher_ode(dit, params, cond, text, noise, grid, cfg_scale=3.0)  # (B, 4, n, h, w, 16), (B, n, h, w, 16)
    task = make_ode_task(config)                                               # config.task = "ode"

The solve: Euler with classifier-free guidance on the text (v = v_u + cfg_scale (v_c - v_u),
`diffusion.guidance`; v_u with zero text; `train.teacher.teacher_velocity`), from s = 1 (x = the
noise) to s = 0, on a grid that passes exactly through every student level sigma_i (sub-steps
uniform in the unshifted level u, then shifted: for shift 5 the levels 1, .9375, .8333, .625 are
u = 1, .75, .5, .25, so the grid is the teacher sampler's own `euler_sigmas(4 * sub_steps, 5)`).
xs[:, i] is the state at level i (xs[:, 0] the noise), x0 the endpoint. Pairs datasets: `data_pipelines/ode_pairs.py`.

The task (diffusion-forcing style, teacher forcing): per example, block k of the n / F blocks
draws its own level index l_k, x_t = ode_x[l_k] of that block at t = timesteps[l_k], and the
student (`WanDiT(cfg, block_causal=True)`, the teacher's params tree) predicts x0 through
`inference.rollout.causal_block_x0` with the context [ref_k | ode_x0 of block k - 1] (block 0:
the reference only). Loss: the mean over blocks and examples of the per-block MSE to ode_x0.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.diffusion.guidance import apply_cfg, check_cfg_scale
from star_jax.diffusion.schedule import few_step_schedule, shift_sigma
from star_jax.errors import InputError
from star_jax.inference.conditions import DEFAULT_CONDITIONING, StarConditions, get_conditioning
from star_jax.models.dit import WanDiT
from star_jax.models.flops import dit_flops
from star_jax.models.variants import DiTConfig
from star_jax.train.config import section
from star_jax.train.synthetic import LATENT_CHANNELS, MASK_CHANNELS
from star_jax.train.task import Task
from star_jax.train.teacher import TeacherRecords, teacher_velocity

FIELDS = ("ref", "render", "mask", "text", "ode_x", "ode_x0")
DEFAULT_LEVELS = (1000, 750, 500, 250)


def unshift_sigma(s, shift: float):
    """The inverse of `shift_sigma`: s -> s / (k - (k - 1) s)."""
    return s / (shift - (shift - 1.0) * s)


def level_grid(sigmas, sub_steps: int, shift: float = 5.0) -> np.ndarray:
    """(L, sub_steps + 1) float64 Euler grid: row i runs from level sigmas[i] to sigmas[i + 1]
    (0 after the last), uniform in the unshifted level u then shifted by `shift`; the row ends
    are exactly the given levels (as float32 -> float64, so a float32 solve hits them exactly)."""
    sigmas = np.asarray(sigmas, np.float32).astype(np.float64)
    if sub_steps < 1:
        raise InputError(f"ODE grid: sub_steps per level must be >= 1, got {sub_steps}")
    if sigmas.ndim != 1 or not len(sigmas) or np.any(sigmas <= 0) or np.any(sigmas > 1) \
            or np.any(np.diff(sigmas) >= 0):
        raise InputError(f"ODE grid: levels must be strictly decreasing in (0, 1], got {sigmas.tolist()}")
    ends = np.append(sigmas, 0.0)
    rows = []
    for a, b in zip(ends[:-1], ends[1:]):
        row = shift_sigma(np.linspace(unshift_sigma(a, shift), unshift_sigma(b, shift), sub_steps + 1), shift)
        row[0], row[-1] = a, b
        rows.append(row)
    return np.stack(rows)


def solve_at_levels(velocity, noise, grid):
    """Euler integration of dx/ds = velocity(x, 1000 s) over `grid` (L, S + 1) from x = noise
    (B, ...) at grid[0, 0]. Returns (xs (B, L, ...) the states at each row's start, x0 (B, ...)
    the state at grid[-1, -1]), float32."""
    g = jnp.asarray(grid, jnp.float32)
    b = noise.shape[0]

    def sub_step(x, s_pair):
        s, s_next = s_pair
        v = velocity(x, jnp.full((b,), s * 1000.0, jnp.float32)).astype(jnp.float32)
        return x + (s_next - s) * v, None

    def segment(x, row):
        x_end, _ = jax.lax.scan(sub_step, x, (row[:-1], row[1:]))
        return x_end, x

    x0, xs = jax.lax.scan(segment, noise.astype(jnp.float32), g)
    return jnp.moveaxis(xs, 0, 1), x0


def guided_velocity(dit: WanDiT, params, cond: StarConditions, text, cfg_scale: float):
    """velocity(x, t) of the bidirectional teacher with CFG on the text, v_u + cfg_scale (v_c - v_u)
    (one doubled batch: conditional rows first, zero-text rows second); cfg_scale 1 is the
    conditional model alone (one forward)."""
    if check_cfg_scale(cfg_scale, "teacher ODE: cfg_scale") == 1.0:
        return lambda x, t: teacher_velocity(dit, params, x, t, cond, text)
    two = lambda a: jnp.concatenate([a, a])  # noqa: E731
    cond2 = StarConditions(two(cond.ref), two(cond.render), two(cond.mask))
    text2 = jnp.concatenate([text, jnp.zeros_like(text)])

    def velocity(x, t):
        v_c, v_u = jnp.split(teacher_velocity(dit, params, two(x), two(t), cond2, text2), 2)
        return apply_cfg(v_c, v_u, cfg_scale)

    return velocity


def teacher_ode(dit: WanDiT, params, cond: StarConditions, text, noise, grid, cfg_scale: float = 3.0):
    """The guided teacher ODE from `noise` (B, n, h, w, 16) under the conditions (B, n, h, w, .)
    and text (B, L, D), CFG scale `cfg_scale` (3: what the pairs of data_pipelines.ode_pairs have
    always used). Returns (xs (B, L_levels, n, h, w, 16), x0 (B, n, h, w, 16))."""
    return solve_at_levels(guided_velocity(dit, params, cond, text, float(cfg_scale)), noise, grid)


def example_noise(seed: int, example_ids, shape):
    """(B, *shape) float32 N(0, 1), example i's from PRNGKey(seed) folded with example_ids[i]
    (the same for an example whatever batch it is in)."""
    ids = jnp.asarray(example_ids).astype(jnp.uint32)
    return jax.vmap(lambda i: jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(seed), i), shape))(ids)


# ----- the ODE-init task -----

@dataclasses.dataclass(frozen=True)
class OdeDataConfig:
    """An ODE pairs dataset (`data_pipelines/ode_pairs.py`) at `path`, split `split`; example
    shapes: `latent_frames` n (a multiple of the block size), `latent_hw`, `text_len` rows."""

    path: str = ""
    split: str = "train"
    latent_frames: int = 6
    latent_hw: tuple[int, int] = (12, 20)
    text_len: int = 16
    conditioning: str = DEFAULT_CONDITIONING

    def __post_init__(self):
        if not self.path:
            raise InputError("config.data.path: the ODE task needs an ODE pairs dataset folder "
                             "(python -m data_pipelines.ode_pairs), got ''")
        try:
            get_conditioning(self.conditioning)
        except InputError as e:
            raise InputError(f"config.data.conditioning: {e}") from e


@dataclasses.dataclass(frozen=True)
class OdeConfig:
    """The student's levels: nominal steps warped through the shift table (`few_step_schedule`);
    the pairs must have been stored at exactly these."""

    steps: tuple[int, ...] = DEFAULT_LEVELS
    shift: float = 5.0


class OdeRecords(TeacherRecords):
    """A random-access source (`len`, `[i]`) of the task's FIELDS of a pairs split."""

    fields = FIELDS
    task = "ODE task"

    def check(self, spec) -> None:
        self.check_shapes(spec, "config.data latent_frames / latent_hw / text_len, config.ode.steps")


def open_pairs(data: OdeDataConfig, ode: OdeConfig) -> OdeRecords:
    """The pairs dataset of config.data, checked against the levels and convention of the config."""
    from star_jax.train import records

    info = records.dataset_info(data.path)
    meta = info.metadata
    levels = meta.get("levels")
    if not isinstance(levels, dict) or "timesteps" not in levels:
        raise InputError(f"{info.folder}: not an ODE pairs dataset (metadata.json has no 'levels'; write one with "
                         f"python -m data_pipelines.ode_pairs)")
    want = few_step_schedule(ode.steps, ode.shift).timesteps
    stored = np.asarray(levels["timesteps"], np.float64)
    if stored.shape != want.shape or not np.allclose(stored, want, atol=1e-3):
        raise InputError(f"{info.folder}: pairs stored at timesteps {np.round(stored, 2).tolist()}, config.ode "
                         f"(steps {list(ode.steps)}, shift {ode.shift:g}) needs {np.round(want, 2).tolist()}")
    conv = (meta.get("conditioning") or {}).get("name")
    if conv is not None and conv != data.conditioning:
        raise InputError(f"{info.folder}: the pairs were made with conditioning {conv!r}, config.data.conditioning "
                         f"is {data.conditioning!r}")
    return OdeRecords(records.open_split(data.path, data.split), f"{info.folder} (split {data.split!r})")


def example_spec(cfg: DiTConfig, data: OdeDataConfig, num_levels: int) -> dict[str, jax.ShapeDtypeStruct]:
    n, (h, w), f32 = data.latent_frames, data.latent_hw, jnp.float32
    lat = (n, h, w, LATENT_CHANNELS)
    return {"ref": jax.ShapeDtypeStruct(lat, f32), "render": jax.ShapeDtypeStruct(lat, f32),
            "mask": jax.ShapeDtypeStruct((n, h, w, MASK_CHANNELS), f32),
            "text": jax.ShapeDtypeStruct((data.text_len, cfg.text_dim), f32),
            "ode_x": jax.ShapeDtypeStruct((num_levels,) + lat, f32), "ode_x0": jax.ShapeDtypeStruct(lat, f32)}


def check_shapes(cfg: DiTConfig, data: OdeDataConfig) -> None:
    need_in = 2 * LATENT_CHANNELS + MASK_CHANNELS
    if cfg.in_dim != need_in or cfg.out_dim != LATENT_CHANNELS:
        raise InputError(f"config.model.dit: the student needs in_dim {need_in} ([noisy | mask | render]) and "
                         f"out_dim {LATENT_CHANNELS}, got in_dim {cfg.in_dim}, out_dim {cfg.out_dim}")
    f, (pt, ph, pw), (h, w) = cfg.frames_per_block, cfg.patch_size, data.latent_hw
    if data.latent_frames < f or data.latent_frames % f or f % pt or h % ph or w % pw:
        raise InputError(f"config.data: latent_frames {data.latent_frames} must be a positive multiple of the block "
                         f"size {f} and latent_hw {(h, w)} of the patch size {cfg.patch_size}")
    if data.text_len > cfg.text_len:
        raise InputError(f"config.data.text_len {data.text_len} exceeds the model's text_len {cfg.text_len}")


def _blocks(a, f: int):
    """(B, n, ...) -> (B, n / f, f, ...)."""
    return a.reshape(a.shape[0], a.shape[1] // f, f, *a.shape[2:])


def ode_loss(dit: WanDiT, timesteps, params, batch, rng):
    """The ODE-init regression loss (module docstring) on a batch of FIELDS. aux: the loss of the
    first blocks (no previous block) and of the later ones."""
    from star_jax.inference.rollout import causal_block_x0

    f = dit.cfg.frames_per_block
    ode_x = batch["ode_x"].astype(jnp.float32)
    b, num_levels, n = ode_x.shape[:3]
    nb = n // f
    level = jax.random.randint(rng, (b, nb), 0, num_levels)
    t = jnp.asarray(timesteps, jnp.float32)[level]  # (b, nb)
    x_all = ode_x.reshape(b, num_levels, nb, f, *ode_x.shape[3:])
    x_t = x_all[jnp.arange(b)[:, None], level, jnp.arange(nb)[None, :]]  # (b, nb, f, h, w, 16)
    target = _blocks(batch["ode_x0"].astype(jnp.float32), f)
    ref, mask, render = (_blocks(batch[k].astype(jnp.float32), f) for k in ("ref", "mask", "render"))
    prev = jnp.concatenate([jnp.zeros_like(target[:, :1]), target[:, :-1]], axis=1)
    text = batch["text"]

    pred = causal_block_x0(dit, params, text, ref[:, 0], prev[:, 0], True, x_t[:, 0], t[:, 0], mask[:, 0],
                           render[:, 0])[:, None]
    if nb > 1:  # the later blocks as one batch, example-major
        merge = lambda a: a[:, 1:].reshape(b * (nb - 1), *a.shape[2:])  # noqa: E731
        later = causal_block_x0(dit, params, jnp.repeat(text, nb - 1, axis=0), merge(ref), merge(prev), False,
                                merge(x_t), t[:, 1:].reshape(-1), merge(mask), merge(render))
        pred = jnp.concatenate([pred, later.reshape(b, nb - 1, *later.shape[1:])], axis=1)
    err = jnp.mean(jnp.square(pred - target), axis=tuple(range(2, target.ndim)))  # (b, nb)
    later_loss = jnp.mean(err[:, 1:]) if nb > 1 else jnp.zeros((), jnp.float32)
    return jnp.mean(err), {"loss_first_block": jnp.mean(err[:, 0]), "loss_later_blocks": later_loss}


def init_student(dit: WanDiT, data: OdeDataConfig, rng):
    """Fresh student params (boxed): the teacher's tree (the block-causal flag shapes masks only)."""
    f, (h, w) = dit.cfg.frames_per_block, data.latent_hw
    return dit.init(rng, jnp.zeros((1, f, h, w, dit.cfg.in_dim), jnp.float32), jnp.zeros((1,), jnp.float32),
                    jnp.zeros((1, data.text_len, dit.cfg.text_dim), jnp.float32))["params"]


def student_model(config) -> WanDiT:
    """The block-causal student network a config trains."""
    return WanDiT(section(DiTConfig, config.get("model", {}), "dit", "config.model"), block_causal=True)


def make_ode_task(config) -> Task:
    """config.model.dit (DiTConfig), config.data (OdeDataConfig), config.ode (OdeConfig) -> the Task."""
    cfg = section(DiTConfig, config.get("model", {}), "dit", "config.model")
    data = section(OdeDataConfig, config, "data")
    ode = section(OdeConfig, config, "ode")
    check_shapes(cfg, data)
    sched = few_step_schedule(ode.steps, ode.shift)
    dit = WanDiT(cfg, block_causal=True)
    spec = example_spec(cfg, data, len(sched.timesteps))
    source = open_pairs(data, ode)
    source.check(spec)
    f, (_, ph, pw) = cfg.frames_per_block, cfg.patch_size
    tpf = (data.latent_hw[0] // ph) * (data.latent_hw[1] // pw)
    per_block = dit_flops(cfg, 2 * f, tpf, cfg.text_len) + dit_flops(cfg, f, tpf, cfg.text_len, cache_frames=2 * f)
    return Task(name="ode", init=lambda rng: init_student(dit, data, rng),
                loss_fn=lambda p, bt, r: ode_loss(dit, sched.timesteps, p, bt, r), example_spec=spec, source=source,
                flops_per_example=per_block * data.latent_frames // f, sections=("model", "data", "ode"))
