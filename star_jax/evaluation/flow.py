"""WorldScore's flow-based aspects without downloaded weights: photometric consistency, motion
magnitude and motion smoothness, from OpenCV's DIS optical flow.

    fs = flows(frames)                      # frames (T, H, W, 3) uint8; computed once
    photometric_consistency(frames, fs)     # Metric "photometric_consistency", raw px
    motion_magnitude(frames, fs)            # Metric "motion_magnitude", raw px
    motion_smoothness(frames)               # Metric "motion_smoothness", raw {mse_worldscore, mse, ssim}
    flow_metrics(frames)                    # the three, sharing one FlowSet

Definitions (WorldScore `metrics/third_party/flow_aepe_metrics.py`, `flow_metrics.py`,
`motion_smoothness_metrics.py`; they use SEA-RAFT flow and the VFIMamba interpolator):
- Resolution: WorldScore measures at the frames' own resolution (the model's output size); its
  SEA-RAFT runs at half size (scale -1) and its flow is upsampled bilinearly and multiplied by 2.
  Here DIS runs on greyscale frames at a working size (the input, downscaled with INTER_AREA when
  its longer side exceeds `FlowSettings.max_side`; DIS MEDIUM itself stops its patch search at half
  of that, its finest scale being 1); each flow is resized bilinearly (half-pixel centres) back to
  the input size and its x and y components multiplied by W / w and H / h. So every number is in
  pixels of the input frames, as WorldScore's.
- Photometric consistency: for each consecutive pair, forward flow F (i -> i+1) and backward flow B
  (i+1 -> i) are cropped to the central (H - 30) x (W - 30) region (15 px a side); each pixel p of
  the crop goes to q = p + F(p), B is read at q rounded to the nearest pixel and clipped into the
  crop, and the error is |q + B(round q) - p|. The pair's error is the MEAN over the crop (pixels
  that leave the frame included, as WorldScore), the video's the mean over pairs.
  score = minmax_score(raw, FLOW_AEPE).
- Motion magnitude: per consecutive pair the MEDIAN over all pixels (no crop) of |F|, then the
  mean over pairs; score = motion_magnitude_score(raw).
- Motion smoothness: each odd frame 2k+1 is interpolated from frames 2k and 2k+2 (pairs while both
  exist: 22 from 45 frames) and compared with the real one: MSE and SSIM, then the mean over
  triplets; score = motion_smoothness_score(mse_worldscore, ssim) (no LPIPS: it needs downloaded
  weights; the score is the mean of the two measured components).
  WorldScore's MSE is `np.mean((mid - real) ** 2)` on uint8 arrays: the difference and its square
  wrap modulo 256, so its "MSE" is mean((d * d) mod 256), exact for |d| <= 15, then a
  pseudo-random 0..255 value (about 105 for uniform errors). Its empirical bound (82.4) was fitted
  to that quantity, so the score uses the same wrapped value (`mse_worldscore`); the true MSE in
  0..255 units (`mse`) is reported beside it and is the one to read.
  SSIM: `image_metrics.ssim` (11x11 Gaussian, sigma 1.5, data range 1, valid window) on RGB in
  [0, 1]; WorldScore uses torchmetrics' (same window, data range from the images, padded border).
- The interpolator (weight-free, replacing VFIMamba) sees only the two even frames (never the odd
  frame it is judged against): DIS flows between them, both directions; each flow is reversed to
  the midpoint by bilinear forward splatting of -F/2 from p + F(p)/2 on a half-size grid (colliding
  splats weighted by forward-backward consistency; holes filled from the opposite direction as
  -F_t->2, else with the flow read at the same pixel), upsampled; both frames are backward-warped
  to the midpoint (bicubic) and blended half and half, except where one frame's source pixel is
  not forward-backward consistent (occluded in the other frame) while the other's is: there the
  first frame alone is used. It assumes linear motion and brightness constancy and has no learned
  prior to fill disocclusions or sharpen blur; DIS also loses small fast objects (a 36 px square
  moving 10 px between the even frames of a 96x128 clip). So on real motion it interpolates worse
  than VFIMamba: higher MSE, lower SSIM, a lower smoothness score (a bias against every video,
  largest with parallax, disocclusion and fast small objects). Compare smoothness numbers with
  each other, not with the leaderboard's. (Minor: WorldScore truncates its interpolated frame to
  uint8, this rounds; torch's median of an even count is the lower middle value, NumPy's the mean
  of the two.)

Failures (`Metric.failed`, never a silent number): fewer than 2 frames (3 for smoothness), frames
that are not (H, W, 3) of one size, NaN or out-of-range float values, frames smaller than
2 x 15 + 2 px a side, and textureless frames: when ANY frame's grey-level standard deviation is
below `FlowSettings.min_texture_std` (1 of 255) the flow is meaningless there (DIS returns zero),
so the metric fails naming that frame rather than reporting a perfect score for a blank video.
"""

from __future__ import annotations

import dataclasses
import cv2
import numpy as np

from star_jax.evaluation.clips import check_clip
from star_jax.evaluation.image_metrics import ssim as ssim_metric
from star_jax.evaluation.worldscore import (
    FLOW_AEPE,
    Metric,
    minmax_score,
    motion_magnitude_score,
    motion_smoothness_score,
)
from star_jax.errors import InputError
from star_jax.io.video import VideoError

_PRESETS = {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
            "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}


@dataclasses.dataclass(frozen=True)
class FlowSettings:
    """How flow is estimated. On textures shifted by known sub-pixel amounts at 480x832, MEDIUM's
    interior flow is within 0.08 px of the truth everywhere (median error ~0.03 px) for ~50 ms of CPU
    a flow; FAST errs up to 0.22 px, MEDIUM at a 640-px working size up to 0.13 px (measured on the
    project's 2-core machine; tests/evaluation/test_flow.py holds the 0.1 px bound)."""

    preset: str = "medium"  # DIS preset: "ultrafast", "fast" or "medium"
    max_side: int = 1024  # working size: frames whose longer side exceeds this are downscaled first
    crop: int = 15  # WorldScore's border crop per side for the forward-backward error, px
    min_texture_std: float = 1.0  # grey-level std (0..255) under which a frame is textureless
    occlusion_px: float = 1.0  # sigma (px) of the interpolator's trust exp(-e^2 / 2 sigma^2) in a pixel's fb error e

    def __post_init__(self):
        if self.preset not in _PRESETS:
            raise InputError(f"FlowSettings.preset: expected one of {sorted(_PRESETS)}, found {self.preset!r}")
        if self.max_side < 16 or self.crop < 0 or self.occlusion_px <= 0:
            raise InputError(f"FlowSettings: expected max_side >= 16, crop >= 0, occlusion_px > 0, found "
                             f"{self.max_side}, {self.crop}, {self.occlusion_px}")


@dataclasses.dataclass(frozen=True)
class FlowSet:
    """Flows of each consecutive pair, in pixels of the input frames. `forward[i]` (H, W, 2) is the
    (dx, dy) that moves pixel (x, y) of frame i to frame i + 1; `backward[i]` moves frame i + 1's
    pixels to frame i. `work_hw` is the size DIS ran at. Memory: 16 (T - 1) H W bytes, 280 MB for
    45 frames at 480x832."""

    forward: np.ndarray  # (T - 1, H, W, 2) float32
    backward: np.ndarray  # (T - 1, H, W, 2) float32
    work_hw: tuple[int, int]

    @property
    def num_pairs(self) -> int:
        return int(self.forward.shape[0])


def check_frames(frames, min_frames: int, settings: FlowSettings = FlowSettings()) -> np.ndarray | str:
    """-> the frames as (T, H, W, 3) uint8 (`clips.check_clip`: float frames in [0, 1] rounded),
    or the reason they cannot be measured (one line): a bad clip, frames too small for the crop,
    or a textureless frame."""
    try:
        x = check_clip(frames, "frames", min_frames=min_frames, uint8=True)
    except InputError as e:
        return str(e)
    h, w = x.shape[1:3]
    if min(h, w) < 2 * settings.crop + 2 or min(h, w) < 11:
        return f"frames: expected more than {max(2 * settings.crop + 1, 10)} px a side, found {h}x{w}"
    for i, f in enumerate(x):
        std = float(cv2.cvtColor(f, cv2.COLOR_RGB2GRAY).std())
        if std < settings.min_texture_std:
            return (f"frames: frame {i}: expected texture (grey-level std >= {settings.min_texture_std}), found "
                    f"std {std:.2f}: textureless, optical flow is meaningless there")
    return x


def _work_size(hw: tuple[int, int], max_side: int) -> tuple[int, int]:
    s = min(1.0, max_side / max(hw))
    return max(1, round(hw[0] * s)), max(1, round(hw[1] * s))


def _grey(frames: np.ndarray, work_hw: tuple[int, int]) -> list[np.ndarray]:
    out = []
    for f in frames:
        g = cv2.cvtColor(f, cv2.COLOR_RGB2GRAY)
        if g.shape != work_hw:
            g = cv2.resize(g, (work_hw[1], work_hw[0]), interpolation=cv2.INTER_AREA)
        out.append(g)
    return out


def _to_input_size(flow: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """A flow (h, w, 2) at the working size -> (H, W, 2) in input pixels."""
    h, w = flow.shape[:2]
    if (h, w) == tuple(hw):
        return flow
    up = cv2.resize(flow, (hw[1], hw[0]), interpolation=cv2.INTER_LINEAR)
    return up * np.array([hw[1] / w, hw[0] / h], np.float32)


def _flows(frames: np.ndarray, settings: FlowSettings) -> FlowSet:
    hw = frames.shape[1:3]
    work_hw = _work_size(hw, settings.max_side)
    greys = _grey(frames, work_hw)
    dis = cv2.DISOpticalFlow_create(_PRESETS[settings.preset])
    fwd = np.empty((len(greys) - 1, *hw, 2), np.float32)
    bwd = np.empty_like(fwd)
    for i, (a, b) in enumerate(zip(greys[:-1], greys[1:])):
        fwd[i] = _to_input_size(dis.calc(a, b, None), hw)
        bwd[i] = _to_input_size(dis.calc(b, a, None), hw)
    return FlowSet(fwd, bwd, work_hw)


def flows(frames, settings: FlowSettings = FlowSettings()) -> FlowSet:
    """Forward and backward DIS flow of each consecutive pair of frames (T, H, W, 3) (see the module
    docstring for the working size and units). Raises VideoError when the frames cannot be measured."""
    x = check_frames(frames, 2, settings)
    if isinstance(x, str):
        raise VideoError(f"flows: {x}")
    return _flows(x, settings)


def forward_backward_error(forward: np.ndarray, backward: np.ndarray, crop: int = 15) -> float:
    """WorldScore's forward-backward end-point error of one pair: forward, backward (H, W, 2) flows
    in pixels; mean over the (H - 2 crop) x (W - 2 crop) centre of |q + B(round q) - p|, q = p + F(p),
    with round q clipped into the crop and coordinates relative to it."""
    f = forward[crop:forward.shape[0] - crop, crop:forward.shape[1] - crop].astype(np.float32)
    b = backward[crop:backward.shape[0] - crop, crop:backward.shape[1] - crop].astype(np.float32)
    h, w = f.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    qx, qy = xs + f[..., 0], ys + f[..., 1]
    ix = np.clip(np.round(qx), 0, w - 1).astype(np.intp)
    iy = np.clip(np.round(qy), 0, h - 1).astype(np.intp)
    back = b[iy, ix]
    return float(np.mean(np.hypot(qx + back[..., 0] - xs, qy + back[..., 1] - ys), dtype=np.float64))


def _flow_set_for(frames, flow_set: FlowSet | None, settings: FlowSettings) -> FlowSet | str:
    x = check_frames(frames, 2, settings)
    if isinstance(x, str):
        return x
    if flow_set is None:
        return _flows(x, settings)
    if flow_set.forward.shape[:3] != (x.shape[0] - 1, *x.shape[1:3]):
        raise VideoError(f"flow_set: expected flows of {x.shape[0] - 1} pairs at {x.shape[1]}x{x.shape[2]}, "
                         f"found {flow_set.forward.shape[:3]}")
    return flow_set


def photometric_consistency(frames, flow_set: FlowSet | None = None,
                            settings: FlowSettings = FlowSettings()) -> Metric:
    """Mean forward-backward flow error of consecutive frames (T, H, W, 3), px (lower is better)."""
    name = "photometric_consistency"
    fs = _flow_set_for(frames, flow_set, settings)
    if isinstance(fs, str):
        return Metric.failed(name, fs, unit="px")
    errs = [forward_backward_error(f, b, settings.crop) for f, b in zip(fs.forward, fs.backward)]
    raw = float(np.mean(errs))
    return Metric(name, raw, minmax_score(raw, FLOW_AEPE), unit="px",
                  details={"per_pair": errs, "crop_px": settings.crop, "flow": f"DIS {settings.preset}",
                           "work_hw": list(fs.work_hw)})


def motion_magnitude(frames, flow_set: FlowSet | None = None, settings: FlowSettings = FlowSettings()) -> Metric:
    """Mean over consecutive pairs of the median flow magnitude, px (frames (T, H, W, 3))."""
    name = "motion_magnitude"
    fs = _flow_set_for(frames, flow_set, settings)
    if isinstance(fs, str):
        return Metric.failed(name, fs, unit="px")
    medians = [float(np.median(np.hypot(f[..., 0], f[..., 1]))) for f in fs.forward]
    raw = float(np.mean(medians))
    return Metric(name, raw, motion_magnitude_score(raw), unit="px",
                  details={"per_pair_median": medians, "flow": f"DIS {settings.preset}", "work_hw": list(fs.work_hw)})


def _splat(target_x: np.ndarray, target_y: np.ndarray, values: np.ndarray, weight: np.ndarray):
    """Bilinear forward splat of values (H, W, C) from each pixel to (target_x, target_y) (H, W),
    scaled by weight (H, W). -> (sum of weight * bilinear * value (H, W, C), sum of weight *
    bilinear (H, W), sum of bilinear alone (H, W): the plain density). Taps that fall outside the
    image land in a 2-pixel border that is cut off."""
    h, w = weight.shape
    x0 = np.clip(np.floor(target_x), -2, w)
    y0 = np.clip(np.floor(target_y), -2, h)
    fx = np.clip(target_x - x0, 0.0, 1.0).ravel()
    fy = np.clip(target_y - y0, 0.0, 1.0).ravel()
    pw, size = w + 4, (h + 4) * (w + 4)
    idx = ((y0 + 2) * pw + (x0 + 2)).astype(np.intp).ravel()
    sources = [None, weight.ravel()] + [weight.ravel() * values[..., c].ravel() for c in range(values.shape[-1])]
    sums = np.zeros((len(sources), size))
    for offset, bil in ((0, (1 - fx) * (1 - fy)), (1, fx * (1 - fy)), (pw, (1 - fx) * fy), (pw + 1, fx * fy)):
        for k, src in enumerate(sources):
            sums[k] += np.bincount(idx + offset, bil if src is None else bil * src, size)
    sums = sums.reshape(-1, h + 4, w + 4)[:, 2:-2, 2:-2]
    return np.moveaxis(sums[2:], 0, -1), sums[1], sums[0]


def _remap(image: np.ndarray, grid_x: np.ndarray, grid_y: np.ndarray, cubic: bool = False) -> np.ndarray:
    return cv2.remap(image, grid_x.astype(np.float32), grid_y.astype(np.float32),
                     cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def interpolate_midpoint(frame0: np.ndarray, frame2: np.ndarray, flow02: np.ndarray, flow20: np.ndarray,
                         settings: FlowSettings = FlowSettings()) -> np.ndarray:
    """The frame halfway between frame0 and frame2 (H, W, 3) uint8, given their flows (H, W, 2) in
    pixels (flow02 moves frame0's pixels to frame2): flow reversal by splatting, backward warping
    and occlusion-aware blending (see the module docstring). -> (H, W, 3) uint8."""
    h, w = frame0.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # consistency of each source pixel: 1 where the flow there returns, ~0 where it is occluded
    sigma2 = 2.0 * settings.occlusion_px ** 2
    ret02 = _remap(flow20, xs + flow02[..., 0], ys + flow02[..., 1])
    ret20 = _remap(flow02, xs + flow20[..., 0], ys + flow20[..., 1])
    c0 = np.exp(-np.sum((flow02 + ret02) ** 2, -1) / sigma2)
    c2 = np.exp(-np.sum((flow20 + ret20) ** 2, -1) / sigma2)
    # flow reversal on a half-size grid (flows are smooth; a quarter of the splatting, same error on
    # the benchmark's clips): F_t->0 at p + F02(p)/2 is -F02(p)/2; consistent splats win collisions
    hh, hw = (h + 1) // 2, (w + 1) // 2
    ysh, xsh = np.mgrid[0:hh, 0:hw].astype(np.float32)
    to_half, to_full = np.float32([hw / w, hh / h]), np.float32([w / hw, h / hh])
    halves = []
    for flow, c in ((flow02, c0), (flow20, c2)):
        fh = cv2.resize(flow, (hw, hh), interpolation=cv2.INTER_AREA) * to_half
        ch = cv2.resize(c.astype(np.float32), (hw, hh), interpolation=cv2.INTER_AREA)
        v, wsum, dens = _splat(xsh + 0.5 * fh[..., 0], ysh + 0.5 * fh[..., 1], -0.5 * fh, ch + 1e-3)
        halves.append(((v / np.maximum(wsum, 1e-12)[..., None]).astype(np.float32), dens[..., None] > 0.05, fh))
    (ft0, ok0, f02h), (ft2, ok2, f20h) = halves
    # holes: the other direction's reversal (linear motion), else the flow read at the same pixel
    ft0 = np.where(ok0, ft0, np.where(ok2, -ft2, -0.5 * f02h))
    ft2 = np.where(ok2, ft2, np.where(ok0, -ft0, -0.5 * f20h))
    ft0 = cv2.resize(ft0, (w, h), interpolation=cv2.INTER_LINEAR) * to_full
    ft2 = cv2.resize(ft2, (w, h), interpolation=cv2.INTER_LINEAR) * to_full
    x0, y0 = xs + ft0[..., 0], ys + ft0[..., 1]
    x2, y2 = xs + ft2[..., 0], ys + ft2[..., 1]
    warp0 = _remap(frame0, x0, y0, cubic=True).astype(np.float32)
    warp2 = _remap(frame2, x2, y2, cubic=True).astype(np.float32)
    occ0 = 1.0 - _remap(c0.astype(np.float32), x0, y0)  # source pixel of frame0 hidden in frame2
    occ2 = 1.0 - _remap(c2.astype(np.float32), x2, y2)
    w0 = 0.5 * (1.0 - occ2 * (1.0 - occ0))
    w2 = 0.5 * (1.0 - occ0 * (1.0 - occ2))
    mid = (w0[..., None] * warp0 + w2[..., None] * warp2) / np.maximum(w0 + w2, 1e-6)[..., None]
    return np.clip(np.round(mid), 0, 255).astype(np.uint8)


def worldscore_mse(pred: np.ndarray, real: np.ndarray) -> float:
    """WorldScore's interpolation "MSE": the mean of (pred - real) ** 2 computed on uint8 arrays,
    so difference and square wrap modulo 256 (= mean((d * d) mod 256))."""
    return float(np.mean((pred.astype(np.uint8) - real.astype(np.uint8)) ** 2))


def motion_smoothness(frames, settings: FlowSettings = FlowSettings()) -> Metric:
    """Interpolate each odd frame of (T, H, W, 3) from its even neighbours and compare with the real
    one (see the module docstring). raw = {"mse_worldscore", "mse", "ssim"} means over triplets."""
    name = "motion_smoothness"
    x = check_frames(frames, 3, settings)
    if isinstance(x, str):
        return Metric.failed(name, x)
    even = x[0::2]
    fs = _flows(even, settings)
    mse_ws, mse, ssims = [], [], []
    for k in range(fs.num_pairs):
        mid = interpolate_midpoint(even[k], even[k + 1], fs.forward[k], fs.backward[k], settings)
        real = x[2 * k + 1]
        mse_ws.append(worldscore_mse(mid, real))
        mse.append(float(np.mean((mid.astype(np.float64) - real) ** 2)))
        ssims.append(ssim_metric(mid, real))
    raw = {"mse_worldscore": float(np.mean(mse_ws)), "mse": float(np.mean(mse)), "ssim": float(np.mean(ssims))}
    return Metric(name, raw, motion_smoothness_score(raw["mse_worldscore"], raw["ssim"]),
                  unit="mse 0..255 units, ssim",
                  details={"per_triplet": {"mse_worldscore": mse_ws, "mse": mse, "ssim": ssims},
                           "lpips": None,
                           "score_components": "mse_worldscore and ssim (LPIPS needs downloaded weights)",
                           "interpolator": f"DIS {settings.preset} flow reversal + occlusion-aware blend "
                                           "(weight-free; WorldScore uses VFIMamba)",
                           "work_hw": list(fs.work_hw)})


def flow_metrics(frames, settings: FlowSettings = FlowSettings()) -> list[Metric]:
    """photometric_consistency, motion_magnitude (sharing one FlowSet) and motion_smoothness of
    frames (T, H, W, 3)."""
    x = check_frames(frames, 2, settings)
    if isinstance(x, str):
        return [Metric.failed("photometric_consistency", x, unit="px"), Metric.failed("motion_magnitude", x, unit="px"),
                motion_smoothness(frames, settings)]
    fs = _flows(x, settings)
    return [photometric_consistency(x, fs, settings), motion_magnitude(x, fs, settings), motion_smoothness(x, settings)]
