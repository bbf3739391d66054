"""Reading the training-data contract's TFDS dataset folders (ArrayRecord files +
dataset_info.json, written by `data_pipelines`) without TensorFlow and without data_pipelines.

    source = open_split("/work/data/worlds_tiny", "train")   # grain random-access source
    len(source), source[0]["target_rgb"]                       # (T, H, W, 3) uint8; caption: str
    info = dataset_info("/work/data/worlds_tiny")               # features, split sizes, metadata
    it = iter(batch_dataset(source, 8, seed=0, rows=(0, 8)))    # star_jax.train.data

A record is a dict of NumPy arrays (scalars as 0-d arrays, e.g. example_id int64) and strings
as str. A folder, split or record that cannot be read raises `InputError` naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Mapping

import numpy as np

from star_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """name: the dataset name (file prefix); features: {field: (shape, dtype name)} (strings:
    shape (), dtype "string"); splits: {split: number of records}; metadata: the dict the
    writer stored (generator settings, seeds, a VAE fingerprint, ...); folder: absolute path."""

    name: str
    folder: str
    features: Mapping[str, tuple[tuple[int, ...], str]]
    splits: Mapping[str, int]
    metadata: Mapping[str, Any]


def _builder(data_dir: str):
    import tensorflow_datasets as tfds

    folder = os.path.abspath(os.fspath(data_dir))
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: dataset folder not found")
    if not os.path.isfile(os.path.join(folder, "dataset_info.json")):
        raise InputError(f"{folder}: not a dataset folder: expected dataset_info.json (a TFDS folder written by "
                         f"data_pipelines), found {sorted(os.listdir(folder))[:5]}")
    try:
        return tfds.builder_from_directory(folder)
    except Exception as e:  # noqa: BLE001 - tfds raises many kinds for a bad dataset_info.json
        raise InputError(f"{folder}/dataset_info.json: cannot read the dataset description "
                         f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e


def _feature_table(features) -> dict[str, tuple[tuple[int, ...], str]]:
    out = {}
    for name, feature in features.items():
        dtype = np.dtype(feature.np_dtype).name if feature.np_dtype != object else "string"
        out[name] = (tuple(feature.shape), "string" if dtype in ("object", "str", "bytes") else dtype)
    return out


def dataset_info(data_dir: str) -> DatasetInfo:
    """Feature shapes, split sizes and the writer's metadata of a dataset folder."""
    builder = _builder(data_dir)
    info = builder.info
    meta_path = os.path.join(os.fspath(builder.data_dir), "metadata.json")
    metadata: Mapping[str, Any] = {}
    if os.path.isfile(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as f:
                metadata = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"{meta_path}: cannot read the dataset metadata ({e})") from e
    return DatasetInfo(name=info.name, folder=os.fspath(builder.data_dir), features=_feature_table(info.features),
                       splits={k: int(v.num_examples) for k, v in info.splits.items()}, metadata=metadata)


class RecordSource:
    """A grain random-access source over one split: len(source), source[i] -> dict (see the
    module docstring). Picklable state is the folder and split; the reader opens lazily."""

    def __init__(self, data_dir: str, split: str):
        builder = _builder(data_dir)
        splits = dict(builder.info.splits)
        if split not in splits:
            raise InputError(f"{builder.data_dir}: no split {split!r} (the dataset has {sorted(splits)})")
        self.folder, self.split = os.fspath(builder.data_dir), split
        self.files = [os.fspath(p) for p in splits[split].filepaths]
        self._shard_ends = np.cumsum(list(splits[split].shard_lengths) or [0])
        missing = [p for p in self.files if not os.path.isfile(p)]
        if missing:
            raise InputError(f"{missing[0]}: record file of split {split!r} not found")
        try:
            self._source = builder.as_data_source(split)
        except Exception as e:  # noqa: BLE001 - array_record raises plain RuntimeError / ValueError
            raise InputError(f"{self.files[0]}: cannot open the record file ({type(e).__name__}: {e})") from e
        self._len = len(self._source)
        self._strings = [k for k, (_, dt) in _feature_table(builder.info.features).items() if dt == "string"]

    def __len__(self) -> int:
        return self._len

    def __getitem__(self, index: int) -> dict:
        if not -self._len <= index < self._len:
            raise IndexError(f"{self.folder} split {self.split!r}: record {index} of {self._len}")
        index = int(index) % self._len
        try:
            raw = self._source[index]
        except Exception as e:  # noqa: BLE001 - a corrupt chunk or proto: name the file and record
            raise InputError(f"{self._file_of(index)}: record {index} of split {self.split!r} cannot be read "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from e
        return {k: self._value(k, v) for k, v in raw.items()}

    def _value(self, name: str, v):
        if name in self._strings:
            return v.decode("utf-8") if isinstance(v, bytes) else str(v)
        return np.asarray(v)

    def _file_of(self, index: int) -> str:
        """The shard file holding record `index` (shards hold consecutive records)."""
        shard = int(np.searchsorted(self._shard_ends, index, side="right"))
        return self.files[min(shard, len(self.files) - 1)]

    def __repr__(self) -> str:
        return f"RecordSource({self.folder!r}, {self.split!r}, {self._len} records)"


def open_split(data_dir: str, split: str) -> RecordSource:
    """The records of `split` in the dataset folder `data_dir` (a grain random-access source)."""
    return RecordSource(data_dir, split)
