"""Evaluates a generated video: WorldScore-style metrics that need no downloaded weights, and
ground-truth metrics where the truth exists, into `metrics.json` and a one-page `report.png`.

    python -m star_jax.evaluate --run out/navigate                    # a navigate output folder
    python -m star_jax.evaluate --video gen.mp4 --w2c cams.npy --intrinsics K.txt \\
        [--ground_truth truth.mp4] --output_dir eval/
    python -m star_jax.navigate ... --evaluate                         # the same, at the end of a run

What is measured (each a `worldscore.Metric`: its raw value, its normalised score, or the reason it
could not be measured):

  aspect                    needs                  estimator
  camera_control            commanded cameras      evaluation.camera_control (SfM + alignment)
  3d_consistency            intrinsics             evaluation.camera_control (BA reprojection error)
  photometric_consistency   -                      evaluation.flow (DIS forward-backward error)
  motion_magnitude          -                      evaluation.flow (median flow)
  motion_smoothness         -                      evaluation.flow (odd frames from even neighbours)
  psnr, ssim                the true target video  evaluation.ground_truth (all / in the mask / holes)
  revisit_consistency       commanded cameras      evaluation.ground_truth (returning pass vs first)

The aggregate is WorldScore's (mean of the normalised aspects x 100) over the aspects measured here;
the aspects that need downloaded models are listed as not measured (`worldscore.aggregate`).
A navigate folder carries what the metrics need: navigate.mp4, cameras.npz (target w2c, intrinsics,
render masks) and metadata.json (the ground-truth video, when the run had one). Evaluating in-process
(`navigate --evaluate`) uses the frames before video compression; `--run` reads the encoded mp4.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import os
import sys
import time
from typing import Callable, Sequence

import numpy as np

from star_jax.errors import InputError
from star_jax.evaluation.clips import check_clip, check_masks
from star_jax.evaluation.worldscore import Metric, aggregate
from star_jax.io import files as io

OUTPUTS = ("metrics.json", "report.png")
RUN_CAMERAS = "cameras.npz"  # written by navigate: w2c (T, 4, 4), K (T, 3, 3), masks (T, H, W) bool


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """metrics: one `Metric` per measured quantity; aggregate: `worldscore.aggregate`; seconds: the
    wall time of each estimator; inputs: what was given (frame count, size, which inputs)."""

    metrics: tuple[Metric, ...]
    aggregate: dict
    seconds: dict
    inputs: dict

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def to_json(self) -> dict:
        return {"aggregate": self.aggregate, "metrics": {m.name: m.to_json() for m in self.metrics},
                "seconds": self.seconds, "inputs": self.inputs}


def _check_cameras(w2c, K, n: int, hw: tuple[int, int]):
    from star_jax.geometry.trajectory import check_intrinsics, check_w2c

    if w2c is not None:
        w2c = check_w2c(np.asarray(w2c, np.float64), "target w2c")
        if len(w2c) != n:
            raise InputError(f"target w2c: expected {n} cameras, one per generated frame, found {len(w2c)}")
    if K is not None:
        K = np.asarray(K, np.float64)
        K = check_intrinsics(K[0] if K.ndim == 3 else K, "intrinsics")[0]
        if not (0 < K[0, 2] < hw[1] and 0 < K[1, 2] < hw[0]):
            raise InputError(f"intrinsics: principal point ({K[0, 2]:g}, {K[1, 2]:g}) lies outside the "
                             f"{hw[0]}x{hw[1]} frames (intrinsics of another resolution?)")
    return w2c, K


def _timed(seconds: dict, name: str, fn: Callable, *args, **kwargs):
    t0 = time.perf_counter()
    try:
        return fn(*args, **kwargs)
    finally:
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - t0


def _guarded(name: str, fn: Callable[[], Metric | list[Metric]]) -> list[Metric]:
    """Runs one estimator; bad input propagates, a numerical breakdown inside it becomes a failed
    metric with the error named (never a number)."""
    try:
        out = fn()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - reported, not hidden: the metric says what broke
        return [Metric.failed(name, f"estimator error: {type(e).__name__}: {e}")]
    return list(out) if isinstance(out, (list, tuple)) else [out]


def evaluate(frames, *, w2c=None, K=None, truth=None, masks=None, renders=None,
             skip: Sequence[str] = (), workers: int = 4) -> Evaluation:
    """Evaluates generated frames (T, H, W, 3) uint8 (or float in [0, 1]).

    Args:
      w2c: (T, 4, 4) commanded world-to-camera matrices (OpenCV): camera control and revisits.
      K: (3, 3) or (T, 3, 3) intrinsics of the frames (the first is used); without it the
        estimators assume WorldScore's focal length.
      truth: (T, H, W, 3) the true target video: PSNR / SSIM.
      masks: (T, H, W) bool, the render mask (where the reference was warped): PSNR inside / in holes.
      renders: (T, H, W, 3) the warped reference: its own PSNR inside the mask, the baseline.
      skip: metric groups to leave out ("geometry", "flow", "ground_truth").
      workers: threads the estimator groups run on (geometry, flow, smoothness, ground truth);
        1 runs them one after another. The metrics do not depend on it.
    """
    from star_jax.evaluation import camera_control as cc
    from star_jax.evaluation import flow as fl
    from star_jax.evaluation import ground_truth as gt
    from star_jax.evaluation import sfm

    frames = check_clip(frames, "frames", uint8=True)
    T, H, W, _ = frames.shape
    truth = None if truth is None else check_clip(truth, "truth", frames.shape, uint8=True)
    renders = None if renders is None else check_clip(renders, "renders", frames.shape, uint8=True)
    masks = None if masks is None else check_masks(masks, frames.shape)
    w2c, K = _check_cameras(w2c, K, T, (H, W))

    seconds: dict = {}

    def geometry() -> list[Metric]:
        rec = _timed(seconds, "reconstruction", sfm.reconstruct, frames, K)
        out = []
        if w2c is not None:
            out += _guarded("camera_control", lambda: _timed(
                seconds, "camera_control", cc.camera_control, frames, w2c, K, reconstruction=rec))
        else:
            out.append(Metric.failed("camera_control", "no commanded cameras given (--w2c)"))
        return out + _guarded("3d_consistency", lambda: _timed(
            seconds, "3d_consistency", cc.consistency_3d, frames, K, reconstruction=rec))

    def flow() -> list[Metric]:
        try:  # too few frames: each flow metric then reports its own failure
            flows = _timed(seconds, "flows", fl.flows, frames)
        except InputError:
            flows = None
        return (_guarded("photometric_consistency", lambda: _timed(
                    seconds, "photometric_consistency", fl.photometric_consistency, frames, flow_set=flows))
                + _guarded("motion_magnitude", lambda: _timed(
                    seconds, "motion_magnitude", fl.motion_magnitude, frames, flow_set=flows)))

    def smoothness() -> list[Metric]:
        return _guarded("motion_smoothness", lambda: _timed(
            seconds, "motion_smoothness", fl.motion_smoothness, frames))

    def ground_truth() -> list[Metric]:
        out = []
        if truth is not None:
            out += _guarded("psnr", lambda: _timed(
                seconds, "ground_truth", gt.ground_truth_metrics, frames, truth, masks, renders=renders))
        if w2c is not None and K is not None:
            out += _guarded("revisit_consistency", lambda: _timed(
                seconds, "revisit_consistency", gt.revisit_consistency, frames, w2c, K, truth=truth, masks=masks))
        return out

    groups = [fn for group, fns in (("geometry", (geometry,)), ("flow", (flow, smoothness)),
                                    ("ground_truth", (ground_truth,))) if group not in skip for fn in fns]
    t0 = time.perf_counter()
    if workers > 1 and len(groups) > 1:
        # OpenCV and most NumPy / SciPy kernels release the GIL: the groups overlap on the cores
        with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(lambda fn: fn(), groups))
    else:
        parts = [fn() for fn in groups]
    metrics = [m for part in parts for m in part]
    inputs = {"frames": T, "size_hw": [H, W], "cameras": w2c is not None, "intrinsics": K is not None,
              "ground_truth": truth is not None, "masks": masks is not None, "renders": renders is not None}
    seconds["sum_of_stages"] = float(sum(seconds.values()))
    seconds["total"] = time.perf_counter() - t0  # wall clock; under the sum when stages overlap
    return Evaluation(tuple(metrics), aggregate(metrics), seconds, inputs)


def write_outputs(out_dir: str, result: Evaluation, frames, *, truth=None, renders=None, masks=None,
                  title: str = "") -> list[str]:
    """metrics.json and report.png into out_dir (each written atomically) -> their paths."""
    from star_jax.evaluation.report import write_report

    os.makedirs(out_dir, exist_ok=True)
    paths = [os.path.join(out_dir, n) for n in OUTPUTS]
    io.write_json(paths[0], result.to_json())
    write_report(paths[1], list(result.metrics), frames, truth=truth, renders=renders, masks=masks,
                 title=title, aggregate=result.aggregate)
    return paths


def read_frames(path: str) -> np.ndarray:
    """All frames of a video file, as decoded (no resampling) -> (T, H, W, 3) uint8."""
    if not os.path.isfile(path):
        raise InputError(f"{path}: no such video file")
    from star_jax.io.video import iter_video

    _, it = iter_video(path)
    frames = [f for _, f in it]
    if not frames:
        raise InputError(f"{path}: the video holds no frames")
    return np.stack(frames)


def load_run(folder: str) -> dict:
    """A navigate output folder -> frames, w2c, K, masks, truth (None when the run had none)."""
    video, cams = os.path.join(folder, "navigate.mp4"), os.path.join(folder, RUN_CAMERAS)
    for p in (video, cams):
        if not os.path.isfile(p):
            raise InputError(f"--run {folder}: expected a navigate output folder with navigate.mp4 and "
                             f"{RUN_CAMERAS}, {os.path.basename(p)} is missing")
    frames = read_frames(video)
    with np.load(cams) as z:
        arrays = {k: z[k] for k in z.files}
    if "w2c" not in arrays or "K" not in arrays:
        raise InputError(f"{cams}: expected arrays w2c and K, found {sorted(arrays)}")
    masks = arrays.get("masks")
    n = min(len(frames), len(arrays["w2c"]))
    truth = None
    meta_path = os.path.join(folder, "metadata.json")
    if os.path.isfile(meta_path):
        with open(meta_path, encoding="utf-8") as f:
            meta = json.load(f)
        gt_video = (meta.get("ground_truth") or {}).get("video")
        if gt_video:
            from star_jax.io.video import VideoSpec, load_video

            H, W = frames.shape[1:3]
            t = load_video(gt_video, VideoSpec(height=H, width=W, fps=meta.get("fps"))).frames
            if len(t) < n:
                raise InputError(f"{gt_video}: the run's ground truth holds {len(t)} frames, expected {n}")
            truth = t[:n]
    return {"frames": frames[:n], "w2c": arrays["w2c"][:n], "K": arrays["K"][0],
            "masks": None if masks is None else masks[:n], "truth": truth}


def main(argv=None, log=print) -> dict:
    from star_jax.cli import ArgumentParser

    p = ArgumentParser(prog="python -m star_jax.evaluate", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a navigate output folder (navigate.mp4, cameras.npz, metadata.json)")
    src.add_argument("--video", help="a generated video")
    p.add_argument("--w2c", help="commanded per-frame world-to-camera matrices (.npy / .json / .txt)")
    p.add_argument("--intrinsics", help="3x3 intrinsics of the generated frames (.npy / .json / .txt)")
    p.add_argument("--ground_truth", help="the true target video (same size and frame count)")
    p.add_argument("--output_dir", help="where metrics.json and report.png go (default: the run folder)")
    p.add_argument("--skip", default="", help="comma-separated groups to leave out: geometry, flow, ground_truth")
    a = p.parse_args(argv)
    skip = tuple(s for s in a.skip.split(",") if s)
    bad = set(skip) - {"geometry", "flow", "ground_truth"}
    if bad:
        raise InputError(f"--skip: unknown group(s) {sorted(bad)}; expected geometry, flow, ground_truth")
    if a.run:
        inp = load_run(a.run)
        out = a.output_dir or a.run
        title = os.path.basename(os.path.abspath(a.run))
    else:
        from star_jax.geometry.trajectory import load_intrinsics_file, load_w2c_file

        if not a.output_dir:
            raise InputError("--output_dir: required with --video")
        frames = read_frames(a.video)
        truth = read_frames(a.ground_truth)[: len(frames)] if a.ground_truth else None
        inp = {"frames": frames, "w2c": load_w2c_file(a.w2c) if a.w2c else None,
               "K": load_intrinsics_file(a.intrinsics) if a.intrinsics else None, "masks": None, "truth": truth}
        out, title = a.output_dir, os.path.basename(a.video)
    t0 = time.perf_counter()
    result = evaluate(inp["frames"], w2c=inp["w2c"], K=inp["K"], truth=inp["truth"], masks=inp["masks"],
                      skip=skip)
    paths = write_outputs(out, result, inp["frames"], truth=inp["truth"], masks=inp["masks"], title=title)
    log(summary(result))
    log(f"wrote {' '.join(paths)} ({time.perf_counter() - t0:.1f}s)")
    return result.to_json()


def summary(result: Evaluation) -> str:
    """A few lines: the aggregate, then each metric's raw value and score (or why it failed)."""
    agg = result.aggregate
    value = "n/a" if agg["score"] is None else f"{agg['score']:.2f}"
    lines = [f"WorldScore-style aggregate: {value} ({agg['note']})"]
    for m in result.metrics:
        if not m.ok:
            lines.append(f"  {m.name:<24} failed: {m.reason}")
            continue
        raw = m.raw if not isinstance(m.raw, dict) else ", ".join(
            f"{k} {'n/a' if v is None else f'{v:.4g}'}" for k, v in m.raw.items())
        raw = f"{raw:.4g}" if isinstance(raw, float) else raw
        score = "" if m.score is None else f"  score {100 * m.score:.1f}"
        lines.append(f"  {m.name:<24} {raw} {m.unit}{score}")
    return "\n".join(lines)


if __name__ == "__main__":
    from star_jax import cli

    cli.main(main, sys.argv[1:])
