"""star_jax.train.records reads what data_pipelines.tfds_builders writes: exact round trip, the
writer's metadata, InputError for every unreadable folder / split / record, grain batching."""

import json
import os

import numpy as np
import pytest

from data_pipelines.tfds_builders import pixel_features, write_dataset
from star_jax.errors import InputError
from star_jax.train.data import batch_dataset
from star_jax.train.records import dataset_info, open_split

T, H, W = 5, 16, 32


def clip(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    w2c = np.tile(np.eye(4, dtype=np.float32), (T, 1, 1))
    w2c[:, 0, 3] = rng.normal(size=T)
    return {
        "source_rgb": rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
        "source_depth": rng.uniform(0, 9, (T, H, W)).astype(np.float32),
        "source_w2c": w2c, "target_rgb": rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8),
        "target_depth": rng.uniform(0, 9, (T, H, W)).astype(np.float32), "target_w2c": w2c[::-1].copy(),
        "K": rng.normal(size=(3, 3)).astype(np.float32), "caption": f"world {seed}: a grey box, ünïcode",
        "example_id": np.int64(seed),
    }


SPLITS = {"train": [0, 1, 2, 4, 5, 6], "test": [3, 7]}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("records") / "pixels")
    splits = {s: (lambda seeds=seeds: ((i, clip(i)) for i in seeds)) for s, seeds in SPLITS.items()}
    write_dataset(out, "star_worlds", pixel_features(T, H, W), splits, {"seeds": SPLITS, "vae": "abc123"})
    return out


def test_round_trip_is_exact_and_in_order(data_dir):
    for split, seeds in SPLITS.items():
        source = open_split(data_dir, split)
        assert len(source) == len(seeds)
        for i, seed in enumerate(seeds):
            got, want = source[i], clip(seed)
            assert sorted(got) == sorted(want)
            for k, v in want.items():
                if k == "caption":
                    assert isinstance(got[k], str) and got[k] == v
                else:
                    assert isinstance(got[k], np.ndarray) and got[k].dtype == np.asarray(v).dtype, k
                    np.testing.assert_array_equal(got[k], v)
        np.testing.assert_array_equal(source[-1]["example_id"], seeds[-1])
        with pytest.raises(IndexError):
            source[len(seeds)]


def test_dataset_info(data_dir):
    info = dataset_info(data_dir)
    assert info.name == "star_worlds" and info.splits == {"train": 6, "test": 2}
    assert info.features["source_rgb"] == ((T, H, W, 3), "uint8")
    assert info.features["source_depth"] == ((T, H, W), "float32")
    assert info.features["caption"] == ((), "string") and info.features["example_id"] == ((), "int64")
    assert info.metadata == {"seeds": SPLITS, "vae": "abc123"}


def test_missing_folder_split_and_files(data_dir, tmp_path):
    with pytest.raises(InputError, match="dataset folder not found"):
        open_split(str(tmp_path / "nope"), "train")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.txt").write_text("x")
    with pytest.raises(InputError, match="dataset_info.json"):
        dataset_info(str(tmp_path / "junk"))
    with pytest.raises(InputError, match=r"no split 'val' \(the dataset has \['test', 'train'\]\)"):
        open_split(data_dir, "val")
    broken = tmp_path / "broken"
    os.system(f"cp -r {data_dir} {broken}")
    os.remove(broken / "star_worlds-test.array_record-00000-of-00001")
    with pytest.raises(InputError, match="star_worlds-test.array_record.*not found"):
        open_split(str(broken), "test")
    (broken / "dataset_info.json").write_text("{not json")
    with pytest.raises(InputError, match="dataset_info.json: cannot read"):
        open_split(str(broken), "train")


def test_corrupt_record_names_file_and_record(data_dir, tmp_path):
    bad = tmp_path / "bad"
    os.system(f"cp -r {data_dir} {bad}")
    path = bad / "star_worlds-train.array_record-00000-of-00001"
    raw = bytearray(path.read_bytes())
    mid = len(raw) // 2
    raw[mid:mid + 4096] = bytes(b ^ 0xFF for b in raw[mid:mid + 4096])
    path.write_bytes(bytes(raw))
    source = open_split(str(bad), "train")
    errors = []
    for i in range(len(source)):
        try:
            source[i]
        except InputError as e:
            errors.append((i, str(e)))
    assert errors, "flipping 4 KiB in the middle of the file went unnoticed"
    i, msg = errors[0]
    assert str(path) in msg and f"record {i} of split 'train'" in msg and "\n" not in msg


def test_grain_batches_shuffle_deterministically(data_dir):
    source = open_split(data_dir, "train")

    def epoch_ids(seed):
        it = iter(batch_dataset(source, 2, seed, (0, 2)))
        return [int(i) for _ in range(3) for i in next(it)["example_id"]]

    a, b, c = epoch_ids(0), epoch_ids(0), epoch_ids(1)
    assert a == b and sorted(a) == SPLITS["train"]  # one epoch: every train record once
    assert a != c and sorted(c) == SPLITS["train"]
    batch = next(iter(batch_dataset(source, 2, 0, (0, 2))))
    assert batch["target_rgb"].shape == (2, T, H, W, 3) and batch["target_rgb"].dtype == np.uint8
    want = {int(i): clip(int(i))["target_rgb"] for i in batch["example_id"]}
    for row, i in enumerate(batch["example_id"]):
        np.testing.assert_array_equal(batch["target_rgb"][row], want[int(i)])


def test_metadata_json_is_what_the_writer_stored(data_dir):
    with open(os.path.join(data_dir, "metadata.json"), encoding="utf-8") as f:
        assert json.load(f)["vae"] == "abc123"


def test_writer_streams_past_the_tfds_shuffle_buffer(tmp_path, monkeypatch):
    """TFDS's GeneratorBasedBuilder buffers a split in memory and past MAX_MEM_BUFFER_SIZE (1 GB)
    spills through tf.io.gfile, which needs TensorFlow (a 640-world run died there). With the
    limit at 1 byte that path would be taken at the first example: write_dataset must not use it."""
    import sys

    from tensorflow_datasets.core import shuffle

    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1)
    out = str(tmp_path / "big")
    write_dataset(out, "star_worlds", pixel_features(T, H, W), {"train": lambda: ((i, clip(i)) for i in range(5)),
                                                                "test": lambda: iter([(9, clip(9))])}, {})
    source = open_split(out, "train")
    assert [int(source[i]["example_id"]) for i in range(5)] == list(range(5))
    np.testing.assert_array_equal(source[4]["source_depth"], clip(4)["source_depth"])
    assert dataset_info(out).splits == {"train": 5, "test": 1}
    assert "tensorflow" not in sys.modules
