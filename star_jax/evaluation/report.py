"""The one-page PNG report of an evaluation.

    boxes = write_report("eval/report.png", metrics, frames, truth=truth, renders=renders, masks=masks)

Layout (1600 x 1000 pixels, top to bottom):
  trajectory (top view x-z, side view z-up) | table of aspects: raw, score x 100 or why it failed;
                                            | the WorldScore-style aggregate
  five per-frame panels: vs ground truth | camera | flow | smoothness | revisit
  sample frames: generated, truth and render (holes magenta) when given
The trajectory is the "camera_control" metric's details "commanded_positions" and
"recovered_positions" ((T, 3) camera centres, the recovered path already aligned to the commanded
one); without them the commanded centres of "revisit_consistency" (details "positions"), its
revisit pairs marked. A panel's curves are every details entry of its metrics whose key starts with
"per_" or holds "_per_" ("per_frame", "per_pair_median", "render_per_frame": a list of numbers, or
a dict of such lists, one curve each; None and inf are gaps); "per_pair" series are drawn at the
first frame of each pair when details hold "pairs", else at k (frames k, k + 1), "per_triplet" at
2k + 1 (the odd frame interpolated). A failed metric shows its reason in its panel. Any subset of
metrics works.

matplotlib (Agg, through a `Figure` of its own: no pyplot state, no rc changes) is imported when a
report is written. The file is written atomically.
"""

from __future__ import annotations

import math
import textwrap
from typing import Mapping, Sequence

import numpy as np

from star_jax.errors import InputError
from star_jax.evaluation.clips import check_clip, check_masks
from star_jax.evaluation.worldscore import Metric, aggregate as worldscore_aggregate
from star_jax.io.files import atomic_path, to_uint8

SIZE_IN, DPI = (16.0, 10.0), 100  # -> a 1600 x 1000 PNG
PANELS = (("vs ground truth", ("psnr", "ssim")),
          ("camera", ("camera_control", "3d_consistency")),
          ("flow", ("photometric_consistency", "motion_magnitude")),
          ("smoothness", ("motion_smoothness",)),
          ("revisit", ("revisit_consistency",)))
SAMPLES = 6  # frames in the strip
STRIP_WIDTH = 1500  # pixels: the strip's frames are shrunk (area mean) to at most this width together
HOLE_RGB = (255, 0, 255)


def write_report(path_png, metrics, frames, truth=None, renders=None, masks=None, title: str = "",
                 aggregate: Mapping | None = None) -> dict:
    """Writes the one-page report (module docstring) to `path_png`.

    Args:
      metrics: a list of `Metric` (or of their `to_json()` dicts), or the metrics.json content
        ({"metrics": {name: metric json} or [...], "aggregate": ...}) or {name: metric json}.
      frames: (T, H, W, 3) the generated video (uint8, or float in [0, 1]); truth, renders alike,
        masks (T, H, W) bool (the render mask: False in the holes).
      aggregate: `worldscore.aggregate`'s dict; default: the one in `metrics`, else computed.
    Returns {panel name: (x0, y0, x1, y1)}: each panel's pixel box in the PNG (origin top left).
    """
    ms, agg = as_metrics(metrics)
    agg = dict(aggregate if aggregate is not None else agg if agg is not None else worldscore_aggregate(ms))
    frames = check_clip(frames, "report: frames")
    truth = None if truth is None else check_clip(truth, "report: truth", frames.shape)
    renders = None if renders is None else check_clip(renders, "report: renders", frames.shape)
    masks = None if masks is None else check_masks(masks, frames.shape, "report: masks")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=SIZE_IN, dpi=DPI)
    FigureCanvasAgg(fig)
    t, h, w, _ = frames.shape
    fig.suptitle(f"{title}  ({t} frames, {h}x{w})".strip(), fontsize=13)
    grid = fig.add_gridspec(3, 4, height_ratios=(3.0, 2.2, 2.6), left=0.045, right=0.96, top=0.93, bottom=0.02,
                            hspace=0.38, wspace=0.28)
    by_name = {m.name: m for m in ms}
    axes = {"top view": fig.add_subplot(grid[0, 0]), "side view": fig.add_subplot(grid[0, 1]),
            "table": fig.add_subplot(grid[0, 2:])}
    _trajectory(axes["top view"], axes["side view"], by_name)
    _table(axes["table"], ms, agg)
    row = grid[1, :].subgridspec(1, len(PANELS), wspace=0.32)
    for k, (panel, names) in enumerate(PANELS):
        axes[panel] = fig.add_subplot(row[0, k])
        _curves(axes[panel], panel, [by_name.get(n) for n in names], names, t)
    axes["frames"] = fig.add_subplot(grid[2, :])
    _strip(axes["frames"], frames, truth, renders, masks)
    with atomic_path(path_png) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    width, height = (int(round(s * DPI)) for s in SIZE_IN)
    boxes = {}
    for name, ax in axes.items():
        b = ax.get_position()
        boxes[name] = (int(b.x0 * width), int((1 - b.y1) * height), int(math.ceil(b.x1 * width)),
                       int(math.ceil((1 - b.y0) * height)))
    return boxes


def as_metrics(metrics) -> tuple[list[Metric], dict | None]:
    """A list of `Metric` or metric json dicts, or the metrics.json content -> (metrics, the
    aggregate it carries or None)."""
    agg = None
    if isinstance(metrics, Mapping):
        agg = metrics.get("aggregate")
        inner = metrics.get("metrics", None)
        if inner is None:
            inner = {k: v for k, v in metrics.items() if k not in ("aggregate", "seconds", "inputs")}
        metrics = list(inner.values()) if isinstance(inner, Mapping) else inner
    if not isinstance(metrics, (list, tuple)):
        raise InputError(f"report: metrics: expected a list of Metric or the metrics.json content, found "
                         f"{type(metrics).__name__}")
    out = []
    for i, m in enumerate(metrics):
        if isinstance(m, Metric):
            out.append(m)
        elif isinstance(m, Mapping) and "name" in m:
            out.append(Metric(name=m["name"], raw=m.get("raw"), score=m.get("score"), unit=m.get("unit", ""),
                              ok=bool(m.get("ok", True)), reason=m.get("reason", ""), details=m.get("details") or {}))
        else:
            raise InputError(f"report: metrics[{i}]: expected a Metric or a dict with a 'name', found "
                             f"{type(m).__name__}")
    return out, agg


def _fmt(x) -> str:
    if x is None:
        return "n/a"
    if isinstance(x, bool):
        return str(x)
    if isinstance(x, (int, np.integer)):
        return str(int(x))
    if isinstance(x, (float, np.floating)):
        return "inf" if math.isinf(x) else f"{x:.4g}"
    if isinstance(x, Mapping):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in x.items())
    return str(x)


def table_lines(ms: Sequence[Metric], agg: Mapping, width: int = 86) -> list[str]:
    """The table's text: one row per metric (name, score x 100 or "-", raw and unit; or FAILED and
    the reason), then the aggregate, its note and the aspects not measured."""
    lines, pad = [], " " * 24
    for m in ms:
        if not m.ok:
            body = textwrap.wrap(f"FAILED: {m.reason}", width) or ["FAILED"]
        else:
            score = "   -  " if m.score is None else f"{100 * m.score:6.1f}"
            body = textwrap.wrap(f"{score} | {_fmt(m.raw)} {m.unit}", width)
        lines += [f"{m.name:<24}" + body[0]] + [pad + b for b in body[1:3]]
    value = agg.get("score")
    lines += ["" if ms else "no metrics", f"{'AGGREGATE':<24}" + ("n/a" if value is None else f"{value:6.2f}")]
    lines += [pad + s for s in textwrap.wrap(str(agg.get("note", "")), width)]
    failed = agg.get("failed") or {}
    if failed:
        lines += [pad + s for s in textwrap.wrap("failed: " + ", ".join(failed), width)]
    missing = agg.get("not_measured") or []
    if missing:
        lines += [pad + s for s in textwrap.wrap("not measured: " + ", ".join(missing), width)]
    return lines


def _table(ax, ms: Sequence[Metric], agg: Mapping) -> None:
    ax.set_axis_off()
    ax.set_title("aspects: score x 100 | raw (or why not measured)", fontsize=10, loc="left")
    ax.text(0.0, 1.0, "\n".join(table_lines(ms, agg)), family="monospace", fontsize=7.5, va="top", ha="left",
            transform=ax.transAxes)


def _trajectory(top, side, by_name: Mapping[str, Metric]) -> None:
    cam, rev = by_name.get("camera_control"), by_name.get("revisit_consistency")
    paths, note = [], ""
    if cam is not None and cam.details.get("commanded_positions") is not None:
        paths.append(("commanded", _positions(cam.details["commanded_positions"]), "C0"))
        if cam.details.get("recovered_positions") is not None:
            paths.append(("recovered", _positions(cam.details["recovered_positions"]), "C3"))
    elif rev is not None and rev.details.get("positions") is not None:
        paths.append(("commanded", _positions(rev.details["positions"]), "C0"))
    if cam is not None and not cam.ok:
        note = f"camera_control failed: {cam.reason}"
    elif cam is None:
        note = "no camera_control metric" + (": the commanded path only" if paths else "")
    pairs = rev.details.get("pairs", []) if rev is not None and rev.ok else []
    for ax, (a, b, sign, label) in ((top, (0, 2, 1, "top view: x right, z forward")),
                                   (side, (2, 1, -1, "side view: z forward, up"))):
        ax.set_title(label, fontsize=10)
        for name, p, colour in paths:
            ax.plot(p[:, a], sign * p[:, b], "-", color=colour, lw=1.5, label=name)
            ax.plot(p[:1, a], sign * p[:1, b], "o", color=colour, ms=5)
        if pairs and paths:
            p = paths[0][1]
            idx = np.array(pairs).ravel()
            ax.plot(p[idx, a], sign * p[idx, b], "o", mfc="none", color="C2", ms=7, label="revisits")
        if paths:
            ax.set_aspect("equal", adjustable="datalim")
            ax.legend(fontsize=7, loc="best")
            ax.tick_params(labelsize=7)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        if note:
            ax.set_xlabel("\n".join(textwrap.wrap(note, 60)), fontsize=7, color="C3")  # under the plot, not on it


def _positions(p) -> np.ndarray:
    """(T, 3) camera centres; a None row (a frame whose camera was not recovered) becomes NaN: a gap."""
    p = np.array([[np.nan] * 3 if row is None else row for row in p], np.float64)
    if p.ndim != 2 or p.shape[1] != 3:
        raise InputError(f"report: camera positions: expected (T, 3), found shape {p.shape}")
    return p


def _series(m: Metric) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(label, x, y) for each per-frame / per-pair series in m.details (module docstring)."""
    pairs = m.details.get("pairs")
    out = []
    for key, v in m.details.items():
        if not (key.startswith("per_") or "_per_" in key):
            continue
        name = "_".join(p for p in key.split("_") if p != "per" and p not in ("frame", "pair", "triplet"))
        for sub, ys in (v.items() if isinstance(v, Mapping) else [("", v)]):
            if not isinstance(ys, (list, tuple, np.ndarray)):
                continue
            y = np.array([np.nan if e is None else e for e in ys], np.float64)
            if y.ndim != 1 or not np.isfinite(y).any():  # nothing to draw (empty, all None or inf)
                continue
            x = np.arange(len(y), dtype=np.float64)
            if "per_pair" in key and pairs is not None and len(pairs) == len(y):
                x = np.array([p[0] for p in pairs], np.float64)
            elif "per_triplet" in key:  # WorldScore's smoothness: odd frame 2k + 1 from its even neighbours
                x = 2 * x + 1
            out.append((" ".join(s for s in (m.name, name, str(sub)) if s), x, y))
    return out


def _right_axis(label: str, m: Metric, first: Metric | None) -> bool:
    """A second unit in a panel goes on a right axis: other metrics than the first, SSIM next to
    dB, translation next to degrees."""
    return (first is not None and m is not first) or any(k in label.split(" ", 1)[-1] for k in ("ssim", "translation"))


def _curves(ax, panel: str, ms: Sequence[Metric | None], names: Sequence[str], t: int) -> None:
    ax.set_title(panel, fontsize=10)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("frame", fontsize=8)
    notes, twin, drawn = [], None, 0
    first = next((m for m in ms if m is not None and m.ok and _series(m)), None)
    for name, m in zip(names, ms):
        if m is None:
            continue
        if not m.ok:
            notes.append(f"{name} failed: {m.reason}")
            continue
        for label, x, y in _series(m):
            target = ax
            if _right_axis(label, m, first):
                twin = twin or ax.twinx()
                twin.tick_params(labelsize=7)
                target = twin
            y = np.where(np.isinf(y), np.nan, y)  # inf dB (identical frames) cannot be drawn
            target.plot(x, y, marker="o" if len(y) < 12 else "", ms=3, lw=1.2, label=label,
                        color=f"C{drawn % 10}", ls="--" if target is twin else "-")
            drawn += 1
    if drawn:
        handles = [h for a in (ax, twin) if a is not None for h in a.get_legend_handles_labels()[0]]
        ax.legend(handles, [h.get_label() for h in handles], fontsize=6, loc="best")
        ax.set_xlim(-0.5, max(t - 0.5, 0.5))
    missing = [n for n, m in zip(names, ms) if m is None]
    if not drawn and not notes:
        notes.append("not measured: " + ", ".join(missing))
    if notes:
        ax.text(0.03, 0.97, "\n".join(s for n in notes for s in textwrap.wrap(n, 36)), transform=ax.transAxes,
                fontsize=7, va="top", color="C3", zorder=5, bbox={"facecolor": "white", "alpha": 0.85, "lw": 0})


def _strip(ax, frames, truth, renders, masks) -> None:
    """A mosaic: one column per sampled frame, rows generated / truth / render."""
    ax.set_axis_off()
    t = len(frames)
    idx = np.unique(np.linspace(0, t - 1, min(SAMPLES, t)).round().astype(int))
    rows = [("generated", frames)]
    if truth is not None:
        rows.append(("truth", truth))
    if renders is not None:
        r = to_uint8(renders).copy()
        if masks is not None:
            r[~masks] = HOLE_RGB
        rows.append(("render (holes magenta)" if masks is not None else "render", r))
    scale = min(1.0, STRIP_WIDTH / (len(idx) * frames.shape[2]))  # no more pixels than the page shows
    h, w = max(1, round(frames.shape[1] * scale)), max(1, round(frames.shape[2] * scale))
    gap = 3
    mosaic = np.full((len(rows) * (h + gap) - gap, len(idx) * (w + gap) - gap, 3), 255, np.uint8)
    for r, (_, clip) in enumerate(rows):
        for c, i in enumerate(idx):
            mosaic[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = _shrink(to_uint8(clip[i]), h, w)
    ax.imshow(mosaic, interpolation="antialiased")
    ax.set_title("sample frames: " + " / ".join(name for name, _ in rows) + "  (frames "
                 + ", ".join(str(i) for i in idx) + ")", fontsize=10)


def _shrink(img: np.ndarray, h: int, w: int) -> np.ndarray:
    if img.shape[:2] == (h, w):
        return img
    import cv2

    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA)
