"""Training batches through grain: a deterministic shuffle per seed (reshuffled every epoch),
each process reading only its rows of every global batch, an iterator whose state is saved with
the checkpoints, and the check that a batch fits the task.

    rows = process_rows(batch_sharding, global_batch)          # this process's (start, stop)
    it = iter(batch_dataset(source, global_batch, seed, rows))  # grain DatasetIterator
    batch = next(it)                                            # {name: (stop - start, ...) array}
    check_batch(batch, task.example_spec, stop - start, step)
    global_batch = to_global(batch, batch_sharding, global_batch)

Global batch i is examples [i G, (i + 1) G) of the shuffled, repeated stream, so any number of
processes (and any mesh) sees the same examples in the same order as one process does.
"""

from __future__ import annotations

from typing import Any, Mapping

import grain
import jax
import numpy as np
from jax.sharding import NamedSharding

from star_jax.errors import InputError


def process_rows(sharding: NamedSharding, global_batch: int) -> tuple[int, int]:
    """The rows [start, stop) of a (global_batch, ...) array this process's devices hold."""
    index_map = sharding.addressable_devices_indices_map((global_batch,))
    starts = [idx[0].start or 0 for idx in index_map.values()]
    stops = [global_batch if idx[0].stop is None else idx[0].stop for idx in index_map.values()]
    start, stop = min(starts), max(stops)
    covered = set().union(*(range(a, b) for a, b in zip(starts, stops)))
    local = stop - start
    if covered != set(range(start, stop)) or global_batch % local or start % local:
        raise InputError(f"batch of {global_batch}: this process's devices hold rows {sorted(zip(starts, stops))}, "
                         f"which do not tile the batch in equal contiguous parts")
    return start, stop


def batch_dataset(source, global_batch: int, seed: int, rows: tuple[int, int], shuffle: bool = True,
                  threads: int = 2, prefetch: int = 2):
    """A grain IterDataset of this process's part (rows) of every global batch, read by `threads`
    threads, `prefetch` batches ahead (grain's defaults, 16 threads and 500 batches, would hold
    gigabytes of full-size latents)."""
    if len(source) == 0:
        raise InputError("training data: the source has no examples")
    start, stop = rows
    local = stop - start
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.seed(seed).shuffle()
    ds = ds.repeat(None).batch(local, drop_remainder=True)
    ds = ds[start // local::global_batch // local]
    return ds.to_iter_dataset(grain.ReadOptions(num_threads=threads, prefetch_buffer_size=prefetch))


def check_batch(batch: Mapping[str, Any], spec: Mapping[str, jax.ShapeDtypeStruct], rows: int, step: int) -> None:
    """Every field the task needs is present with shape (rows, *spec.shape) and spec's dtype."""
    if not isinstance(batch, Mapping):
        raise InputError(f"training data, step {step}: a batch must be a dict of arrays, got {type(batch).__name__}")
    missing = [k for k in spec if k not in batch]
    if missing:
        raise InputError(f"training data, step {step}: missing field(s) {missing}; the task needs "
                         f"{sorted(spec)}, the data has {sorted(batch)}")
    for name, want in spec.items():
        x = batch[name]
        shape, dtype = tuple(np.shape(x)), np.asarray(x).dtype if not hasattr(x, "dtype") else x.dtype
        if shape != (rows,) + tuple(want.shape) or np.dtype(dtype) != np.dtype(want.dtype):
            raise InputError(f"training data, step {step}: field {name!r} is {shape} {np.dtype(dtype)}, the model "
                             f"needs {(rows,) + tuple(want.shape)} {np.dtype(want.dtype)}")


def to_global(batch: Mapping[str, Any], sharding: NamedSharding, global_batch: int) -> dict:
    """This process's rows -> global jax arrays (B, ...) laid out by `sharding`."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v), (global_batch,) + np.shape(v)[1:])
            for k, v in batch.items()}
