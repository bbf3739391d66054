"""data_pipelines.synth_worlds: the held-out split by seed, the written records against a fresh
render of each world (exact), the flat-shaded twin dataset, the job's refusals, the worker pool."""

import os

import numpy as np
import pytest

from data_pipelines import synth_worlds
from data_pipelines.worlds import WorldSpec
from star_jax import cli
from star_jax.errors import InputError
from star_jax.train.records import dataset_info, open_split

H, W, T = 32, 48, 5
SPEC = WorldSpec(height=H, width=W, num_frames=T)


def test_split_is_deterministic_disjoint_and_stable():
    a = synth_worlds.split_seeds(0, 40, 0.1)
    assert a["test"] == [9, 19, 29, 39]
    assert sorted(a["train"] + a["test"]) == list(range(40)) and not set(a["train"]) & set(a["test"])
    assert a == synth_worlds.split_seeds(0, 40, 0.1)
    bigger = synth_worlds.split_seeds(0, 640, 0.1)  # a world held out in a small run stays held out
    assert set(a["test"]) <= set(bigger["test"]) and not set(a["test"]) & set(bigger["train"])
    b = synth_worlds.split_seeds(1000, 3, 1 / 3)
    assert b == {"train": [1000, 1002], "test": [1001]}  # 1001 % 3 == 2
    with pytest.raises(InputError, match="0 test worlds"):
        synth_worlds.split_seeds(0, 5, 0.1)
    with pytest.raises(InputError, match="test_fraction"):
        synth_worlds.split_seeds(0, 50, 0.0)


@pytest.fixture(scope="module")
def worlds(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synth") / "worlds")
    meta = synth_worlds.build(3, out, H, W, T, workers=1, test_fraction=0.34, progress=False)
    return out, meta


def test_records_equal_a_fresh_render(worlds):
    out, meta = worlds
    assert meta["seeds"] == {"train": [0, 1], "test": [2]} and meta["skipped_seeds"] == []
    info = dataset_info(out)
    assert info.splits == {"train": 2, "test": 1} and info.name == "star_worlds"
    assert info.metadata["spec"]["height"] == H and info.metadata["seeds"] == meta["seeds"]
    assert info.features["target_depth"] == ((T, H, W), "float32")
    for split, seeds in meta["seeds"].items():
        source = open_split(out, split)
        assert [int(source[i]["example_id"]) for i in range(len(source))] == seeds
        for i, seed in enumerate(seeds):
            got, want = source[i], synth_worlds.world_example(seed, SPEC)
            assert got["caption"] == want["caption"] and len(got["caption"]) > 10
            for k in ("source_rgb", "source_depth", "source_w2c", "target_rgb", "target_depth", "target_w2c", "K"):
                assert got[k].dtype == want[k].dtype and got[k].shape == want[k].shape, k
                np.testing.assert_array_equal(got[k], want[k], err_msg=f"seed {seed} {k}")
            assert got["source_rgb"].std() > 10 and (got["source_depth"] > 0).mean() > 0.5  # a real scene
            assert not np.array_equal(got["source_w2c"], got["target_w2c"])


def test_flat_twin_has_the_same_examples_but_the_colours(worlds, tmp_path):
    """--appearance flat: the same example_ids per split, and every field but the RGB equal."""
    out, meta = worlds
    flat = str(tmp_path / "flat")
    flat_meta = synth_worlds.build(3, flat, H, W, T, workers=1, test_fraction=0.34, progress=False, appearance="flat")
    assert flat_meta["seeds"] == meta["seeds"]
    info = dataset_info(flat)
    assert info.metadata["appearance"] == "flat" and info.metadata["spec"]["appearance"] == "flat"
    assert dataset_info(out).metadata["appearance"] == "textured"
    for split in meta["seeds"]:
        a, b = open_split(out, split), open_split(flat, split)
        assert len(a) == len(b)
        for i in range(len(a)):
            assert a[i]["caption"] == b[i]["caption"]
            for k in ("example_id", "source_depth", "source_w2c", "target_depth", "target_w2c", "K"):
                np.testing.assert_array_equal(a[i][k], b[i][k], err_msg=k)
            for k in ("source_rgb", "target_rgb"):
                assert np.abs(a[i][k].astype(np.int16) - b[i][k]).mean() > 3.0, k
    assert cli.execute(synth_worlds.job, ["--num_worlds", "3", "--out", str(tmp_path / "x"), "--appearance",
                                          "matte"]) == 2
    assert not os.path.exists(tmp_path / "x")


def test_refusals(worlds, tmp_path):
    out, _ = worlds
    with pytest.raises(InputError, match="not empty; pass --overwrite"):
        synth_worlds.build(3, out, H, W, T, test_fraction=0.34, progress=False)
    with pytest.raises(InputError, match="multiples of 16"):
        synth_worlds.build(3, str(tmp_path / "a"), 40, W, T, test_fraction=0.34, progress=False)
    with pytest.raises(InputError, match="1 \\+ 4k frames"):
        synth_worlds.build(3, str(tmp_path / "a"), H, W, 6, test_fraction=0.34, progress=False)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a dataset folder"):
        synth_worlds.build(3, str(foreign), H, W, T, test_fraction=0.34, overwrite=True, progress=False)
    assert (foreign / "notes.txt").read_text() == "mine" and not os.path.exists(tmp_path / "a")
    # the job: one line on stderr, exit 2
    assert cli.execute(synth_worlds.job, ["--num_worlds", "3", "--out", out, "--test_fraction", "0.34",
                                          "--height", str(H), "--width", str(W), "--frames", str(T)]) == 2


def test_overwrite_replaces_a_dataset(tmp_path):
    out = str(tmp_path / "w")
    synth_worlds.build(2, out, 16, 16, 1, test_fraction=0.5, progress=False)
    synth_worlds.build(2, out, 16, 16, 1, first_seed=10, test_fraction=0.5, overwrite=True, progress=False)
    assert int(open_split(out, "train")[0]["example_id"]) == 10
    assert sorted(os.listdir(out)) == sorted(["dataset_info.json", "features.json", "metadata.json",
                                              "star_worlds-train.array_record-00000-of-00001",
                                              "star_worlds-test.array_record-00000-of-00001"])


@pytest.mark.slow
def test_worker_pool_writes_the_same_records(worlds, tmp_path):
    out, meta = worlds
    pooled = str(tmp_path / "pooled")
    synth_worlds.build(3, pooled, H, W, T, workers=2, test_fraction=0.34, progress=False)
    for split in meta["seeds"]:
        a, b = open_split(out, split), open_split(pooled, split)
        for i in range(len(a)):
            for k, v in a[i].items():
                np.testing.assert_array_equal(b[i][k], v)
