"""grain batches: deterministic per seed, reshuffled per epoch, split over processes so that
the processes' rows put together are the one-process batch, an iterator state that restores
exactly, and a check that names the field that does not fit."""

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from star_jax.errors import InputError
from star_jax.train.data import batch_dataset, check_batch, process_rows
from star_jax.train.synthetic import SyntheticStarSource


class Indexed:
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"i": np.int64(i)}


def take(it, k):
    return [next(it)["i"].tolist() for _ in range(k)]


def test_same_seed_same_batches_and_epochs_reshuffle():
    a = take(iter(batch_dataset(Indexed(10), 5, seed=1, rows=(0, 5))), 4)
    b = take(iter(batch_dataset(Indexed(10), 5, seed=1, rows=(0, 5))), 4)
    c = take(iter(batch_dataset(Indexed(10), 5, seed=2, rows=(0, 5))), 4)
    assert a == b and a != c
    epoch1, epoch2 = a[0] + a[1], a[2] + a[3]
    assert sorted(epoch1) == sorted(epoch2) == list(range(10)) and epoch1 != epoch2


@pytest.mark.parametrize("processes", [2, 4])
def test_process_rows_put_together_are_the_one_process_batch(processes):
    whole = take(iter(batch_dataset(Indexed(37), 8, seed=0, rows=(0, 8))), 6)
    per = 8 // processes
    parts = [take(iter(batch_dataset(Indexed(37), 8, seed=0, rows=(p * per, (p + 1) * per))), 6)
             for p in range(processes)]
    assert [sum((parts[p][k] for p in range(processes)), []) for k in range(6)] == whole


def test_iterator_state_restores_exactly():
    it = iter(batch_dataset(Indexed(13), 4, seed=3, rows=(0, 4)))
    take(it, 5)
    state = it.get_state()
    expected = take(it, 4)
    again = iter(batch_dataset(Indexed(13), 4, seed=3, rows=(0, 4)))
    again.set_state(state)
    assert take(again, 4) == expected


def test_rows_from_the_sharding(mesh8):
    sharding = NamedSharding(mesh8, P(("data", "fsdp")))
    assert process_rows(sharding, 16) == (0, 16)  # one process holds every row
    assert process_rows(NamedSharding(mesh8, P()), 16) == (0, 16)


def test_check_batch_names_the_field():
    spec = {"x": jax.ShapeDtypeStruct((3,), np.float32)}
    check_batch({"x": np.zeros((2, 3), np.float32)}, spec, 2, 1)
    with pytest.raises(InputError, match=r"step 4: missing field\(s\) \['x'\]"):
        check_batch({"y": np.zeros((2, 3), np.float32)}, spec, 2, 4)
    with pytest.raises(InputError, match=r"field 'x' is \(2, 3\) float64, the model needs \(2, 3\) float32"):
        check_batch({"x": np.zeros((2, 3), np.float64)}, spec, 2, 1)
    with pytest.raises(InputError, match="no examples"):
        batch_dataset(Indexed(0), 2, 0, (0, 2))


def test_synthetic_examples_are_consistent():
    src = SyntheticStarSource(8, latent_frames=3, latent_hw=(4, 6), text_len=5, text_dim=7, seed=0, max_shift=1)
    a, b = src[3], src[3]
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert a["target"].shape == a["ref"].shape == a["render"].shape == (3, 4, 6, 16)
    assert a["mask"].shape == (3, 4, 6, 4) and a["text"].shape == (5, 7)
    for i in range(8):
        ex = src[i]
        valid = ex["mask"][..., 0] > 0
        assert set(np.unique(ex["mask"])) <= {-1.0, 1.0}
        np.testing.assert_array_equal(ex["render"][valid], ex["target"][valid])
        np.testing.assert_array_equal(ex["render"][~valid], 0.0)
        # the target is the reference panned by whole cells (wrapping)
        assert any(np.array_equal(np.roll(ex["ref"], (dy, dx), axis=(1, 2)), ex["target"])
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))
