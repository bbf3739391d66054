"""ODE initialisation: the Euler grid passes exactly through the student's levels, the stored
level-1 state is the example's seeded noise, the guided solve at its default cfg_scale 3 equals a
hand-rolled Euler with the formula the pairs were always made with (v_u + 3 (v_c - v_u)), the
pairs dataset round-trips through the records reader, the old --guidance flag names its new name,
the ODE-init loss is the per-block teacher-forced regression it claims to be, the task trains,
and unusable teachers / latents / pairs are errors naming the problem."""

import dataclasses
import json
import os

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.checkpoint.storage import CheckpointError, save_params
from star_jax.diffusion.flow_matching import euler_sigmas
from star_jax.diffusion.schedule import few_step_schedule
from star_jax.errors import InputError
from star_jax.inference.conditions import StarConditions
from star_jax.models.dit import WanDiT
from star_jax.models.variants import dit_variant
from star_jax.train.ode import example_noise, level_grid, ode_loss, solve_at_levels, teacher_ode
from star_jax.train.teacher import teacher_velocity

ONE = jax.devices()[:1]
SCHED = few_step_schedule((1000, 750, 500, 250), 5.0)
# the smoke config's DiT (experiments/train_smoke.py)
CFG = dit_variant("tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=1, freq_dim=16, text_dim=16, text_len=4)
HW, TEXT, FRAMES = (4, 4), (4, 16), 6


def quick(fn, *args):
    """fn(*args) jitted with LLVM optimisation off: tiny programs compile ~3x faster on a CPU."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def random_params(cfg, seed=0):
    dit = WanDiT(cfg)
    init = lambda k: dit.init(k, jnp.zeros((1, 3, *HW, cfg.in_dim)), jnp.zeros((1,)),  # noqa: E731
                              jnp.zeros((1, TEXT[0], cfg.text_dim)))["params"]
    shapes = nn.meta.unbox(jax.eval_shape(init, jax.random.PRNGKey(0)))
    rng = np.random.default_rng(seed)  # random weights of the init's shapes, larger than the init's
    return jax.tree_util.tree_map(lambda s: (0.3 * rng.standard_normal(s.shape)).astype(s.dtype), shapes)


def write_teacher(folder, cfg, seed=0, data_path=""):
    """A teacher export bundle as `star_jax.checkpoint.export.export_teacher` lays it out."""
    from star_jax.inference.model import write_star_model_json

    os.makedirs(folder)
    save_params(random_params(cfg, seed), os.path.join(folder, "dit"))
    write_star_model_json(str(folder), "inspatio-release")
    data = {"source": "records", "path": data_path, "conditioning": "inspatio-release"} if data_path else {}
    with open(os.path.join(folder, "teacher.json"), "w") as f:
        json.dump({"format": 1, "config": {"task": "teacher", "data": data}, "dit": dataclasses.asdict(cfg),
                   "step": 7, "params": "raw"}, f)
    return str(folder)


def write_latents(folder, num, frames=FRAMES, fingerprint="feedc0de", text=TEXT):
    """A latent dataset (`star_latents_toy`, split train) of `num` learnable pan examples."""
    from data_pipelines.tfds_builders import latent_features, write_dataset
    from star_jax.train.synthetic import SyntheticStarSource

    src = SyntheticStarSource(num, frames, HW, *text, seed=3)
    t = 1 + 4 * (frames - 1)
    h, w = 8 * HW[0], 8 * HW[1]

    def examples():
        for i in range(num):
            ex = src[i]
            yield i, {**{k: ex[k] for k in ("target", "ref", "render", "mask", "text")},
                      "render_rgb": np.zeros((t, h, w, 3), np.uint8), "render_valid": np.zeros((t, h, w), np.uint8),
                      "example_id": np.int64(100 + i)}

    meta = {"vae": {"fingerprint": fingerprint}, "conditioning": {"name": "inspatio-release"},
            "text_encoder": "stand-in"}
    return write_dataset(str(folder), "star_latents_toy", latent_features((frames, *HW), 4, text, t, h, w),
                         {"train": examples}, meta)


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    """Latents (16 examples), a random teacher trained 'on' them, its pairs (8 Euler steps)."""
    from data_pipelines.ode_pairs import build

    root = tmp_path_factory.mktemp("ode")
    latents = write_latents(root / "latents", 16)
    teacher = write_teacher(root / "teacher", CFG, data_path=latents)
    meta = build(latents, teacher, str(root / "pairs"), steps=8, cfg_scale=3.0, batch=8, seed=5, progress=False)
    return {"root": root, "latents": latents, "teacher": teacher, "pairs": str(root / "pairs"), "meta": meta}


@pytest.mark.parametrize("shift", [5.0, 3.0])
def test_grid_passes_exactly_through_the_levels(shift):
    sched = few_step_schedule((1000, 750, 500, 250), shift)
    grid = level_grid(sched.sigmas, 8, shift)
    assert grid.shape == (4, 9)
    np.testing.assert_array_equal(grid[:, 0].astype(np.float32), sched.sigmas)  # bit-exact in float32
    np.testing.assert_array_equal(grid[1:, 0], grid[:-1, -1])
    assert grid[-1, -1] == 0.0 and np.all(np.diff(grid, axis=1) < 0)
    if shift == 5.0:  # the levels are u = 1, .75, .5, .25: the grid is the teacher sampler's own
        np.testing.assert_allclose(np.append(grid[:, :-1].ravel(), 0.0), euler_sigmas(32, 5.0), atol=1e-7)
    # the float32 solve visits them: with a constant velocity Euler is exact, x(s) = noise + (s - 1) c
    noise = jnp.asarray(np.random.default_rng(0).normal(size=(2, 3)), jnp.float32)
    xs, x0 = solve_at_levels(lambda x, t: jnp.full_like(x, 0.5), noise, grid)
    np.testing.assert_allclose(xs, noise[:, None] + 0.5 * (sched.sigmas[None, :, None] - 1.0), atol=1e-6)
    np.testing.assert_allclose(x0, noise - 0.5, atol=1e-6)
    np.testing.assert_array_equal(xs[:, 0], noise)


def test_one_sub_step_per_level_is_hand_rolled_guided_euler():
    dit, params = WanDiT(CFG), random_params(CFG, 1)
    rng = np.random.default_rng(0)
    cond = StarConditions(*(jnp.asarray(rng.normal(size=(2, FRAMES, *HW, c)), jnp.float32) for c in (16, 16, 4)))
    text = jnp.asarray(rng.normal(size=(2, *TEXT)), jnp.float32)
    noise = jnp.asarray(rng.normal(size=(2, FRAMES, *HW, 16)), jnp.float32)
    grid = level_grid(SCHED.sigmas, 1, 5.0)

    def hand_rolled(p):
        x, states = noise, []
        for s, s_next in zip([1.0, 0.9375, 5 / 6, 0.625], [0.9375, 5 / 6, 0.625, 0.0]):
            states.append(x)
            t = jnp.full((2,), 1000.0 * np.float32(s))
            v_c = teacher_velocity(dit, p, x, t, cond, text)
            v_u = teacher_velocity(dit, p, x, t, cond, jnp.zeros_like(text))
            x = x + (np.float32(s_next) - np.float32(s)) * (v_u + 3.0 * (v_c - v_u))
        return jnp.stack(states, 1), x, v_c, v_u

    (xs, x0), (want_xs, want_x0, v_c, v_u) = quick(lambda p: (teacher_ode(dit, p, cond, text, noise, grid),
                                                              hand_rolled(p)), params)  # the default scale
    assert not np.allclose(v_c, v_u, atol=1e-2)  # the guidance matters
    np.testing.assert_allclose(xs, want_xs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(x0, want_x0, rtol=1e-5, atol=1e-5)


def test_pairs_round_trip_through_the_records_reader(pairs):
    from star_jax.train import records

    info = records.dataset_info(pairs["pairs"])
    assert info.name == "star_ode_toy" and info.splits == {"train": 16}
    assert info.features["ode_x"] == ((4, FRAMES, *HW, 16), "float32")
    assert info.features["ode_x0"] == ((FRAMES, *HW, 16), "float32")
    m = info.metadata
    assert m["cfg_scale"] == 3.0 and "v_u + cfg_scale" in m["cfg"] and m["euler_steps"] == 8 and m["seed"] == 5
    assert m["levels"]["steps"] == [1000, 750, 500, 250]
    np.testing.assert_allclose(m["levels"]["timesteps"], SCHED.timesteps)
    assert m["vae"]["fingerprint"] == "feedc0de" and m["conditioning"]["name"] == "inspatio-release"
    assert m["teacher"]["path"] == pairs["teacher"] and m["teacher"]["step"] == 7
    lat = records.open_split(pairs["latents"], "train")
    src = records.open_split(pairs["pairs"], "train")
    by_id = {int(lat[i]["example_id"]): lat[i] for i in range(len(lat))}
    for i in (0, 15):
        ex = src[i]
        for k in ("ref", "render", "mask", "text"):  # the conditions are copied unchanged
            np.testing.assert_array_equal(ex[k], by_id[int(ex["example_id"])][k])
        assert np.all(np.isfinite(ex["ode_x"])) and np.all(np.isfinite(ex["ode_x0"]))
        # level 1.0 is the noise seeded by (seed, example_id), whatever batch the example was in
        noise = example_noise(5, np.asarray([ex["example_id"]], np.uint32), (FRAMES, *HW, 16))[0]
        np.testing.assert_array_equal(ex["ode_x"][0], noise)
        assert not np.allclose(ex["ode_x"][3], ex["ode_x"][0], atol=0.1)  # the teacher moved it


def test_ode_loss_is_teacher_forced_per_block_regression(pairs):
    """ode_loss equals its definition written out example by example and block by block."""
    from star_jax.inference.rollout import causal_block_x0
    from star_jax.train import records

    src = records.open_split(pairs["pairs"], "train")
    keys = ("ref", "render", "mask", "text", "ode_x", "ode_x0")
    batch = {k: jnp.asarray(np.stack([src[i][k] for i in range(2)])) for k in keys}
    dit, params, rng = WanDiT(CFG, block_causal=True), random_params(CFG, 2), jax.random.PRNGKey(4)

    def by_hand(p):
        level = jax.random.randint(rng, (2, 2), 0, 4)
        errs = []
        for i in range(2):
            for k in range(2):
                blk = lambda a: a[i:i + 1, 3 * k:3 * k + 3]  # noqa: E731, B023
                x_t = batch["ode_x"][i:i + 1, level[i, k], 3 * k:3 * k + 3]
                prev = batch["ode_x0"][i:i + 1, 0:3] if k else jnp.zeros_like(x_t)
                pred = causal_block_x0(dit, p, batch["text"][i:i + 1], blk(batch["ref"]), prev, k == 0, x_t,
                                       jnp.asarray(SCHED.timesteps)[level[i, k]][None], blk(batch["mask"]),
                                       blk(batch["render"]))
                errs.append(jnp.mean(jnp.square(pred - blk(batch["ode_x0"]))))
        return jnp.mean(jnp.stack(errs)), level

    (loss, aux), (want, level) = quick(lambda p: (ode_loss(dit, SCHED.timesteps, p, batch, rng), by_hand(p)), params)
    assert len(set(np.asarray(level).ravel().tolist())) > 1  # blocks at different levels
    np.testing.assert_allclose(loss, want, rtol=1e-5)
    assert float(aux["loss_first_block"]) != pytest.approx(float(aux["loss_later_blocks"]))


def ode_config(workdir, data, init="", steps=25):
    from experiments.train_ode import get_config

    config = get_config(f"steps={steps},batch=8,lr=3e-3,warmup=5,ema=0,fast_compile,workdir={workdir},data={data},"
                        f"init={init}")
    with config.unlocked():
        config.model.dit.update(**{k: getattr(CFG, k) for k in ("dim", "ffn_dim", "num_heads", "num_layers",
                                                                 "freq_dim", "text_dim", "text_len")})
        config.data.update(latent_hw=HW, text_len=TEXT[0])
    return config


def test_ode_task_trains_from_the_teacher(tmp_path, pairs):
    from star_jax.train import read_metrics, train

    result = train(ode_config(tmp_path / "run", pairs["pairs"], init=pairs["teacher"]), devices=ONE)
    assert result.status == "done"
    loss = [r["loss"] for r in read_metrics(str(tmp_path / "run"))]
    assert len(loss) == 25 and all(np.isfinite(loss))
    assert np.mean(loss[-5:]) < 0.5 * np.mean(loss[:5])


def test_bad_teachers_and_latents_are_named_errors(tmp_path, pairs):
    from data_pipelines.ode_pairs import build

    def run(latents, teacher, **kw):
        build(latents, teacher, str(tmp_path / f"out{len(os.listdir(tmp_path))}"), progress=False, **kw)

    with pytest.raises(CheckpointError, match=r"nowhere: teacher not found: expected a teacher export"):
        run(pairs["latents"], str(tmp_path / "nowhere"))
    wide = write_teacher(tmp_path / "wide", dataclasses.replace(CFG, text_dim=8))
    with pytest.raises(CheckpointError, match=r"wide does not fit the latents .*: text_dim 8, text_len 4 for text "
                                              r"embeddings of \(4, 16\)"):
        run(pairs["latents"], wide)
    short = write_latents(tmp_path / "short", 2, frames=3)
    with pytest.raises(InputError, match=r"short: latents of 3 latent frames, expected 6"):
        run(short, pairs["teacher"])
    other_vae = write_latents(tmp_path / "other_vae", 2, fingerprint="0ther")
    with pytest.raises(CheckpointError, match=r"trained on latents of VAE feedc0de .* are of VAE 0ther"):
        run(other_vae, pairs["teacher"])
    with pytest.raises(InputError, match=r"--steps: expected a multiple of the 4 student levels .*, got 6"):
        run(pairs["latents"], pairs["teacher"], steps=6)
    assert not [p for p in os.listdir(tmp_path) if p.startswith("out")]  # nothing written


def test_ode_task_refuses_data_that_is_not_its_pairs(tmp_path, pairs):
    from star_jax.train import dry_run

    with pytest.raises(InputError, match=r"latents: not an ODE pairs dataset"):
        dry_run(ode_config(tmp_path / "a", pairs["latents"]), devices=ONE)
    config = ode_config(tmp_path / "b", pairs["pairs"])
    with config.unlocked():
        config.ode.steps = (1000, 500)
    with pytest.raises(InputError, match=r"pairs stored at timesteps \[1000.0, 937.5, 833.33, 625.0\], config.ode"):
        dry_run(config, devices=ONE)
    config = ode_config(tmp_path / "c", pairs["pairs"])
    with config.unlocked():
        config.data.latent_frames = 3
    with pytest.raises(InputError, match=r"field 'ref' is \(6, 4, 4, 16\), the config needs \(3, 4, 4, 16\)"):
        dry_run(config, devices=ONE)


def test_cli_reports_a_missing_teacher_in_one_line(tmp_path, pairs, capsys):
    from data_pipelines.ode_pairs import job
    from star_jax import cli

    code = cli.execute(job, ["--latents", pairs["latents"], "--teacher", str(tmp_path / "none"), "--out",
                             str(tmp_path / "out"), "--no_progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "none: teacher not found" in err[0]
    assert not os.path.exists(tmp_path / "out")
    # the flag's old name: renamed, the same value (this sampler always used v_u + s (v_c - v_u))
    code = cli.execute(job, ["--latents", pairs["latents"], "--teacher", pairs["teacher"], "--out",
                             str(tmp_path / "out"), "--guidance", "3", "--no_progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--guidance: renamed --cfg_scale, the same value" in err[0]
    assert "use --cfg_scale 3" in err[0] and not os.path.exists(tmp_path / "out")


def test_teacher_from_a_training_workdir_is_its_newest_ema(tmp_path):
    """A trainer workdir (run.json + checkpoints/<step>/state): the newest step's EMA params,
    what `star_jax.checkpoint.export.export_teacher` would export."""
    from data_pipelines.ode_pairs import load_teacher

    work = tmp_path / "teacher_run"
    for step, seed in ((3, 0), (7, 1)):
        save_params({"params": random_params(CFG, seed), "ema_params": random_params(CFG, seed + 10)},
                    str(work / "checkpoints" / str(step) / "state"))
    with open(work / "run.json", "w") as f:
        json.dump({"config": {"task": "teacher", "model": {"dit": dataclasses.asdict(CFG)}}}, f)
    dit, params, facts = load_teacher(str(work), attention="blockwise")
    assert facts["kind"] == "workdir" and facts["step"] == 7 and facts["conditioning"] is None
    assert dit.cfg.attention == "blockwise" and dit.cfg.dim == CFG.dim
    for got, want in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(random_params(CFG, 11))):
        np.testing.assert_array_equal(got, want)
    with open(work / "run.json", "w") as f:
        json.dump({"config": {"task": "ode", "model": {"dit": dataclasses.asdict(CFG)}}}, f)
    with pytest.raises(CheckpointError, match=r"teacher_run: a run of task 'ode'; the ODE pairs need the "
                                              r"bidirectional teacher"):
        load_teacher(str(work))
