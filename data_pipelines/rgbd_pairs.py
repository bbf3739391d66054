"""Real source -> target clip pairs from a 7-Scenes RGB-D sequence, in the pixel-clip schema.

    python -m data_pipelines.rgbd_pairs --data ../shared/data/rgbd_7scenes_redkitchen_seq \
        --out /work/data/7scenes_tiny [--num_train 400 --num_test 32 --stride 2]

A 7-Scenes sequence folder holds `frame-XXXXXX.color.jpg` (or `.png`, 640x480), `.depth.png`
(16-bit millimetres, 0 = no reading), `.pose.txt` (4x4 camera-to-world, OpenCV axes) and one
`camera-intrinsics.txt`. Every frame is brought to the dataset's (H, W) once:
  * colour: resize to cover by area averaging (PIL's BOX filter: each output pixel is the mean of
    the source pixels its footprint covers; 640x480 -> 128x96 is exactly the mean of 5x5 blocks),
    then a centre crop (`star_jax.io.video.crop_info`);
  * depth: metres (`star_jax.io.manifest.read_depth`, scale 0.001), resized by nearest sampling
    (`manifest.crop_depth`: at 5x that is each block's centre pixel, which sits exactly at the
    output pixel's centre), so depth values are never mixed across an edge; 0 stays "no reading";
  * K: `star_jax.geometry.resize_intrinsics` with the same scale and crop, exact for pixel
    centres at integer coordinates (u -> s (u + 0.5) - 0.5 - offset);
  * w2c: the inverse of the pose after projecting its rotation onto the nearest rotation (the
    files' R R^T differs from I by up to 2.4e-4), so every w2c is an exact rigid transform.

A pair is a source clip (frames s, s + stride, ..., T frames) and a target clip (frames t, t +
stride, ...): target frame k is seen from camera t + k stride and shows the same static kitchen
as source frame k. A pair is kept when the source points of each time-aligned frame pair land
inside the target image often enough (the view overlap: the fraction of a source frame's valid
depth pixels that project in front of the target camera and inside its image, occlusion
ignored): mean over the clip in [min_overlap, max_overlap], every frame >= min_frame_overlap,
so the render mask is neither empty nor full. Pairs are drawn without replacement by a seeded
generator. Train and test come from disjoint frame ranges (frames [0, 400) and [400, 500) by
default): both clips of a pair lie inside one range, so no frame is in both splits.

Each example (the pixel-clip contract of `star_jax.train.records`): source_rgb / target_rgb
(T, H, W, 3) uint8, source_depth / target_depth (T, H, W) float32 metres, source_w2c /
target_w2c (T, 4, 4) float32, K (3, 3) float32, caption, example_id = 1000 s + t (int64: both
start frames, as a 7-Scenes sequence has at most 1000 frames).
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
from typing import Iterator

import jax.numpy as jnp
import numpy as np

from star_jax.errors import InputError
from star_jax.geometry.cameras import invert_rigid, resize_intrinsics
from star_jax.geometry.trajectory import TrajectoryError, check_w2c, load_intrinsics_file, load_w2c_file
from star_jax.io.manifest import ManifestError, crop_depth, index_depth_folder, read_depth
from star_jax.io.video import crop_info

CAPTION = "a kitchen with red cupboards, shelves of leaflets, screens and a wooden table"
DEPTH_SCALE = 0.001  # 7-Scenes depth PNGs are millimetres
COLOR_EXTENSIONS = (".color.jpg", ".color.png")


@dataclasses.dataclass(frozen=True)
class PairSpec:
    """What a pair dataset holds: sizes, the frame stride, the overlap window and the split."""

    height: int = 96
    width: int = 128
    num_frames: int = 9  # T per clip (9 = 3 latent frames of the causal VAE)
    stride: int = 2  # source frames between consecutive clip frames
    min_overlap: float = 0.3  # mean view overlap of a pair's time-aligned frames, lower bound
    max_overlap: float = 0.85  # and upper bound (a near copy of the source teaches nothing)
    min_frame_overlap: float = 0.1  # every frame of the target sees some of the source
    train_frames: tuple[int, int] = (0, 400)  # [first, stop) of the sequence's frames
    test_frames: tuple[int, int] = (400, 500)
    caption: str = CAPTION

    def __post_init__(self):
        if self.height <= 0 or self.width <= 0 or self.height % 16 or self.width % 16:
            raise InputError(f"PairSpec: expected height and width positive multiples of 16, found "
                             f"{self.height}x{self.width}")
        if self.num_frames < 1 or self.stride < 1:
            raise InputError(f"PairSpec: expected num_frames >= 1 and stride >= 1, found {self.num_frames}, "
                             f"{self.stride}")
        if not 0 <= self.min_overlap < self.max_overlap <= 1:
            raise InputError(f"PairSpec: expected 0 <= min_overlap < max_overlap <= 1, found "
                             f"{self.min_overlap}, {self.max_overlap}")
        (a, b), (c, d) = self.train_frames, self.test_frames
        if not (0 <= a < b and 0 <= c < d) or max(a, c) < min(b, d):
            raise InputError(f"PairSpec: expected disjoint frame ranges [first, stop), found train {a}-{b}, "
                             f"test {c}-{d}")

    @property
    def span(self) -> int:
        """Sequence frames a clip covers, first to last inclusive."""
        return (self.num_frames - 1) * self.stride + 1

    def frame_range(self, split: str) -> tuple[int, int]:
        if split not in ("train", "test"):
            raise InputError(f"split: expected 'train' or 'test', found {split!r}")
        return self.train_frames if split == "train" else self.test_frames


@dataclasses.dataclass(frozen=True)
class RGBDSequence:
    """A sequence at the dataset's resolution; index n is frame `frame_ids[n]` of the folder."""

    rgb: np.ndarray  # (N, H, W, 3) uint8
    depth: np.ndarray  # (N, H, W) float32 metres, 0 = no reading
    w2c: np.ndarray  # (N, 4, 4) float32
    K: np.ndarray  # (3, 3) float32, for (H, W)
    frame_ids: np.ndarray  # (N,) int64, consecutive
    folder: str


# ----------------------------------------------------------------------------------- reading
def resize_rgb_area(rgb: np.ndarray, dst_hw: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) uint8 -> (H, W, 3) uint8: area resize to cover, then centre crop (as crop_info)."""
    from PIL import Image

    info = crop_info(rgb.shape[:2], dst_hw)
    rw, rh = int(round(rgb.shape[1] * info.scale[0])), int(round(rgb.shape[0] * info.scale[1]))
    small = np.asarray(Image.fromarray(rgb).resize((rw, rh), Image.Resampling.BOX))
    (ox, oy), (H, W) = info.offset, dst_hw
    return small[oy:oy + H, ox:ox + W]


def resized_intrinsics(K: np.ndarray, src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> np.ndarray:
    """K (3, 3) of a (h, w) image -> K of the (H, W) image `resize_rgb_area` / `crop_depth` make
    (float32 values, as `geometry.resize_intrinsics` computes them, returned as float64)."""
    info = crop_info(src_hw, dst_hw)
    return np.asarray(resize_intrinsics(np.asarray(K, np.float64), info.scale, info.offset), np.float64)


def pose_to_w2c(c2w: np.ndarray) -> np.ndarray:
    """Camera-to-world (..., 4, 4) -> world-to-camera (..., 4, 4) float32: the rotation projected
    onto the nearest rotation (polar decomposition by SVD, in float64), then `invert_rigid`."""
    c2w = np.array(c2w, np.float64)
    u, _, vt = np.linalg.svd(c2w[..., :3, :3])
    c2w[..., :3, :3] = u @ vt
    return np.asarray(invert_rigid(jnp.asarray(c2w, jnp.float32)), np.float32)


def _frame_file(folder: str, number: int, digits: int, suffixes: tuple[str, ...]) -> str:
    for suffix in suffixes:
        path = os.path.join(folder, f"frame-{number:0{digits}d}{suffix}")
        if os.path.isfile(path):
            return path
    raise ManifestError(f"{folder}: frame {number}: expected a file frame-{number:0{digits}d}"
                        f"{{{','.join(suffixes)}}}, found none")


def load_sequence(folder: str | os.PathLike, hw: tuple[int, int] = (96, 128),
                  frames: tuple[int, int] | None = None) -> RGBDSequence:
    """Reads a 7-Scenes sequence folder (module docstring) at (H, W); `frames` = [first, stop) of
    the frame numbers (default: all). Raises InputError / ManifestError naming the folder or file."""
    from PIL import Image

    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputError(f"{folder}: expected a 7-Scenes sequence folder (frame-XXXXXX.color.jpg, .depth.png, "
                         f".pose.txt, camera-intrinsics.txt), found no such folder")
    k_path = os.path.join(folder, "camera-intrinsics.txt")
    if not os.path.isfile(k_path):
        raise ManifestError(f"{k_path}: expected the 3x3 intrinsics of the sequence, found no such file")
    try:
        K_full = load_intrinsics_file(k_path)[0]
    except TrajectoryError as e:
        raise ManifestError(str(e)) from e
    depth_files = index_depth_folder(folder)
    digits = len(re.findall(r"\d+", os.path.basename(depth_files.paths[0]))[-1])
    first = depth_files.first_index
    stop = first + len(depth_files.paths)
    lo, hi = (first, stop) if frames is None else frames
    if not first <= lo < hi <= stop:
        raise InputError(f"{folder}: expected frames [{lo}, {hi}) inside the folder's frames [{first}, {stop})")
    rgbs, depths, c2ws, src_hw = [], [], [], None
    for n in range(lo, hi):
        c_path = _frame_file(folder, n, digits, COLOR_EXTENSIONS)
        try:
            with Image.open(c_path) as im:
                rgb = np.asarray(im.convert("RGB"))
        except OSError as e:
            raise ManifestError(f"{c_path}: cannot read colour frame {n} ({e})") from e
        d_path = depth_files.paths[n - first]
        depth = read_depth(d_path, DEPTH_SCALE, frame=n)
        if src_hw is None:
            src_hw = rgb.shape[:2]
        for what, path, shape in (("colour", c_path, rgb.shape[:2]), ("depth", d_path, depth.shape)):
            if shape != src_hw:
                raise ManifestError(f"{path}: expected a {src_hw[0]}x{src_hw[1]} {what} frame like frame {lo}, "
                                    f"found {shape[0]}x{shape[1]}")
        p_path = _frame_file(folder, n, digits, (".pose.txt",))
        try:
            c2ws.append(load_w2c_file(p_path)[0])  # the check is direction-free: it reads c2w as well
        except TrajectoryError as e:
            raise ManifestError(str(e)) from e
        rgbs.append(resize_rgb_area(rgb, hw))
        depths.append(crop_depth(depth, hw))
    w2c = pose_to_w2c(np.stack(c2ws))
    check_w2c(w2c, folder)
    return RGBDSequence(np.stack(rgbs), np.stack(depths).astype(np.float32), w2c,
                        resized_intrinsics(K_full, src_hw, hw).astype(np.float32), np.arange(lo, hi), folder)


# ------------------------------------------------------------------------------ pair choice
def overlap_matrix(seq: RGBDSequence, subsample: int = 8, near: float = 0.1) -> np.ndarray:
    """(N, N) float32 view overlap: [i, j] = the fraction of frame i's valid depth pixels (every
    `subsample`-th row and column) whose points lie beyond `near` in front of camera j and project
    inside its image (occlusion ignored)."""
    N, H, W = seq.depth.shape
    v, u = np.mgrid[0:H:subsample, 0:W:subsample].astype(np.float64)
    K = seq.K.astype(np.float64)
    rays = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d = seq.depth[:, ::subsample, ::subsample].reshape(N, -1).astype(np.float64)  # (N, P)
    valid = d > 0
    w2c = seq.w2c.astype(np.float64)
    c2w = np.linalg.inv(w2c)
    world = np.einsum("nij,npj->npi", c2w[:, :3, :3], rays * d[..., None]) + c2w[:, None, :3, 3]  # (N, P, 3)
    out = np.zeros((N, N), np.float32)
    for j in range(N):
        cam = world @ w2c[j, :3, :3].T + w2c[j, :3, 3]
        z = cam[..., 2]
        zs = np.where(z > near, z, 1.0)
        pu, pv = K[0, 0] * cam[..., 0] / zs + K[0, 2], K[1, 1] * cam[..., 1] / zs + K[1, 2]
        inside = valid & (z > near) & (pu > -0.5) & (pu < W - 0.5) & (pv > -0.5) & (pv < H - 0.5)
        out[:, j] = inside.sum(1) / np.maximum(valid.sum(1), 1)
    return out


def choose_pairs(overlap: np.ndarray, spec: PairSpec, split: str, num: int, seed: int = 0,
                 first_frame: int = 0) -> list[tuple[int, int]]:
    """`num` distinct (source start, target start) frame numbers inside `split`'s frame range whose
    clips' view overlap fits the spec; `overlap` is `overlap_matrix` of frames first_frame, ... .
    Sorted by source start. Raises InputError when fewer pairs qualify than asked for."""
    lo, hi = spec.frame_range(split)
    n = overlap.shape[0]
    if lo < first_frame or hi > first_frame + n:
        raise InputError(f"{split} frames [{lo}, {hi}): the sequence holds frames [{first_frame}, "
                         f"{first_frame + n})")
    starts = np.arange(lo, hi - spec.span + 1)
    if not len(starts):
        raise InputError(f"{split} frames [{lo}, {hi}): too few for a clip of {spec.num_frames} frames at stride "
                         f"{spec.stride} ({spec.span} frames)")
    k = np.arange(spec.num_frames) * spec.stride
    rows = starts[:, None] - first_frame + k  # (S, T)
    per_frame = overlap[rows[:, None, :], rows[None, :, :]]  # (S source, S target, T)
    mean, worst = per_frame.mean(-1), per_frame.min(-1)
    ok = (mean >= spec.min_overlap) & (mean <= spec.max_overlap) & (worst >= spec.min_frame_overlap)
    ok &= starts[:, None] != starts[None, :]
    cand = np.argwhere(ok)
    if len(cand) < num:
        raise InputError(f"{split} frames [{lo}, {hi}): {len(cand)} pairs have a view overlap in "
                         f"[{spec.min_overlap}, {spec.max_overlap}] (every frame >= {spec.min_frame_overlap}), "
                         f"{num} asked for")
    pick = np.random.default_rng(seed).choice(len(cand), size=num, replace=False)
    pairs = sorted((int(starts[a]), int(starts[b])) for a, b in cand[pick])
    return pairs


def pair_example(seq: RGBDSequence, source_start: int, target_start: int, spec: PairSpec) -> dict:
    """One example dict of the pixel-clip contract (module docstring)."""
    k = np.arange(spec.num_frames) * spec.stride
    first = int(seq.frame_ids[0])
    src, tgt = source_start - first + k, target_start - first + k
    if min(src[0], tgt[0]) < 0 or max(src[-1], tgt[-1]) >= len(seq.frame_ids):
        raise InputError(f"{seq.folder}: pair ({source_start}, {target_start}) needs frames outside "
                         f"[{first}, {first + len(seq.frame_ids)})")
    return {
        "source_rgb": seq.rgb[src], "source_depth": seq.depth[src], "source_w2c": seq.w2c[src],
        "target_rgb": seq.rgb[tgt], "target_depth": seq.depth[tgt], "target_w2c": seq.w2c[tgt],
        "K": seq.K, "caption": spec.caption,
        "example_id": np.int64(1000 * source_start + target_start),
    }


def split_examples(seq: RGBDSequence, spec: PairSpec, split: str, num: int, seed: int = 0,
                   overlap: np.ndarray | None = None) -> Iterator[dict]:
    """The examples of one split, in source-start order (a generator)."""
    overlap = overlap_matrix(seq) if overlap is None else overlap
    for s, t in choose_pairs(overlap, spec, split, num, seed, first_frame=int(seq.frame_ids[0])):
        yield pair_example(seq, s, t, spec)


# ------------------------------------------------------------------------------------- CLI
def build(data: str, out: str, spec: PairSpec = PairSpec(), num_train: int = 400, num_test: int = 32,
          seed: int = 0, overwrite: bool = False, command: str = "") -> dict:
    """Writes the `star_7scenes` dataset folder `out` (data_pipelines.tfds_builders) from the
    sequence folder `data`; returns its metadata. Every input and the output folder are checked,
    and every split's pairs chosen, before anything is written."""
    from data_pipelines.tfds_builders import check_output, pixel_features, write_dataset

    if not os.path.isdir(data):
        raise InputError(f"--data {data}: expected a 7-Scenes sequence folder, found no such folder")
    if num_train < 1 or num_test < 1:
        raise InputError(f"--num_train, --num_test: expected >= 1, found {num_train}, {num_test}")
    check_output(out, overwrite)
    lo = min(spec.train_frames[0], spec.test_frames[0])
    hi = max(spec.train_frames[1], spec.test_frames[1])
    seq = load_sequence(data, (spec.height, spec.width), (lo, hi))
    overlap = overlap_matrix(seq)
    counts = {"train": num_train, "test": num_test}
    pairs = {split: choose_pairs(overlap, spec, split, n, seed, lo) for split, n in counts.items()}

    def examples(split):
        for s, t in pairs[split]:
            ex = pair_example(seq, s, t, spec)
            yield int(ex["example_id"]), ex

    def mean_overlap(s, t):
        k = np.arange(spec.num_frames) * spec.stride
        return round(float(overlap[s - lo + k, t - lo + k].mean()), 4)

    metadata = {
        "generator": "data_pipelines.rgbd_pairs", "command": command, "data": os.path.abspath(data),
        "spec": dataclasses.asdict(spec), "seed": seed,
        "resampling": "rgb: area (PIL BOX) to cover + centre crop; depth: nearest (manifest.crop_depth), metres, "
                      "0 = no reading; K: geometry.resize_intrinsics; w2c: inverse of the pose, rotation "
                      "orthonormalised",
        "example_id": "1000 * source start frame + target start frame",
        "pairs": {split: [[s, t, mean_overlap(s, t)] for s, t in p] for split, p in pairs.items()},
    }
    write_dataset(out, "star_7scenes", pixel_features(spec.num_frames, spec.height, spec.width),
                  {split: (lambda split=split: examples(split)) for split in pairs}, metadata,
                  description=f"7-Scenes source -> target clip pairs from {os.path.basename(os.path.abspath(data))}, "
                              f"{spec.num_frames} frames at stride {spec.stride}, {spec.height}x{spec.width}",
                  overwrite=overwrite)
    return metadata


def _frame_range(text: str, flag: str) -> tuple[int, int]:
    try:
        a, b = (int(x) for x in text.split(":"))
    except ValueError:
        raise InputError(f"{flag}: expected first:stop frame numbers, found {text!r}") from None
    return a, b


def job(argv: list[str]) -> None:
    from data_pipelines.tfds_builders import add_output_arguments, quiet_tfds
    from star_jax import cli

    p = cli.ArgumentParser(prog="python -m data_pipelines.rgbd_pairs", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="a 7-Scenes sequence folder")
    p.add_argument("--out", required=True, help="dataset folder to write (new or empty)")
    p.add_argument("--num_train", type=int, default=400)
    p.add_argument("--num_test", type=int, default=32)
    p.add_argument("--stride", type=int, default=2)
    p.add_argument("--frames", type=int, default=9, help="T frames per clip")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--train_frames", default="0:400", help="first:stop frame numbers of the train split")
    p.add_argument("--test_frames", default="400:500", help="first:stop frame numbers of the test split")
    p.add_argument("--seed", type=int, default=0)
    add_output_arguments(p, progress=False)
    args = p.parse_args(argv)
    quiet_tfds(log_warnings=False)
    spec = PairSpec(args.height, args.width, args.frames, args.stride,
                    train_frames=_frame_range(args.train_frames, "--train_frames"),
                    test_frames=_frame_range(args.test_frames, "--test_frames"))
    meta = build(args.data, args.out, spec, args.num_train, args.num_test, args.seed, args.overwrite,
                 command="python -m data_pipelines.rgbd_pairs " + " ".join(argv))
    print(f"wrote {args.out}: star_7scenes, {len(meta['pairs']['train'])} train / {len(meta['pairs']['test'])} "
          f"test pairs of {spec.num_frames} frames at stride {spec.stride}, {spec.height}x{spec.width}")


if __name__ == "__main__":
    from star_jax import cli

    cli.main(job, sys.argv[1:])
