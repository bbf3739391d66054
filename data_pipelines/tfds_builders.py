"""TFDS dataset folders (ArrayRecord files + dataset_info.json) written without TensorFlow, and
the features of the two datasets of the training-data contract.

    features = pixel_features(frames=9, height=96, width=160)
    write_dataset("/work/data/worlds_tiny", "star_worlds", features,
                  {"train": train_examples, "test": test_examples},   # callables -> (key, example)
                  metadata={"spec": {...}})

A written folder holds `dataset_info.json`, `features.json`, `metadata.json` and one
`<name>-<split>.array_record-00000-of-00001` per split; it is read by
`star_jax.train.records.open_split` (or `tfds.builder_from_directory(folder).as_data_source(split)`).
Records keep the order the example callables give (no TFDS shuffle): the training input pipeline
(`star_jax.train.data.batch_dataset`) shuffles.

Pixel clips (`star_worlds`, `star_7scenes`), T frames of H x W:
    source_rgb (T, H, W, 3) uint8, source_depth (T, H, W) float32 z-depth (0 = none),
    source_w2c (T, 4, 4) float32, target_rgb / target_depth / target_w2c alike,
    K (3, 3) float32 (pixels of this H, W), caption (text), example_id int64.
Latent clips (`star_latents_<name>`), n latent frames of h x w cells:
    target, ref, render (n, h, w, 16) float32 normalised latents, mask (n, h, w, 4) float32,
    text (L, D) float32, render_rgb (T, H, W, 3) uint8, render_valid (T, H, W) uint8, example_id int64.
"""

from __future__ import annotations

import os
import re
from typing import Any, Callable, Iterable, Mapping

import numpy as np

from star_jax.errors import InputError
from star_jax.io.files import staged_folder

VERSION = "1.0.0"
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_FIXED_FILES = ("dataset_info.json", "features.json", "metadata.json")


def add_output_arguments(parser, progress: bool = True) -> None:
    """The flags every dataset-writing command shares: --overwrite, --no_progress (when the
    command shows a progress bar), --debug."""
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset folder at --out")
    if progress:
        parser.add_argument("--no_progress", action="store_true")
    parser.add_argument("--debug", action="store_true", help="print the traceback of user errors too")


def quiet_tfds(log_warnings: bool = True) -> None:
    """TFDS's own progress bars off (the commands draw theirs); warnings to stderr."""
    import logging
    import sys

    import tensorflow_datasets as tfds

    if log_warnings:
        logging.basicConfig(level=logging.WARNING, format="%(message)s", stream=sys.stderr)
    tfds.disable_progress_bar()


def pixel_features(frames: int, height: int, width: int):
    """The FeaturesDict of a pixel-clip dataset (see the module docstring)."""
    import tensorflow_datasets as tfds

    T, H, W = frames, height, width
    video = lambda *shape, dtype: tfds.features.Tensor(shape=(T, H, W) + shape, dtype=dtype)  # noqa: E731
    return tfds.features.FeaturesDict({
        "source_rgb": video(3, dtype=np.uint8),
        "source_depth": video(dtype=np.float32),
        "source_w2c": tfds.features.Tensor(shape=(T, 4, 4), dtype=np.float32),
        "target_rgb": video(3, dtype=np.uint8),
        "target_depth": video(dtype=np.float32),
        "target_w2c": tfds.features.Tensor(shape=(T, 4, 4), dtype=np.float32),
        "K": tfds.features.Tensor(shape=(3, 3), dtype=np.float32),
        "caption": tfds.features.Text(),
        "example_id": tfds.features.Scalar(dtype=np.int64),
    })


def latent_features(latent_shape: tuple[int, int, int], mask_channels: int, text_shape: tuple[int, int],
                    frames: int, height: int, width: int, latent_channels: int = 16):
    """The FeaturesDict of a latent-clip dataset: latent_shape (n, h, w), text_shape (L, D),
    render_rgb / render_valid of T = frames pixel frames of height x width."""
    import tensorflow_datasets as tfds

    n, h, w = latent_shape
    lat = lambda c: tfds.features.Tensor(shape=(n, h, w, c), dtype=np.float32)  # noqa: E731
    return tfds.features.FeaturesDict({
        "target": lat(latent_channels),
        "ref": lat(latent_channels),
        "render": lat(latent_channels),
        "mask": lat(mask_channels),
        "text": tfds.features.Tensor(shape=tuple(text_shape), dtype=np.float32),
        "render_rgb": tfds.features.Tensor(shape=(frames, height, width, 3), dtype=np.uint8),
        "render_valid": tfds.features.Tensor(shape=(frames, height, width), dtype=np.uint8),
        "example_id": tfds.features.Scalar(dtype=np.int64),
    })


Examples = Callable[[], Iterable[tuple[Any, Mapping[str, Any]]]]


def dataset_files(folder: str) -> list[str]:
    """The entries of an existing TFDS dataset folder (what `--overwrite` may replace), or
    InputError when `folder` holds anything else."""
    entries = sorted(os.listdir(folder))
    if "dataset_info.json" not in entries:
        raise InputError(f"{folder}: output folder is not empty and is not a dataset folder (no "
                         f"dataset_info.json); give a new or empty folder")
    foreign = [e for e in entries if e not in _FIXED_FILES and ".array_record-" not in e]
    if foreign:
        raise InputError(f"{folder}: output folder holds files a dataset does not ({', '.join(foreign[:3])}); "
                         f"give a new or empty folder")
    return entries


def check_output(out: str, overwrite: bool) -> list[str]:
    """Raises InputError unless `out` is absent, empty, or (with overwrite) a dataset folder.
    Returns the names a new dataset may replace there."""
    out = os.path.abspath(out)
    if os.path.isdir(out) and os.listdir(out):
        if not overwrite:
            raise InputError(f"{out}: output folder exists and is not empty; pass --overwrite to replace a "
                             f"dataset there, or give a new folder")
        return dataset_files(out)
    if os.path.lexists(out) and not os.path.isdir(out):
        raise InputError(f"{out}: output folder: expected a folder (or nothing), found a file")
    return []


def write_dataset(out: str, name: str, features, splits: Mapping[str, Examples], metadata: Mapping[str, Any],
                  description: str = "", overwrite: bool = False) -> str:
    """Writes a TFDS dataset folder at `out` (atomically: staged beside it, then renamed) with one
    ArrayRecord file per split; `splits[split]()` yields (key, example) pairs, written in order and
    streamed to disk (TFDS's GeneratorBasedBuilder buffers a split in memory and, past 1 GB, spills
    through tf.io.gfile, which needs TensorFlow). `metadata` (JSON-able, stored in metadata.json)
    may be changed by the example callables while they run: it is written after the last example.
    Returns the absolute folder."""
    import tensorflow_datasets as tfds
    from array_record.python.array_record_module import ArrayRecordWriter

    if not _NAME.match(name):
        raise InputError(f"dataset name: expected lower_snake_case (e.g. star_worlds), got {name!r}")
    out = os.path.abspath(out)
    names = check_output(out, overwrite)
    with staged_folder(out, names) as run:
        infos = []
        for split, make in splits.items():
            path = os.path.join(run, f"{name}-{split}.array_record-00000-of-00001")
            writer = ArrayRecordWriter(path, "group_size:1")
            count, size = 0, 0
            try:
                for _key, example in make():
                    record = features.serialize_example(example)
                    writer.write(record)
                    count, size = count + 1, size + len(record)
            finally:
                writer.close()
            infos.append(tfds.core.SplitInfo(name=split, shard_lengths=[count], num_bytes=size))
        template = tfds.core.ShardedFileTemplate(data_dir=run, dataset_name=name, filetype_suffix="array_record",
                                                 template="{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}")
        tfds.folder_dataset.write_metadata(data_dir=run, features=features, split_infos=infos, version=VERSION,
                                           filename_template=template, check_data=False, description=description,
                                           metadata=tfds.core.MetadataDict(metadata), disable_shuffling=True)
    return out
