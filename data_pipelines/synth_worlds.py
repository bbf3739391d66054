"""Renders procedural worlds (`data_pipelines.worlds`) into the pixel-clip TFDS dataset.

    python -m data_pipelines.synth_worlds --num_worlds 320 --out /work/data/worlds_tiny --workers 2
    python -m data_pipelines.synth_worlds --num_worlds 320 --out /work/data/worlds_tiny_flat --workers 2 \
        --appearance flat   # the same worlds, cameras, depths and captions, flat-shaded
    # 96x160x9: ~2.5-5 s per world per core; 320 worlds took 27 min with 2 workers on a shared
    # 2-core machine; 351 MB on disk (1.9 MB per clip before ArrayRecord's compression)
    # 96x160x21, 120 worlds, 2 workers on the shared machine: textured 1254 s (309 MB), flat 1058 s
    # (216 MB); in CPU time flat needs ~0.5x textured (3 worlds at 96x160x9: 4.6 s vs 9.8 s)

World seeds are first_seed .. first_seed + num_worlds - 1 and the example_id of each clip; a
world is held out for "test" when seed % k == k - 1, k = round(1 / test_fraction), so the test
worlds of a seed do not depend on how many worlds a run renders, and never appear in "train".
Records are in seed order within a split. A seed whose camera paths never fit its scene is
skipped and named in the metadata (`skipped_seeds`). `--appearance flat` renders every object in
its texture's mean colour (`data_pipelines.worlds.textures.mean_albedo`), everything else equal:
two runs with the same arguments but the appearance hold the same example_ids, depths, cameras
and captions (the metadata records `appearance`). The folder is written whole or not at all
(staged beside --out, then renamed); features: `data_pipelines.tfds_builders.pixel_features`.
"""

from __future__ import annotations

import dataclasses
import logging
import multiprocessing
import sys
import time
from typing import Iterator

import numpy as np

from data_pipelines.tfds_builders import add_output_arguments, check_output, pixel_features, quiet_tfds, write_dataset
from star_jax import cli
from star_jax.errors import InputError

log = logging.getLogger("data_pipelines.synth_worlds")


def test_every(test_fraction: float) -> int:
    """k of the held-out rule (seed % k == k - 1 is a test world)."""
    if not 0 < test_fraction <= 0.5:
        raise InputError(f"--test_fraction: expected a value in (0, 0.5], got {test_fraction}")
    return max(2, int(round(1.0 / test_fraction)))


def split_seeds(first_seed: int, num_worlds: int, test_fraction: float) -> dict[str, list[int]]:
    """{"train": seeds, "test": seeds}: disjoint, together first_seed .. first_seed + num_worlds - 1."""
    k = test_every(test_fraction)
    seeds = range(first_seed, first_seed + num_worlds)
    test = [s for s in seeds if s % k == k - 1]
    train = [s for s in seeds if s % k != k - 1]
    if not train or not test:
        raise InputError(f"--num_worlds {num_worlds} from seed {first_seed}: split gives {len(train)} train and "
                         f"{len(test)} test worlds (a test world every {k} seeds); render more worlds")
    return {"train": train, "test": test}


def check_sizes(height: int, width: int, frames: int) -> None:
    """H, W multiples of 16 (VAE stride 8, DiT patch 2); T = 1 + 4k (the causal VAE's frames)."""
    if height < 16 or width < 16 or height % 16 or width % 16:
        raise InputError(f"--height/--width: expected multiples of 16 (VAE stride 8 x DiT patch 2), got "
                         f"{height}x{width}")
    if frames < 1 or (frames - 1) % 4:
        raise InputError(f"--frames: expected 1 + 4k frames (the causal VAE's 4x time stride), got {frames}")


def world_example(seed: int, spec) -> dict:
    """One world as a pixel-clip example (raises RuntimeError when no camera path fits)."""
    from data_pipelines.worlds import sample_world

    ex = sample_world(seed, spec)
    return {
        "source_rgb": ex.source_rgb, "source_depth": ex.source_depth.astype(np.float32),
        "source_w2c": ex.source_w2c.astype(np.float32),
        "target_rgb": ex.target_rgb, "target_depth": ex.target_depth.astype(np.float32),
        "target_w2c": ex.target_w2c.astype(np.float32),
        "K": ex.K.astype(np.float32), "caption": ex.caption, "example_id": np.int64(seed),
    }


def _render(job) -> tuple[int, dict | None, str]:
    seed, spec = job
    try:
        return seed, world_example(seed, spec), ""
    except RuntimeError as e:  # no camera path fits this scene: skip the seed, say so
        return seed, None, str(e)


def _examples(seeds, spec, imap, bar, skipped: list) -> Iterator[tuple[int, dict]]:
    for seed, example, error in imap(_render, [(s, spec) for s in seeds]):
        bar.update(1)
        if example is None:
            log.warning("seed %d skipped: %s", seed, error)
            skipped.append(seed)
            continue
        yield seed, example


def build(num_worlds: int, out: str, height: int = 96, width: int = 160, frames: int = 9, workers: int = 1,
          first_seed: int = 0, test_fraction: float = 0.1, name: str = "star_worlds", overwrite: bool = False,
          progress: bool = True, command: str = "", appearance: str = "textured") -> dict:
    """Renders the worlds and writes the dataset folder `out`; returns its metadata."""
    from tqdm import tqdm

    from data_pipelines.worlds import APPEARANCES, WorldSpec

    check_sizes(height, width, frames)
    if appearance not in APPEARANCES:
        raise InputError(f"--appearance: expected one of {', '.join(APPEARANCES)}, got {appearance!r}")
    if num_worlds < 2 or workers < 1 or first_seed < 0:
        raise InputError(f"--num_worlds >= 2, --workers >= 1, --first_seed >= 0 expected, got {num_worlds}, "
                         f"{workers}, {first_seed}")
    seeds = split_seeds(first_seed, num_worlds, test_fraction)
    check_output(out, overwrite)  # in milliseconds, before any rendering
    spec = WorldSpec(height=height, width=width, num_frames=frames, appearance=appearance)
    skipped: list[int] = []
    metadata = {"generator": "data_pipelines.synth_worlds", "command": command, "spec": dataclasses.asdict(spec),
                "appearance": appearance, "first_seed": first_seed, "num_worlds": num_worlds,
                "test_fraction": test_fraction, "test_every": test_every(test_fraction), "seeds": seeds, "skipped_seeds": skipped}
    bar = tqdm(total=num_worlds, desc="worlds", unit="world", file=sys.stderr, disable=not progress)
    pool = multiprocessing.get_context("spawn").Pool(workers) if workers > 1 else None
    imap = pool.imap if pool is not None else map
    start = time.time()
    try:
        splits = {split: (lambda s=s: _examples(s, spec, imap, bar, skipped)) for split, s in seeds.items()}
        write_dataset(out, name, pixel_features(frames, height, width), splits, metadata,
                      description=f"procedural worlds {height}x{width}x{frames} ({appearance}), seeds {first_seed}.."
                                  f"{first_seed + num_worlds - 1}", overwrite=overwrite)
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
    metadata["seconds"] = time.time() - start
    for split in seeds:
        seeds[split] = [s for s in seeds[split] if s not in skipped]
    return metadata


def job(argv) -> None:
    parser = cli.ArgumentParser(prog="python -m data_pipelines.synth_worlds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_worlds", type=int, required=True)
    parser.add_argument("--out", required=True, help="dataset folder to write (new or empty)")
    parser.add_argument("--height", type=int, default=96)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--workers", type=int, default=2, help="rendering processes")
    parser.add_argument("--first_seed", type=int, default=0)
    parser.add_argument("--test_fraction", type=float, default=0.1)
    parser.add_argument("--name", default="star_worlds", help="dataset name (file prefix)")
    parser.add_argument("--appearance", default="textured", choices=("textured", "flat"),
                        help="surface colours: procedural textures, or each object its texture's mean colour")
    add_output_arguments(parser)
    args = parser.parse_args(argv)
    quiet_tfds()
    meta = build(args.num_worlds, args.out, args.height, args.width, args.frames, args.workers, args.first_seed,
                 args.test_fraction, args.name, args.overwrite, not args.no_progress,
                 command="python -m data_pipelines.synth_worlds " + " ".join(argv), appearance=args.appearance)
    counts = {k: len(v) for k, v in meta["seeds"].items()}
    print(f"wrote {args.out}: {counts} {args.appearance} worlds of {args.frames}x{args.height}x{args.width} in "
          f"{meta['seconds']:.0f} s"
          + (f"; skipped seeds {meta['skipped_seeds']}" if meta["skipped_seeds"] else ""))


if __name__ == "__main__":
    cli.main(job, sys.argv[1:])
