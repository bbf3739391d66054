"""Metrics against the ground truth, and revisit consistency on paths that return.

    ms = ground_truth_metrics(frames, truth, masks, renders)   # [Metric "psnr", Metric "ssim"]
    m = revisit_consistency(frames, w2c, K, truth=truth, masks=masks)

Ground truth (the procedural worlds, the shared RGB-D frames): PSNR and SSIM of the generated
frames (T, H, W, 3) against the true target views, pooled over the clip (`image_metrics`: one
number per region, not a mean of per-frame numbers) in three regions: "all" pixels, "rendered"
(inside the warp mask, where the render shows the scene) and "holes" (outside it, where the model
invents). The render's own PSNR inside its mask is the baseline the model must beat there. These
are not WorldScore aspects: `score` is None and details["normalisation"] says so.

Revisit consistency: a world model should show the same place the same way when the camera comes
back to it (a loop: the returning pass against the first pass). Pairs of frames at least `min_gap`
frames apart whose commanded cameras nearly coincide are found (rotation within the angle that
moves the image by `image_shift` of its width, camera centres within `translation_frac` of the
path's extent), each frame in at most one pair (greedy matching, closest poses first), and the
generated frames of each pair are compared (PSNR pooled over the pairs, mean SSIM). With the
truth the same pairs of true frames give the ceiling (inf / 1 for a static scene seen from exactly
the same pose; lower when the scene moves between passes, ~20 dB on the default world), and the
gap is generated minus truth. A path that never returns fails with its closest approach.

Cost (45 frames of 480x832 with masks and renders; a 45-frame loop with 17 pairs, truth and
masks; CPU seconds on the shared 2-core machine): ground_truth_metrics 18.7 s, revisit_consistency
14.0 s, most of it image_metrics' SSIM filter (one SSIM map per frame or pair).
"""

from __future__ import annotations

import math

import numpy as np

from star_jax.errors import InputError
from star_jax.evaluation.clips import check_clip, check_masks
from star_jax.evaluation.image_metrics import SSIM_RADIUS, psnr, ssim_map
from star_jax.evaluation.worldscore import Metric

NO_SCORE = "not a WorldScore aspect: no normalisation, score None"
MIN_GAP = 12  # frames: one generated block after the first; closer pairs may share the cache's previous block


def ground_truth_metrics(frames, truth, masks=None, renders=None) -> list[Metric]:
    """PSNR (dB) and SSIM of `frames` against `truth` (T, H, W, 3) uint8 (or float in [0, 1]) over
    all pixels, inside the warp mask `masks` (T, H, W) bool and in the holes (~masks); None where a
    region is empty (or no mask is given). details: per-frame series per region, the hole fraction
    and, with `renders` (T, H, W, 3), the render's PSNR inside its mask ("render_rendered" in raw).
    An SSIM that cannot be measured (frames under 11 pixels on a side) is a failed "ssim" Metric."""
    frames, truth, masks, renders = _check_truth_inputs(frames, truth, masks, renders)
    out = [_psnr_metric(frames, truth, masks, renders)]
    t, h, w = frames.shape[:3]
    regions = _regions(masks)
    common = _common(t, masks)
    if min(h, w) < 2 * SSIM_RADIUS + 1:
        return out + [Metric.failed("ssim", f"frames of {h}x{w} pixels: SSIM needs at least {2 * SSIM_RADIUS + 1} "
                                    f"on a side", unit="SSIM vs ground truth")]
    r = SSIM_RADIUS
    inner = {k: None if m is None else m[:, r:-r, r:-r] for k, m in regions.items()}  # the map pixels' centres
    sums = {k: np.zeros(t) for k in regions}
    sizes = {k: np.zeros(t) for k in regions}
    for i in range(t):  # one frame at a time: a 480x832 map is 3 MB, a clip's would be 140 MB
        m = ssim_map(frames[i], truth[i])
        for k, region in inner.items():
            sel = m if region is None else m[region[i]]
            sums[k][i], sizes[k][i] = sel.sum(), sel.size
    raw = {k: float(sums[k].sum() / sizes[k].sum()) if sizes[k].sum() else None for k in regions}
    raw.update({k: None for k in ("rendered", "holes") if k not in raw})
    per_frame = {k: [float(a / n) if n else None for a, n in zip(sums[k], sizes[k])] for k in regions}
    return out + [Metric("ssim", raw, None, unit="SSIM vs ground truth",
                         details=dict(common, per_frame=per_frame))]


def psnr_metric(frames, truth, masks=None, renders=None) -> Metric:
    """The "psnr" Metric of `ground_truth_metrics` alone (no SSIM: the cheap part), e.g. for a job
    that scores every run against its truth and evaluates only some."""
    return _psnr_metric(*_check_truth_inputs(frames, truth, masks, renders))


def _check_truth_inputs(frames, truth, masks, renders):
    frames = check_clip(frames, "frames")
    truth = check_clip(truth, "truth", frames.shape)
    masks = None if masks is None else check_masks(masks, frames.shape)
    if renders is not None:
        renders = check_clip(renders, "renders", frames.shape)
        if masks is None:
            raise InputError("renders: the render's PSNR is measured inside its mask: give masks (T, H, W) bool too")
    return frames, truth, masks, renders


def _regions(masks) -> dict:
    return {"all": None} if masks is None else {"all": None, "rendered": masks, "holes": ~masks}


def _common(t: int, masks) -> dict:
    holes = None if masks is None else 1.0 - masks.mean(axis=(1, 2))
    return {"frames": t, "hole_fraction": None if holes is None else float(holes.mean()),
            "hole_fraction_by_frame": None if holes is None else holes.tolist(), "normalisation": NO_SCORE}


def _psnr_metric(frames, truth, masks, renders) -> Metric:
    """One psnr call per frame and region; the clip's pooled value follows from them (pooled_psnr)."""
    t, h, w = frames.shape[:3]
    regions = _regions(masks)
    counts = {k: np.full(t, h * w) if r is None else r.sum(axis=(1, 2)) for k, r in regions.items()}
    per_frame = {k: [psnr(frames[i], truth[i], None if r is None else r[i]) for i in range(t)]
                 for k, r in regions.items()}
    raw = {k: pooled_psnr(v, counts[k]) for k, v in per_frame.items()}
    details = dict(_common(t, masks), per_frame={k: [_num(x) for x in v] for k, v in per_frame.items()})
    if renders is not None:
        render = [psnr(renders[i], truth[i], masks[i]) for i in range(t)]
        raw["render_rendered"] = pooled_psnr(render, counts["rendered"])
        details["render_per_frame"] = [_num(x) for x in render]
    raw.update({k: None for k in ("rendered", "holes") if k not in raw})
    return Metric("psnr", raw, None, unit="dB vs ground truth", details=details)


def pooled_psnr(values, counts) -> float | None:
    """The PSNR (dB) of a clip pooled over its frames (image_metrics' convention: one MSE over all
    the region's pixels) from the frames' own PSNRs `values` (inf for an exact frame, NaN for an
    empty region) and their region sizes `counts`: MSE_i = 10^(-PSNR_i / 10), weighted by size.
    None when every region is empty."""
    v, n = np.asarray(values, np.float64), np.asarray(counts, np.float64)
    keep = n > 0
    if not keep.any():
        return None
    mse = float(np.sum(10.0 ** (-v[keep] / 10.0) * n[keep]) / n[keep].sum())
    return math.inf if mse == 0 else float(-10.0 * np.log10(mse))


def revisit_consistency(frames, w2c, K, truth=None, masks=None, min_gap: int = MIN_GAP, image_shift: float = 0.02,
                        translation_frac: float = 0.05) -> Metric:
    """"revisit_consistency": how alike the generated frames (T, H, W, 3) are where the commanded
    cameras w2c (T, 4, 4) (OpenCV world-to-camera; intrinsics K (3, 3), or of (T, 3, 3) the first)
    come back to where they were (module docstring). A pair: frames i < j with j - i >= `min_gap`, relative rotation at
    most atan(image_shift * W / fx), camera centres at most `translation_frac` x the path's extent
    (the largest distance between two centres) apart, matched one to one by `match_pairs` on
    max(angle / angle tolerance, distance / distance tolerance). raw: "psnr" (dB, pooled over the
    pairs), "ssim" (mean), "pairs"; with `truth` also "truth_psnr", "truth_ssim" and the gaps
    "psnr_gap", "ssim_gap" (generated - truth; the PSNR gap is None when the truth's pairs are
    identical, inf dB); with `masks` (T, H, W) "psnr_holes": pixels in the holes of either frame.
    Fails (Metric.failed) when the clip is too short, the camera never moves, or no pair revisits."""
    name, unit = "revisit_consistency", "dB / SSIM between revisiting frames"
    frames = check_clip(frames, "frames")
    truth = None if truth is None else check_clip(truth, "truth", frames.shape)
    masks = None if masks is None else check_masks(masks, frames.shape)
    w2c = _cameras(w2c, len(frames))
    fx = _intrinsics(K)[0, 0]
    if not (isinstance(min_gap, (int, np.integer)) and min_gap >= 1):
        raise InputError(f"revisit_consistency: min_gap: expected an integer >= 1, found {min_gap!r}")
    for key, v in (("image_shift", image_shift), ("translation_frac", translation_frac)):
        if not (math.isfinite(v) and 0 < v < 1):
            raise InputError(f"revisit_consistency: {key}: expected a number in (0, 1), found {v!r}")
    t, width = len(frames), frames.shape[2]
    if t <= min_gap:
        return Metric.failed(name, f"too few frames: {t}, a revisit needs two frames at least {min_gap} apart",
                             unit=unit)
    centres, angles, dists = pose_distances(w2c)
    extent, turn = float(dists.max()), float(angles.max())
    if extent < 1e-6 * max(1.0, float(np.abs(centres).max())):  # centres equal up to round-off: a turn in place
        extent, dists = 0.0, np.zeros_like(dists)
    settings = {"min_gap": int(min_gap), "rotation_tol_deg": math.degrees(math.atan(image_shift * width / fx)),
                "translation_tol": translation_frac * extent, "path_extent": extent,
                "path_turn_deg": turn, "positions": centres.tolist()}
    if extent == 0.0 and turn < 1e-3:  # degrees: float32 round-off of one still camera
        return Metric.failed(name, "degenerate path: the camera never moves, so every frame revisits every other; "
                             "revisit consistency needs a path that leaves and comes back", unit=unit, **settings)
    far = np.abs(np.arange(t)[:, None] - np.arange(t)[None]) >= min_gap
    rot = angles / settings["rotation_tol_deg"]
    trans = dists / settings["translation_tol"] if extent > 0.0 else dists
    d = np.where(far, np.maximum(rot, trans), np.inf)
    pairs = match_pairs(d)
    if not pairs:
        i, j = np.unravel_index(np.argmin(d), d.shape)
        i, j = sorted((int(i), int(j)))
        return Metric.failed(
            name, f"no revisit: the path never returns; closest approach of two frames {min_gap}+ apart: frames {i} "
            f"and {j}, {angles[i, j]:.2f} deg (tolerance {settings['rotation_tol_deg']:.2f}) and {dists[i, j]:.3g} "
            f"apart (tolerance {settings['translation_tol']:.3g})", unit=unit,
            closest={"frames": [i, j], "rotation_deg": float(angles[i, j]), "translation": float(dists[i, j])},
            **settings)
    a, b = np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])
    raw, details = {"pairs": len(pairs)}, dict(settings, normalisation=NO_SCORE, pairs=[list(p) for p in pairs],
                                               pair_rotation_deg=angles[a, b].tolist(),
                                               pair_translation=dists[a, b].tolist())
    _compare(frames, a, b, "", raw, details)
    if masks is not None:
        holes = ~masks[a] | ~masks[b]
        raw["psnr_holes"] = _num(psnr(frames[a], frames[b], holes))
        details["hole_fraction"] = float(holes.mean())
    if truth is not None:
        _compare(truth, a, b, "truth_", raw, details)
        g, c = raw["psnr"], raw["truth_psnr"]
        raw["psnr_gap"] = 0.0 if g == c == math.inf else (None if c == math.inf else g - c)
        raw["ssim_gap"] = None if raw["ssim"] is None else raw["ssim"] - raw["truth_ssim"]
        if masks is not None:
            raw["truth_psnr_holes"] = _num(psnr(truth[a], truth[b], holes))
    return Metric(name, raw, None, unit=unit, details=details)


def match_pairs(d: np.ndarray) -> list[tuple[int, int]]:
    """Greedy one-to-one matching on a normalised pose distance d (T, T) (inf where not allowed):
    candidate pairs i < j with d <= 1, closest first (ties: the larger time gap, then the earlier
    frame), each frame in at most one pair -> [(i, j)] sorted by i."""
    i, j = np.nonzero(np.triu(d <= 1.0, k=1))
    used, pairs = np.zeros(len(d), bool), []
    for k in np.lexsort((i, i - j, d[i, j])):
        a, b = int(i[k]), int(j[k])
        if not (used[a] or used[b]):
            used[a] = used[b] = True
            pairs.append((a, b))
    return sorted(pairs)


def pose_distances(w2c: np.ndarray):
    """w2c (T, 4, 4) -> camera centres (T, 3), pairwise rotation angles (T, T) in degrees and
    pairwise centre distances (T, T)."""
    R, tr = w2c[:, :3, :3], w2c[:, :3, 3]
    centres = -np.einsum("tji,tj->ti", R, tr)  # c = -R^T t
    frob = np.linalg.norm(R[:, None] - R[None], axis=(-2, -1))  # |R_a - R_b|_F = 2 sqrt(2) sin(angle / 2)
    angles = np.degrees(2.0 * np.arcsin(np.clip(frob / (2.0 * math.sqrt(2.0)), 0.0, 1.0)))
    dists = np.linalg.norm(centres[:, None] - centres[None], axis=-1)
    return centres, angles, dists


def _compare(video, a, b, prefix: str, raw: dict, details: dict) -> None:
    per_pair = [psnr(video[i], video[j]) for i, j in zip(a, b)]
    raw[prefix + "psnr"] = pooled_psnr(per_pair, np.ones(len(a)))
    details[prefix + "per_pair_psnr"] = per_pair  # inf for identical frames
    if min(video.shape[1:3]) < 2 * SSIM_RADIUS + 1:
        raw[prefix + "ssim"] = None
        return
    per_pair = [float(ssim_map(video[i], video[j]).mean()) for i, j in zip(a, b)]
    raw[prefix + "ssim"] = float(np.mean(per_pair))
    details[prefix + "per_pair_ssim"] = per_pair


def _num(x: float) -> float | None:
    """NaN (an empty region) -> None; inf (identical images) stays."""
    return None if math.isnan(x) else float(x)


def _cameras(w2c, t: int) -> np.ndarray:
    from star_jax.geometry.trajectory import check_w2c

    w2c = check_w2c(w2c, "revisit_consistency: w2c")
    if len(w2c) != t:
        raise InputError(f"revisit_consistency: w2c: expected one camera per frame ({t}), found {len(w2c)}")
    return w2c


def _intrinsics(K) -> np.ndarray:
    from star_jax.geometry.trajectory import check_intrinsics

    K = np.asarray(K)
    if K.shape[-2:] != (3, 3) or K.ndim not in (2, 3) or K.size == 0:
        raise InputError(f"revisit_consistency: K: expected (3, 3) intrinsics (or (T, 3, 3): the first is used), "
                         f"found shape {K.shape}")
    return check_intrinsics(K.reshape(-1, 3, 3)[0], "revisit_consistency: K")[0]
