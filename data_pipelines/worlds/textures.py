"""Procedural textures: albedo from surface coordinates, band-limited so warps can be judged.

Two appearances (`APPEARANCES`) of the same scene: "textured" evaluates the pattern at every
surface point (`albedo`); "flat" gives every object one constant colour, its texture's mean albedo
(`mean_albedo`, closed form, no pattern or noise evaluated): a clean synthetic look with none of
the texture detail, under the same light, shadows and geometry.

Every pattern is a smooth function (soft-edged checkers and stripes, grout lines with soft
borders, trilinear value noise), so a frame resampled at sub-pixel offsets (a depth warp) differs
from a direct render by little where the geometry is right, and by a lot where it is wrong.
The hash is integer arithmetic, so textures are the same on every machine.
"""

from __future__ import annotations

import functools

import numpy as np

from data_pipelines.worlds.scene import PALETTE, Texture

APPEARANCES = ("textured", "flat")
_SOFT = 3.0  # edge sharpness of checkers and stripes (tanh gain)
_GROUT = (0.03, 0.08)  # tiles: grout weight 1 - smoothstep(*_GROUT, distance to the tile edge)


def hash01(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice points (int64 arrays) -> uniform floats in [0, 1), a splitmix64-style hash."""
    with np.errstate(over="ignore"):
        x = (np.asarray(ix, np.int64).view(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
             ^ np.asarray(iy, np.int64).view(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
             ^ np.asarray(iz, np.int64).view(np.uint64) * np.uint64(0x165667B19E3779F9)
             ^ np.uint64(seed & 0xFFFFFFFF) * np.uint64(0x27D4EB2F165667C5))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(p: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 3-D value noise in [0, 1] at points p (M, 3) (lattice spacing 1)."""
    cell = np.floor(p)
    f = p - cell
    f = f * f * (3.0 - 2.0 * f)  # smoothstep fade
    i = cell.astype(np.int64)
    out = np.zeros(p.shape[0])
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += wx * wy * wz * hash01(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


def fbm(p: np.ndarray, seed: int) -> np.ndarray:
    """Three octaves of value noise, in [0, 1]."""
    return (0.5 * value_noise(p, seed) + 0.3 * value_noise(2.0 * p, seed + 1)
            + 0.2 * value_noise(4.0 * p, seed + 2))


def albedo(tex: Texture, uv: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Colour (M, 3) in [0, 1] of `tex` at surface coordinates uv (M, 2) and object-frame points
    p (M, 3), both in scene units (uv for 2-D patterns, p for noise, so spheres have no seam)."""
    a = np.asarray(PALETTE[tex.color])
    b = np.asarray(PALETTE[tex.color2])
    s = tex.scale
    u, v = uv[:, 0] / s, uv[:, 1] / s
    if tex.kind == "solid":
        w = np.zeros_like(u)
    elif tex.kind == "checker":
        w = 0.5 + 0.5 * np.tanh(_SOFT * np.sin(np.pi * u)) * np.tanh(_SOFT * np.sin(np.pi * v))
    elif tex.kind == "stripes":
        w = 0.5 + 0.5 * np.tanh(_SOFT * np.sin(np.pi * u))
    elif tex.kind == "tiles":  # shaded tiles (a hash per tile) between soft grout lines of colour2
        fu, fv = u - np.floor(u), v - np.floor(v)
        edge = np.minimum(np.minimum(fu, 1.0 - fu), np.minimum(fv, 1.0 - fv))  # distance to grout, in tiles
        w = 1.0 - _smoothstep(*_GROUT, edge)
        iu, iv = np.floor(u).astype(np.int64), np.floor(v).astype(np.int64)
        a = a[None] * (0.75 + 0.5 * hash01(iu, iv, np.zeros_like(iu), tex.seed)[:, None])
    elif tex.kind == "noise":
        w = _smoothstep(0.3, 0.7, fbm(p / s, tex.seed))
    else:  # pragma: no cover - Texture validates kind
        raise ValueError(tex.kind)
    rgb = a * (1.0 - w[:, None]) + b[None] * w[:, None]
    mottle = 0.85 + 0.3 * value_noise(p / (4.0 * s), tex.seed + 7)
    return np.clip(rgb * mottle[:, None], 0.0, 1.0)


def _smoothstep(lo: float, hi: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def mean_albedo(tex: Texture) -> np.ndarray:
    """The mean over the surface of `albedo(tex, ...)` (3,), before clipping: colour x (1 - E[w]) +
    colour2 x E[w] with E[w] the pattern's mean mixing weight (the tile shades and the mottle have
    mean 1). E[w] is exact: 0 for solid; 1/2 for checker, stripes (odd tanh(sin) patterns) and
    noise (value noise is symmetric about 1/2 and the smoothstep is odd about it); for tiles the
    grout share, the integral of 1 - smoothstep over the distance to the nearest tile edge, whose
    survival function is (1 - 2x)^2 on a unit tile."""
    a = np.asarray(PALETTE[tex.color], np.float64)
    b = np.asarray(PALETTE[tex.color2], np.float64)
    w = {"solid": 0.0, "checker": 0.5, "stripes": 0.5, "noise": 0.5, "tiles": _grout_share()}[tex.kind]
    return a * (1.0 - w) + b * w


@functools.cache
def _grout_share(n: int = 4096) -> float:
    """E[1 - smoothstep(lo, hi, edge)] = 1 - integral_lo^hi smoothstep'(x) (1 - 2x)^2 dx (midpoint rule)."""
    lo, hi = _GROUT
    x = lo + (np.arange(n) + 0.5) * (hi - lo) / n
    t = (x - lo) / (hi - lo)
    ds = 6.0 * t * (1.0 - t) / (hi - lo)
    return float(1.0 - np.sum(ds * (1.0 - 2.0 * x) ** 2) * (hi - lo) / n)
