"""The train loop on the toy task (an MLP that compiles in seconds): resume after SIGTERM bit for
bit, NaN stops with the last good checkpoint intact, sharded equals unsharded, gradient
accumulation equals the whole batch, EMA, and clear errors for config typos and bad data."""

import json
import os
import signal

import flax.linen as nn
import jax
import numpy as np
import pytest

from experiments.train_smoke import get_config
from star_jax.errors import InputError
from star_jax.train import Checkpointer, CheckpointConfig, TrainingDiverged, dry_run, make_task, read_metrics, train
from star_jax.train.loop import setup


def toy_config(tmp_path, name="run", **args):
    arg = ",".join(["task=toy", f"workdir={tmp_path / name}"] + [f"{k}={v}" for k, v in args.items()])
    return get_config(arg)


def losses(workdir):
    return [(r["step"], r["loss"]) for r in read_metrics(str(workdir))]


ONE = jax.devices()[:1]


def test_resume_after_sigterm_is_bit_exact(tmp_path):
    """A run preempted by SIGTERM at step 7 (after the step-5 save) saves step 7, and the restarted
    run continues with the losses and parameters of an uninterrupted one, bit for bit."""
    args = dict(steps=14, every=5, decay="constant")
    full = train(toy_config(tmp_path, "full", **args), devices=ONE)
    assert full.status == "done" and full.last_checkpoint == 14

    def preempt(record):
        if record["step"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)

    cut = train(toy_config(tmp_path, "cut", **args), devices=ONE, on_step=preempt)
    assert (cut.status, cut.step, cut.last_checkpoint) == ("preempted", 7, 7)
    assert [s for s, _ in losses(tmp_path / "cut")] == list(range(1, 8))
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back

    resumed = train(toy_config(tmp_path, "cut", **args), devices=ONE)
    assert resumed.status == "done"
    assert losses(tmp_path / "cut") == losses(tmp_path / "full")  # same floats, steps 1..14 once each
    with open(tmp_path / "cut" / "run.json") as f:
        assert json.load(f)["resumed_from_step"] == 7

    s = setup(toy_config(tmp_path, "full", **args), devices=ONE)
    a = Checkpointer(str(tmp_path / "full" / "checkpoints"), CheckpointConfig()).restore_state(14, s.abstract)
    b = Checkpointer(str(tmp_path / "cut" / "checkpoints"), CheckpointConfig()).restore_state(14, s.abstract)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


class NaNAfter:
    """The toy source with NaN inputs from example `first_bad` on (batches are in order: no shuffle)."""

    def __init__(self, source, first_bad):
        self.source, self.first_bad = source, first_bad

    def __len__(self):
        return len(self.source)

    def __getitem__(self, i):
        ex = self.source[i]
        if i >= self.first_bad:
            ex = {**ex, "x": np.full_like(ex["x"], np.nan)}
        return ex


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    config = toy_config(tmp_path, steps=20, every=3, batch=4)
    with config.unlocked():
        config.run.shuffle = False
    task = make_task(config)
    # batch 6 (examples 20..23) is the first with NaN: step 6 is a save step, and must not be saved
    task = type(task)(**{**task.__dict__, "source": NaNAfter(task.source, 20)})
    with pytest.raises(TrainingDiverged, match=r"step 6: loss nan.*last good checkpoint: step 3"):
        train(config, task=task, devices=ONE)
    ckpt = Checkpointer(str(tmp_path / "run" / "checkpoints"), CheckpointConfig())
    assert ckpt.all_steps() == [3]
    state = ckpt.restore_state(3, setup(config, task=task, devices=ONE).abstract)
    assert int(state.step) == 3
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree_util.tree_leaves(state.params))
    assert [s for s, _ in losses(tmp_path / "run")] == list(range(1, 7))


def test_sharded_mesh_equals_one_device(tmp_path):
    """(data 2, fsdp 2, tensor 2) over 8 CPU devices: the params really are split, and the
    losses equal the one-device run's."""
    one = train(toy_config(tmp_path, "one", steps=6, every=0), devices=ONE)
    eight = toy_config(tmp_path, "eight", steps=6, every=0, mesh="2x2x2")
    s = setup(eight)
    assert s.shardings.params["up"]["kernel"].spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    assert s.shardings.opt_state[1][0].mu["up"]["kernel"].spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    train(eight)
    assert one.status == "done"
    a, b = losses(tmp_path / "one"), losses(tmp_path / "eight")
    assert [s for s, _ in a] == [s for s, _ in b]
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=2e-6)


def test_grad_accumulation_equals_whole_batch(tmp_path):
    """Without randomness in the loss, 4 micro-batches of 2 give the 8-example step (up to float
    summation order)."""
    whole = train(toy_config(tmp_path, "whole", steps=5, every=0, noise=0.0), devices=ONE)
    accum = train(toy_config(tmp_path, "accum", steps=5, every=0, noise=0.0, accum=4), devices=ONE)
    assert whole.status == accum.status == "done"
    a, b = losses(tmp_path / "whole"), losses(tmp_path / "accum")
    np.testing.assert_allclose([v for _, v in a], [v for _, v in b], rtol=1e-5)
    ga = [r["grad_norm"] for r in read_metrics(str(tmp_path / "whole"))]
    gb = [r["grad_norm"] for r in read_metrics(str(tmp_path / "accum"))]
    np.testing.assert_allclose(ga, gb, rtol=1e-5)


def test_ema_tracks_params(tmp_path):
    """EMA with decay d from step 0, against the init and the params saved at every step:
    ema_k = d ema_(k-1) + (1 - d) params_k, ema_0 = the init."""
    d = 0.5
    config = toy_config(tmp_path, steps=3, every=1, ema=d)
    with config.unlocked():
        config.checkpoint.max_to_keep = 5
    train(config, devices=ONE)
    s = setup(config, devices=ONE)
    ckpt = Checkpointer(str(tmp_path / "run" / "checkpoints"), CheckpointConfig())
    states = [ckpt.restore_state(k, s.abstract) for k in (1, 2, 3)]
    p = [np.asarray(st.params["up"]["kernel"]) for st in states]
    e = [np.asarray(st.ema_params["up"]["kernel"]) for st in states]
    k_init = jax.random.split(jax.random.PRNGKey(0))[0]  # as init_state draws the init
    p0 = np.asarray(nn.meta.unbox(s.task.init(k_init))["up"]["kernel"])
    np.testing.assert_allclose(e[0], d * p0 + (1 - d) * p[0], rtol=1e-6, atol=1e-7)
    expected = d**3 * p0 + d**2 * (1 - d) * p[0] + d * (1 - d) * p[1] + (1 - d) * p[2]
    np.testing.assert_allclose(e[2], expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("edit, match", [
    (lambda c: c.optim.update(lrr=1.0), r"config\.optim\.lrr: unknown config field; did you mean 'lr'\?"),
    (lambda c: c.update(optimizer={}), r"config\.optimizer: unknown config field; did you mean 'optim'\?"),
    (lambda c: c.update(task="teachr"), r"config\.task: unknown task 'teachr'"),
    (lambda c: c.optim.update(decay="cosin"), r"config\.optim\.decay: expected one of"),
    (lambda c: c.run.update(batch_size=5), r"batch_size 5.*2 data shards"),
    (lambda c: c.mesh.update(shape=(3, -1, 1)), r"config\.mesh\.shape \(3, -1, 1\): 8 devices are not divisible by 3"),
])
def test_config_mistakes_are_input_errors(tmp_path, edit, match):
    config = toy_config(tmp_path, mesh="2x1x-1")
    with config.unlocked():
        edit(config)
    with pytest.raises(InputError, match=match):
        dry_run(config)


def test_data_that_does_not_fit_the_model_is_an_input_error(tmp_path):
    config = toy_config(tmp_path)
    task = make_task(config)

    class Wrong:
        def __len__(self):
            return 10

        def __getitem__(self, i):
            return {"x": np.zeros(16, np.float32), "y": np.zeros(15, np.float32)}

    task = type(task)(**{**task.__dict__, "source": Wrong()})
    with pytest.raises(InputError, match=r"field 'y' is \(8, 15\) float32, the model needs \(8, 16\) float32"):
        dry_run(config, task=task, devices=ONE)


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    train(toy_config(tmp_path, steps=2, every=0), devices=ONE)
    config = toy_config(tmp_path, steps=4)
    with config.unlocked():
        config.toy.hidden = 24
    with pytest.raises(InputError, match=r"checkpoint .*/2: params/down/kernel is \(32, 16\) float32, this run's "
                                         r"model needs \(24, 16\)"):
        train(config, devices=ONE)
