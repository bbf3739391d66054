"""The STAR teacher task: its inputs are laid out as inference lays out the generator's, the smoke
run's loss falls and the trained teacher relies on its conditions, an 8-device mesh gives the
one-device losses, the sampler's CFG (unguided by default, cfg_scale s: v_u + s (v_c - v_u)), and
shape mistakes are input errors."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.train_smoke import get_config
from star_jax.diffusion.flow_matching import FlowMatchingConfig
from star_jax.errors import InputError
from star_jax.inference.conditions import StarConditions
from star_jax.models.dit import WanDiT
from star_jax.models.variants import dit_variant
from star_jax.train import Checkpointer, CheckpointConfig, dry_run, read_metrics, train
from star_jax.train.loop import setup
from star_jax.train.teacher import sample_teacher, teacher_inputs, teacher_loss, teacher_model, teacher_velocity

ONE = jax.devices()[:1]


def quick(fn, *args):
    """fn(*args) jitted with LLVM optimisation off: tiny programs compile ~3x faster on a CPU."""
    return jax.jit(fn).lower(*args).compile(compiler_options={"xla_backend_optimization_level": 0})(*args)


def test_inputs_follow_the_inference_layout():
    """Context frames [ref | 20 zeros] at t = 0 first, then [x_s | mask | render] at t (the
    channel order of `inference.rollout.star_block`)."""
    rng = np.random.default_rng(0)
    b, n, h, w = 2, 3, 4, 6
    ref, render, x_s = (jnp.asarray(rng.normal(size=(b, n, h, w, 16)), jnp.float32) for _ in range(3))
    mask = jnp.asarray(rng.choice([-1.0, 1.0], size=(b, n, h, w, 4)), jnp.float32)
    x, t = teacher_inputs(x_s, jnp.array([250.0, 900.0]), StarConditions(ref, render, mask), 36)
    assert x.shape == (b, 2 * n, h, w, 36) and t.shape == (b, 2 * n)
    np.testing.assert_array_equal(x[:, :n, ..., :16], ref)
    np.testing.assert_array_equal(x[:, :n, ..., 16:], 0.0)
    np.testing.assert_array_equal(x[:, n:, ..., :16], x_s)
    np.testing.assert_array_equal(x[:, n:, ..., 16:20], mask)
    np.testing.assert_array_equal(x[:, n:, ..., 20:], render)
    np.testing.assert_array_equal(t, [[0, 0, 0, 250, 250, 250], [0, 0, 0, 900, 900, 900]])


def conditioned_losses(config, workdir, step, examples=32, repeats=4):
    """Mean teacher loss on the training examples with their own conditions, and with the
    conditions of another example (fixed noise, no text dropout)."""
    s = setup(config, devices=ONE)
    params = Checkpointer(str(workdir / "checkpoints"), CheckpointConfig()).restore_state(step, s.abstract).params
    src = s.task.source
    batch = {k: np.stack([src[i][k] for i in range(examples)]) for k in src[0]}
    other = np.roll(np.arange(examples), 1)
    swapped = {**batch, **{k: batch[k][other] for k in ("ref", "render", "mask")}}
    dit, fm = teacher_model(config), FlowMatchingConfig(shift=config.flow.shift, text_dropout=0.0)
    keys = jnp.stack([jax.random.PRNGKey(i) for i in range(repeats)])
    losses = jax.vmap(lambda bt, k: teacher_loss(dit, fm, params, bt, k)[0], in_axes=(None, 0))
    both = quick(lambda a, b, k: (jnp.mean(losses(a, k)), jnp.mean(losses(b, k))), batch, swapped, keys)
    return float(both[0]), float(both[1])


def test_smoke_teacher_learns_and_uses_its_conditions(tmp_path):
    config = get_config(f"steps=100,every=0,workdir={tmp_path / 'run'}")
    result = train(config, devices=ONE)
    assert result.status == "done"
    loss = [r["loss"] for r in read_metrics(str(tmp_path / "run"))]
    assert len(loss) == 100 and all(np.isfinite(loss))
    assert np.mean(loss[-10:]) < 0.8 * np.mean(loss[:10])
    own, swapped = conditioned_losses(config, tmp_path / "run", 100)
    assert own < 0.92 * swapped  # the render / reference of the example itself explain its target


@pytest.mark.slow
def test_teacher_on_8_devices_equals_one_device(tmp_path):
    """The DiT's logical axes over (data 2, fsdp 2, tensor 2): same losses as one device."""
    args = "steps=4,every=0,batch=8,ema=0"
    train(get_config(f"{args},workdir={tmp_path / 'one'}"), devices=ONE)
    config = get_config(f"{args},mesh=2x2x2,workdir={tmp_path / 'eight'}")
    s = setup(config)
    assert s.shardings.params["blocks"]["ffn_0"]["kernel"].spec == jax.sharding.PartitionSpec(None, "fsdp", "tensor")
    train(config)
    a = [r["loss"] for r in read_metrics(str(tmp_path / "one"))]
    b = [r["loss"] for r in read_metrics(str(tmp_path / "eight"))]
    assert len(a) == len(b) == 4
    np.testing.assert_allclose(a, b, rtol=1e-5)


def test_sampler_is_guided_euler_on_the_teacher():
    """One Euler step from s = 1 to 0: x = noise - (v_u + 3 (v_c - v_u)) at cfg_scale 3, v_u with zero
    text (the formula this sampler always used); by default (cfg_scale 1) x = noise - v_c."""
    cfg = dit_variant("tiny", dim=32, ffn_dim=64, num_heads=2, num_layers=1, freq_dim=16, text_dim=16, text_len=4)
    dit = WanDiT(cfg)
    rng = np.random.default_rng(0)
    cond = StarConditions(*(jnp.asarray(rng.normal(size=(1, 3, 4, 4, c)), jnp.float32) for c in (16, 16, 4)))
    text = jnp.asarray(rng.normal(size=(1, 4, 16)), jnp.float32)
    params = quick(lambda k: dit.init(k, jnp.zeros((1, 6, 4, 4, 36)), jnp.zeros((1, 6)), text)["params"],
                   jax.random.PRNGKey(0))
    key = jax.random.PRNGKey(1)
    noise = jax.random.normal(key, (1, 3, 4, 4, 16))

    def sample_and_velocities(p):
        x = sample_teacher(dit, p, cond, text, key, num_steps=1, shift=3.0, cfg_scale=3.0)
        plain = sample_teacher(dit, p, cond, text, key, num_steps=1, shift=3.0)
        velocity = lambda tx: teacher_velocity(dit, p, noise, jnp.full((1,), 1000.0), cond, tx)  # noqa: E731
        return x, plain, velocity(text), velocity(jnp.zeros_like(text))

    x, plain, v_c, v_u = quick(sample_and_velocities, params)
    assert not np.allclose(np.asarray(v_c), np.asarray(v_u), atol=1e-3)  # the text matters
    np.testing.assert_allclose(np.asarray(x), np.asarray(noise - (v_u + 3.0 * (v_c - v_u))), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(plain), np.asarray(noise - v_c), rtol=1e-5, atol=1e-5)
    with pytest.raises(InputError, match="sample_teacher: cfg_scale"):
        sample_teacher(dit, params, cond, text, key, num_steps=1, cfg_scale=-1.0)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.model.dit.update(in_dim=20), r"in_dim 36 \(\[noisy \| mask \| render\]\)"),
    (lambda c: c.data.update(latent_hw=(5, 4)), r"latent_hw \(5, 4\) must be multiples of the DiT patch"),
    (lambda c: c.data.update(text_len=9), r"text_len 9 exceeds the model's text_len 4"),
    (lambda c: c.model.dit.update(num_heads=3), r"config\.model\.dit: dim 32 not divisible by num_heads 3"),
    (lambda c: c.data.update(conditioning="v9"), r"config\.data\.conditioning: conditioning convention 'v9'"),
    (lambda c: c.data.update(sources="synthetic"), r"config\.data\.sources: unknown config field; did you mean "
                                                    r"'source'\?"),
])
def test_model_and_data_mismatch_are_input_errors(tmp_path, edit, match):
    config = get_config(f"workdir={tmp_path}")
    with config.unlocked():
        edit(config)
    with pytest.raises(InputError, match=match):
        dry_run(config, devices=ONE)


def test_full_size_teacher_shards_over_8_devices():
    """The 1.3B teacher config (jax.eval_shape only): Wan2.1-1.3B with a 36-channel patch
    embedding, and params, Adam moments and EMA split 8 ways by fsdp (2.65 GiB per device)."""
    from experiments.train_teacher import get_config as teacher_config

    s = setup(teacher_config("variant=1.3B"))
    assert dict(s.mesh.shape) == {"data": 1, "fsdp": 8, "tensor": 1}
    # 1,418,996,800 parameters at in_dim 16 (diffusers' count, see tests/models/test_dit_parity.py); in_dim 36
    # adds 20 x (1 x 2 x 2) x 1536 to the patch embedding
    assert s.num_params == 1_418_996_800 + 20 * 4 * 1536
    leaves = jax.tree_util.tree_leaves(s.abstract)
    total = sum(a.size * a.dtype.itemsize for a in leaves)
    per_device = sum(math.prod(a.sharding.shard_shape(a.shape)) * a.dtype.itemsize for a in leaves)
    assert total == pytest.approx(4 * 4 * s.num_params, rel=1e-4)  # params + 2 moments + EMA, float32
    assert per_device < total / 8 * 1.01  # everything large is split
    assert s.task.flops_per_example > 3e14  # 24 latent frames x 1560 tokens: ~356 TFLOP per forward



@pytest.fixture(scope="module")
def standin(tmp_path_factory):
    """Stand-in latent datasets (tests/evaluation/standin.py): 64 train clips, and 2 with the
    mask convention of another convention's name in the metadata."""
    from tests.evaluation.standin import write_standin

    root = tmp_path_factory.mktemp("standin")
    return {"ok": write_standin(root / "ok", {"train": 64})[0],
            "v0": write_standin(root / "v0", {"train": 2}, conditioning="star-jax-v0")[0]}


def records_config(tmp_path, path, steps=4):
    config = get_config(f"steps={steps},every=0,workdir={tmp_path / 'run'}")
    with config.unlocked():
        config.data.update(source="records", path=str(path), split="train")
    return config


def test_records_source_gives_batches_the_teacher_accepts(tmp_path, standin):
    from star_jax.train import records
    from star_jax.train.data import batch_dataset, check_batch
    from star_jax.train.task import make_task
    from star_jax.train.teacher import FIELDS, TeacherRecords

    task = make_task(records_config(tmp_path, standin["ok"]))
    assert isinstance(task.source, TeacherRecords) and len(task.source) == 64
    batch = next(iter(batch_dataset(task.source, 4, seed=0, rows=(0, 4))))
    check_batch(batch, task.example_spec, 4, 1)
    assert sorted(batch) == sorted(FIELDS)  # render_rgb, example_id, ... stay behind
    # the rows are the dataset's examples, unchanged
    raw = records.open_split(standin["ok"], "train")
    match = [i for i in range(len(raw)) if np.array_equal(raw[i]["target"], batch["target"][0])]
    assert len(match) == 1 and all(np.array_equal(raw[match[0]][k], batch[k][0]) for k in FIELDS)


def test_teacher_learns_on_a_records_dataset(tmp_path, standin):
    result = train(records_config(tmp_path, standin["ok"], steps=40), devices=ONE)
    assert result.status == "done"
    loss = [r["loss"] for r in read_metrics(str(tmp_path / "run"))]
    assert len(loss) == 40 and np.mean(loss[-10:]) < 0.8 * np.mean(loss[:10])


@pytest.mark.parametrize("edit, match", [
    (lambda c, p: c.data.update(latent_hw=(4, 8)), r"example 0: field 'target' is \(3, 4, 4, 16\), the config "
                                                   r"needs \(3, 4, 8, 16\)"),
    (lambda c, p: c.data.update(text_len=3), r"example 0: field 'text' is \(4, 16\), the config needs \(3, 16\)"),
    (lambda c, p: c.data.update(path=p["v0"]), r"the latents were made with conditioning 'star-jax-v0', "
                                               r"config\.data\.conditioning is 'inspatio-release'"),
    (lambda c, p: c.data.update(path=p["v0"], conditioning="star-jax-v0"),
     r"mask values in \[-1, 1\], the 'star-jax-v0' convention has \[0, 1\]"),
    (lambda c, p: c.data.update(path=""), r"config\.data\.path: the records source needs"),
    (lambda c, p: c.data.update(split="valid"), r"no split 'valid'"),
])
def test_records_that_do_not_fit_are_input_errors(tmp_path, standin, edit, match):
    config = records_config(tmp_path, standin["ok"])
    with config.unlocked():
        edit(config, standin)
    with pytest.raises(InputError, match=match):
        dry_run(config, devices=ONE)


@pytest.mark.slow  # ~1.5 min on 2 busy CPU cores (a 3-step run, then its params restored three ways)
def test_export_teacher_writes_the_ema_params_and_the_conditioning(tmp_path):
    import json

    from benchmarks.teacher_quality import load_teacher
    from star_jax.checkpoint import CheckpointError
    from star_jax.checkpoint.export import export_teacher, main as export_main
    from star_jax.checkpoint.storage import restore_params
    from star_jax.inference.model import read_star_model_json

    config = get_config(f"steps=3,every=0,workdir={tmp_path / 'run'}")
    train(config, devices=ONE)
    out = export_teacher(str(tmp_path / "run"), str(tmp_path / "export"))
    s = setup(config, devices=ONE)
    state = Checkpointer(str(tmp_path / "run" / "checkpoints"), CheckpointConfig()).restore_state(3, s.abstract)
    exported = restore_params(f"{out}/dit")
    for a, b in zip(jax.tree_util.tree_leaves(exported), jax.tree_util.tree_leaves(state.ema_params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(jax.tree_util.tree_leaves(state.ema_params)[0], jax.tree_util.tree_leaves(state.params)[0])
    assert read_star_model_json(f"{out}/star_model.json").name == "inspatio-release"
    meta = json.loads((tmp_path / "export" / "teacher.json").read_text())
    assert meta["step"] == 3 and meta["params"] == "EMA" and meta["dit"]["dim"] == 32 and meta["train_wall_s"] > 0
    # the quality benchmark reads the export as it reads the workdir
    a, b = load_teacher(out), load_teacher(str(tmp_path / "run"))
    assert a["facts"]["step"] == b["facts"]["step"] == 3
    for x, y in zip(jax.tree_util.tree_leaves(a["params"]), jax.tree_util.tree_leaves(b["params"]), strict=True):
        np.testing.assert_array_equal(x, y)
    # a run of another task is refused
    (tmp_path / "toy").mkdir()
    (tmp_path / "toy" / "run.json").write_text(json.dumps({"config": {"task": "toy"}}))
    with pytest.raises(CheckpointError, match=r"toy/run\.json: a teacher export needs a run of task 'teacher', "
                                              r"found 'toy'"):
        export_main(["teacher", "--workdir", str(tmp_path / "toy"), "--out", str(tmp_path / "x")])
