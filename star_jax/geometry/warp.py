"""Depth-image forward warping with a z-buffer: the explicit spatial constraint of STAR.

Each source pixel with valid depth is lifted to a 3-D point, moved into the target camera and
splatted with a square footprint onto a canvas `supersample` times the output resolution. Where
several points land on one canvas pixel the nearest wins; points within `depth_epsilon` of the
nearest tie, and a tie goes to the first or the last source index (row-major), so the result is
deterministic. The canvas then comes down to the output resolution: colour by the mean of each
s x s cell (OpenCV INTER_AREA), mask and depth by the cell's top-left sample (OpenCV
INTER_NEAREST, which takes source index floor(s * i)). Pixels that receive no point are black and
invalid: the mask the model sees.

A frozen `WarpRecipe` holds these quantities; `warp_recipe(mode, point_size)` names the four in use:

  "inspatio-release"  the InSpatio-World release's point renderer (scripts/render_point_cloud.py,
                      `render_batch`): 2x supersampling, footprint int(2 * point_size) made odd
                      (5 x 5 for point size 2) centred on the rounded position, target depth
                      > 0.1, z-test `z <= nearest + 1e-4`, the last write wins, black background.
                      The conditioning converted InSpatio weights were trained on.
  "star-jax-v0"       this codebase before issue 13: splat at output resolution, footprint
                      `point_size` anchored at -((point_size - 1) // 2), strict z-test, the first
                      source index wins ties.
  "star-jax-v1"       crack-free (issue 11): the source pixel grid rasterised as a triangle mesh
                      at output resolution, cut where neighbouring source depths differ by more
                      than 5 % (disocclusions stay holes), colour interpolated, nearest wins;
                      every point also splats to its own pixel where no surface is nearer
                      (`splat.mesh_splat`). Each quad of 2 x 2 source pixels draws at most a
                      window of point_size + 2 px square (4 px, a zoom of ~3x, at point size 2);
                      a closer zoom leaves seams, a larger point_size reaches further, at a cost
                      ~window^2.
  "inspatio-1.5"      the InSpatio-World 1.5 release's render (pipeline/depth_warper.py): a 4-tap
                      bilinear splat at output resolution with soft depth weights, colour and
                      depth the weighted means, mask = summed weight > 0 (`splat.bilinear_splat`).
                      point_size is recorded, not used. Source depth must exceed `min_depth`
                      (the release: > 0) and target z must be > 0.

The square modes splat with `splat="square"` (below); the others hand the projected grid to
`star_jax.geometry.splat`.

Anchor: the target intrinsics are scaled by s on their first two rows, as the release does, so
canvas pixel j sits at s * u and an output pixel averages canvas pixels [s i, s i + s): its centre
is (s - 1) / (2 s) px (0.25 px at s = 2) right of and below the pixel centre of the geometry
convention. Positions round half to even (torch.round), per footprint offset.

Everything is scatter-min / gather over flat arrays: jit-compatible (the recipe is a static,
hashable argument), vmap-able over frames, no Python loop over pixels.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp

from star_jax.errors import InputError
from star_jax.geometry.cameras import invert_rigid, project, transform_points, unproject
from star_jax.geometry.splat import bilinear_splat, mesh_splat

WARP_MODES = ("inspatio-release", "star-jax-v0", "star-jax-v1", "inspatio-1.5")
SPLATS = ("square", "mesh", "bilinear")


@dataclasses.dataclass(frozen=True)
class WarpRecipe:
    """How points become a render (see the module docstring). `mode` names it in metadata."""

    mode: str = "star-jax-v0"
    point_size: int = 1  # footprint side at the output resolution, as the user gives it
    supersample: int = 1  # canvas = supersample x output resolution
    footprint: int = 1  # square side on the canvas; offsets from -((footprint - 1) // 2)
    depth_epsilon: float = 0.0  # z-test: a splat survives when z <= nearest + depth_epsilon
    near: float = 1e-3  # target-camera depths <= near are dropped
    last_wins: bool = False  # among survivors, the last (else the first) source index wins
    splat: str = "square"  # "square": the z-buffered squares above; "mesh" / "bilinear": star_jax.geometry.splat
    depth_cut: float = 0.0  # mesh: a triangle spans a depth edge when its source depths' max/min > 1 + depth_cut
    window: int = 1  # mesh: the widest / tallest triangle rasterised, in output pixels (static shape)
    softness: float = 50.0  # bilinear: weights / exp(softness * log(1 + z) / max log(1 + z))
    z_max: float = 1000.0  # bilinear: z clamped to [0, z_max] in those weights

    def __post_init__(self):
        if self.supersample < 1 or self.footprint < 1 or self.point_size < 1 or self.window < 1:
            raise InputError(f"warp recipe {self.mode!r}: supersample, footprint, point_size and window must be "
                             f">= 1, got {self.supersample}, {self.footprint}, {self.point_size}, {self.window}")
        if self.splat not in SPLATS or (self.splat != "square" and self.supersample != 1):
            raise InputError(f"warp recipe {self.mode!r}: splat must be one of {', '.join(SPLATS)} (only 'square' "
                             f"supersamples), got {self.splat!r} with supersample {self.supersample}")

    def metadata(self) -> dict:
        return dataclasses.asdict(self)


def warp_recipe(mode: str = "inspatio-release", point_size: int = 2) -> WarpRecipe:
    """The named recipes. point_size: the footprint at output resolution (the release's default 2)."""
    point_size = int(point_size)
    if point_size < 1:
        raise InputError(f"warp.point_size must be >= 1, got {point_size}")
    if mode == "inspatio-release":
        fp = 2 * point_size
        return WarpRecipe(mode, point_size, 2, fp + 1 if fp % 2 == 0 else fp, 1e-4, 0.1, True)
    if mode == "star-jax-v0":
        return WarpRecipe(mode, point_size, 1, point_size, 0.0, 1e-3, False)
    if mode == "star-jax-v1":
        return WarpRecipe(mode, point_size, 1, 1, 0.0, 1e-3, False, "mesh", depth_cut=0.05, window=point_size + 2)
    if mode == "inspatio-1.5":
        return WarpRecipe(mode, point_size, 1, 1, 0.0, 0.0, False, "bilinear")
    raise InputError(f"warp mode {mode!r}: expected one of {', '.join(WARP_MODES)}")


class WarpResult(NamedTuple):
    """Output of a warp. Leading dims are the caller's batch dims (e.g. T frames)."""

    rgb: jnp.ndarray  # (..., Ho, Wo, C): mean colour of the cell's winning points, 0 (black) where none
    mask: jnp.ndarray  # (..., Ho, Wo) bool: True where a point landed on the cell's top-left sample
    depth: jnp.ndarray  # (..., Ho, Wo): target-camera z of that sample's winner, 0 where invalid
    # (mesh: the covering triangle's interpolated colour / depth; bilinear: the weighted means)


def _splat_offsets(footprint: int):
    lo = -((footprint - 1) // 2)
    r = jnp.arange(lo, lo + footprint)
    dv, du = jnp.meshgrid(r, r, indexing="ij")
    return du.reshape(-1), dv.reshape(-1)


def _resolve(recipe: WarpRecipe | None, point_size: int) -> WarpRecipe:
    if recipe is None:
        return WarpRecipe("star-jax-v0", point_size, 1, point_size)
    if point_size != 1:
        raise ValueError(f"give a warp recipe or a point_size, not both (recipe {recipe.mode!r}, "
                         f"point_size {point_size})")
    return recipe


def _cast(x: jnp.ndarray, dtype) -> jnp.ndarray:
    """Interpolated float32 colours back to the input dtype (integers round, never truncate)."""
    if jnp.issubdtype(dtype, jnp.integer):
        x = jnp.round(x)
    return x.astype(dtype)


def warp_frame(
    rgb: jnp.ndarray,
    depth: jnp.ndarray,
    K_src: jnp.ndarray,
    w2c_src: jnp.ndarray,
    K_tgt: jnp.ndarray,
    w2c_tgt: jnp.ndarray,
    out_hw: tuple[int, int] | None = None,
    point_size: int = 1,
    min_depth: float = 1e-3,
    recipe: WarpRecipe | None = None,
) -> WarpResult:
    """Renders one source frame into a target camera.

    Args:
      rgb: (H, W, C) source colours (the output keeps the dtype; cells are averaged in float32).
      depth: (H, W) source z-depth; <= min_depth or non-finite = no point.
      K_src, K_tgt: (3, 3) intrinsics at the source / output resolution. w2c_src, w2c_tgt: (4, 4).
      out_hw: target (Ho, Wo); defaults to (H, W).
      recipe: a `WarpRecipe` (static under jit). Without one, `point_size` is shorthand for the
        "star-jax-v0" recipe with that footprint (1 = single pixel).
    """
    if rgb.ndim != 3 or depth.shape != rgb.shape[:2]:
        raise ValueError(f"warp_frame: rgb (H, W, C) and depth (H, W) must agree, got {rgb.shape}, {depth.shape}")
    if point_size < 1:
        raise ValueError(f"point_size must be >= 1, got {point_size}")
    rc = _resolve(recipe, point_size)
    s = rc.supersample
    H, W = depth.shape
    Ho, Wo = out_hw if out_hw is not None else (H, W)
    Hs, Ws = Ho * s, Wo * s
    n_src, n_canvas = H * W, Hs * Ws
    C = rgb.shape[-1]

    depth = depth.astype(jnp.float32)
    pts = unproject(depth, K_src.astype(jnp.float32)).reshape(n_src, 3)
    src_to_tgt = w2c_tgt.astype(jnp.float32) @ invert_rigid(w2c_src.astype(jnp.float32))
    K_canvas = K_tgt.astype(jnp.float32) * jnp.array([[s], [s], [1]], jnp.float32)
    uv, z = project(transform_points(src_to_tgt, pts), K_canvas, eps=rc.near)
    valid = (jnp.isfinite(depth) & (depth > min_depth)).reshape(n_src) & jnp.isfinite(uv).all(-1)
    if rc.splat != "square":
        grid = (uv.reshape(H, W, 2), z.reshape(H, W), valid.reshape(H, W))
        if rc.splat == "mesh":
            out = mesh_splat(*grid, depth, rgb, (Ho, Wo), rc.depth_cut, rc.window)
        else:
            out = bilinear_splat(*grid, rgb, (Ho, Wo), rc.softness, rc.z_max)
        return WarpResult(_cast(out[0], rgb.dtype), out[1], out[2])

    du, dv = _splat_offsets(rc.footprint)
    uv = jnp.clip(jnp.where(valid[:, None], uv, 0.0), -(2.0**24), 2.0**24)  # far off-screen stays off, int-safe
    ui = jnp.round(uv[:, 0, None] + du[None]).astype(jnp.int32)  # (N, P)
    vi = jnp.round(uv[:, 1, None] + dv[None]).astype(jnp.int32)
    ok = valid[:, None] & (ui >= 0) & (ui < Ws) & (vi >= 0) & (vi < Hs)
    dump = n_canvas  # one extra slot that swallows every rejected splat
    lin = jnp.where(ok, vi * Ws + ui, dump).reshape(-1)
    zs = jnp.where(ok, z[:, None], jnp.inf).reshape(-1)

    zbuf = jnp.full((n_canvas + 1,), jnp.inf, jnp.float32).at[lin].min(zs)
    survives = ok.reshape(-1) & (zs <= zbuf[lin] + rc.depth_epsilon)
    # rank survivors so that the wanted one (first or last source index) has the smallest key
    src_idx = jnp.broadcast_to(jnp.arange(n_src, dtype=jnp.int32)[:, None], ok.shape).reshape(-1)
    key = (n_src - 1 - src_idx) if rc.last_wins else src_idx
    best = jnp.full((n_canvas + 1,), n_src, jnp.int32).at[lin].min(jnp.where(survives, key, n_src))[:n_canvas]
    hit = best < n_src
    winner = jnp.clip((n_src - 1 - best) if rc.last_wins else best, 0, n_src - 1)

    colours = jnp.where(hit[:, None], rgb.reshape(n_src, C)[winner], jnp.zeros((), rgb.dtype))
    out_rgb = colours.reshape(Ho, s, Wo, s, C).astype(jnp.float32).mean(axis=(1, 3)).astype(rgb.dtype)
    hit = hit.reshape(Hs, Ws)[::s, ::s]
    out_depth = jnp.where(hit, z[winner].reshape(Hs, Ws)[::s, ::s], 0.0)
    return WarpResult(out_rgb, hit, out_depth)


def warp_frames(
    rgb: jnp.ndarray,
    depth: jnp.ndarray,
    K_src: jnp.ndarray,
    w2c_src: jnp.ndarray,
    K_tgt: jnp.ndarray,
    w2c_tgt: jnp.ndarray,
    out_hw: tuple[int, int] | None = None,
    point_size: int = 1,
    min_depth: float = 1e-3,
    recipe: WarpRecipe | None = None,
) -> WarpResult:
    """`warp_frame` batched over frames: rgb (T, H, W, C), depth (T, H, W), K (T, 3, 3) or (3, 3),
    w2c (T, 4, 4) -> WarpResult with leading T. The one entry the session and the render job
    call; jit it with `out_hw`, `point_size` and `recipe` static."""
    T = rgb.shape[0]
    if depth.shape[0] != T:
        raise ValueError(f"warp_frames: {T} rgb frames but {depth.shape[0]} depth maps")

    def per_t(x):
        return jnp.broadcast_to(x, (T,) + x.shape[-2:]) if x.ndim == 2 else x

    fn = lambda r, d, ks, ws, kt, wt: warp_frame(r, d, ks, ws, kt, wt, out_hw, point_size, min_depth, recipe)
    return jax.vmap(fn)(rgb, depth, per_t(K_src), per_t(w2c_src), per_t(K_tgt), per_t(w2c_tgt))


def fuse_views(views: WarpResult) -> tuple[WarpResult, jnp.ndarray]:
    """Renders of V source views into one target camera, (V, ..., Ho, Wo[, C]) -> the fused render
    (..., Ho, Wo[, C]) and each view's covered pixel count (V, ...). A hard z-test across views,
    as the 1.5 release fuses its four images: per pixel the covered view with the smallest depth
    wins, ties keep the lower view index; the mask is their union, black elsewhere."""
    z = jnp.where(views.mask, views.depth, jnp.inf)
    best = jnp.argmin(z, axis=0)  # argmin takes the first of equal minima: the lower view index
    rgb = jnp.take_along_axis(views.rgb, best[None, ..., None], 0)[0]
    depth = jnp.take_along_axis(views.depth, best[None], 0)[0]
    mask = views.mask.any(axis=0)
    fused = WarpResult(jnp.where(mask[..., None], rgb, jnp.zeros((), rgb.dtype)), mask, jnp.where(mask, depth, 0.0))
    return fused, views.mask.sum(axis=(-2, -1))
