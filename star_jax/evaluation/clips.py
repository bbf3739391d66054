"""The one check of what the evaluation is given: a clip of RGB frames and its render masks.

    frames = check_clip(frames, "frames", uint8=True)       # (T, H, W, 3) uint8
    truth = check_clip(truth, "truth", frames.shape)        # the same shape; uint8 or float as given
    masks = check_masks(masks, frames.shape)                # (T, H, W) bool

Every estimator (evaluate, ground_truth, flow, sfm, report) checks its frames here, so a bad clip
gets the same one-line message wherever it enters: "<name>: [frame i: ]expected ..., found ...".
A clip is (T, H, W, 3) RGB, uint8, or float in [0, 1] with no NaN / inf; float values may stray
`RANGE_SLACK` outside [0, 1] (round-off of a decoder's output) and are clipped when converted.
"""

from __future__ import annotations

import numpy as np

from star_jax.errors import InputError
from star_jax.io.files import to_uint8

RANGE_SLACK = 1e-3  # a quarter of one uint8 step


def check_clip(x, name: str, shape=None, *, min_frames: int = 1, uint8: bool = False) -> np.ndarray:
    """A clip (T, H, W, 3) (an array or a sequence of (H, W, 3) frames) -> the array; uint8 or
    float as given, or with `uint8` float frames rounded to uint8 (`io.files.to_uint8`).

    Args:
      name: the argument, named in the error ("frames", "truth", "report: masks").
      shape: the shape it must have (another clip's), or None.
      min_frames: the fewest frames T it may hold (>= 1).
    Raises InputError naming `name` (and the first bad frame) with what was expected and found.
    """
    if isinstance(x, (list, tuple)):
        shapes = sorted({np.shape(f) for f in x})
        if len(shapes) > 1:
            raise InputError(f"{name}: expected frames of one size (H, W, 3), found sizes {shapes}")
    x = np.asarray(x)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise InputError(f"{name}: expected a clip (T, H, W, 3), found shape {x.shape}")
    if len(x) < min_frames:
        raise InputError(f"{name}: expected at least {min_frames} frame{'s' * (min_frames != 1)}, found {len(x)}")
    if shape is not None and x.shape != tuple(shape):
        raise InputError(f"{name}: expected the frames' shape {tuple(shape)}, found {x.shape}")
    if x.dtype == np.uint8:
        return x
    if not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{name}: expected uint8 (or float in [0, 1]) frames, found dtype {x.dtype}")
    bad = ~np.isfinite(x) | (x < -RANGE_SLACK) | (x > 1 + RANGE_SLACK)
    if bad.any():
        i = int(np.argmax(bad.reshape(len(x), -1).any(axis=1)))
        raise InputError(f"{name}: frame {i}: expected values in [0, 1], found {x[i][bad[i]][0]}")
    return to_uint8(x) if uint8 else x


def check_masks(m, shape, name: str = "masks") -> np.ndarray:
    """Render masks (T, H, W) matching clips of `shape` (T, H, W, 3): bool, or integers 0 / 1
    (True where the render shows the scene) -> bool; else InputError naming `name`."""
    m = np.asarray(m)
    if m.shape != tuple(shape[:3]):
        raise InputError(f"{name}: expected (T, H, W) = {tuple(shape[:3])} like the frames, found {m.shape}")
    if m.dtype != bool:
        if not np.issubdtype(m.dtype, np.integer) or m.size and not np.isin(m, (0, 1)).all():
            raise InputError(f"{name}: expected bool (or 0 / 1) per pixel, True where the render shows the scene; "
                             f"found dtype {m.dtype}" + (f" with values {np.unique(m)[:4].tolist()}"
                                                         if np.issubdtype(m.dtype, np.number) else ""))
        m = m.astype(bool)
    return m
