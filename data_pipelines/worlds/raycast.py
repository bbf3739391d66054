"""Exact analytic ray casting of a `Scene` in float64 NumPy: RGB, z-depth and object ids.

Every pixel's ray is intersected in closed form with every object (rectangles, boxes by the slab
method in their own frame, spheres by the quadratic); the nearest hit wins (a z-buffer over
objects). Shading is view-independent (Lambert under a directional sun, hard shadows cast by the
same intersection code, ambient light), so a surface point has the same colour in every camera:
depth-warping one render into another camera must reproduce that camera's render wherever the
point is visible in both. Colour is averaged over `supersample`^2 rays per pixel (anti-aliasing);
depth and ids come from the ray through the pixel centre, so they are exact at every pixel.
`appearance` "flat" replaces each object's texture by its mean colour (`textures.mean_albedo`);
geometry, light, shadows, depth and ids are the same as "textured" (the default).

Camera rays are d = R_c2w K^-1 (u, v, 1): the hit parameter t of o + t d is then the z-depth.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from data_pipelines.worlds.scene import Box, Quad, Scene, Sphere
from data_pipelines.worlds.textures import APPEARANCES, albedo, mean_albedo

_EPS = 1e-6  # smallest hit distance (scene units)
_SHADOW_BIAS = 1e-4


@dataclasses.dataclass(frozen=True)
class View:
    """One rendered camera view."""

    rgb: np.ndarray  # (H, W, 3) float32 in [0, 1]
    depth: np.ndarray  # (H, W) float32 z-depth; 0 where the ray sees the sky
    ids: np.ndarray  # (H, W) int16: index into scene.objects, -1 = sky


def rot_y(angle: float) -> np.ndarray:
    """(3, 3) rotation by `angle` radians about the world's vertical (y) axis."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def object_pose(obj, time: float) -> tuple[np.ndarray, np.ndarray]:
    """(centre (3,), R (3, 3) object-to-world) of an object at `time` seconds."""
    if isinstance(obj, Quad):
        return np.asarray(obj.centre, np.float64), np.eye(3)
    centre = np.asarray(obj.centre, np.float64) + obj.motion.offset(time)
    yaw = obj.motion.yaw(time) + (math.radians(obj.yaw_deg) if isinstance(obj, Box) else 0.0)
    return centre, rot_y(yaw)


def intersect(obj, o: np.ndarray, d: np.ndarray, time: float) -> np.ndarray:
    """Ray parameter t (N,) of the first hit of rays o + t d with `obj`; +inf where the ray misses
    or the hit is behind (t <= eps). o and d are (N, 3) or one shared (3,) vector each."""
    c, R = object_pose(obj, time)
    oc = o - c
    per_o, per_d = o.ndim == 2, d.ndim == 2  # per-ray (N, 3) or shared (3,)
    n_rays = len(o) if per_o else len(d) if per_d else 1
    t = np.full(n_rays, np.inf)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if isinstance(obj, Quad):
            u, v = np.asarray(obj.axis_u, np.float64), np.asarray(obj.axis_v, np.float64)
            n = np.cross(u, v)
            hit_t = -(oc @ n) / (d @ n)
            a = oc @ u + hit_t * (d @ u)
            b = oc @ v + hit_t * (d @ v)
            hit = (np.abs(a) <= obj.half_u) & (np.abs(b) <= obj.half_v)
            return np.broadcast_to(np.where(hit & (hit_t > _EPS), hit_t, np.inf), (n_rays,))
        radius = obj.radius if isinstance(obj, Sphere) else float(np.linalg.norm(obj.half_size))
        dd = _dot(d, d)
        b = _dot(oc, d)
        disc = b * b - dd * (_dot(oc, oc) - radius**2)  # bounding sphere (the sphere itself)
        cand = np.flatnonzero(np.broadcast_to(disc >= 0, (n_rays,)))
        if cand.size == 0:
            return t
        if isinstance(obj, Sphere):
            per = per_o or per_d
            hit_t = (-(b[cand] if per else b) - np.sqrt(disc[cand] if per else disc)) / (dd[cand] if per_d else dd)
        else:  # slab method in the box frame (x R = R^T x for row vectors)
            h = np.asarray(obj.half_size, np.float64)
            ol = (oc[cand] if per_o else oc) @ R
            dl = (d[cand] if per_d else d) @ R
            dl = np.where(np.abs(dl) < 1e-15, 1e-15, dl)
            t1, t2 = (-h - ol) / dl, (h - ol) / dl
            hit_t = np.minimum(t1, t2).max(axis=-1)
            hit_t = np.where(np.maximum(t1, t2).min(axis=-1) >= hit_t, hit_t, np.inf)
        t[cand] = np.where(hit_t > _EPS, hit_t, np.inf)
    return t


def _dot(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.einsum("...i,...i->...", x, y)


def surface(obj, p: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """At world points p (M, 3) on `obj`: unit normal (M, 3, outward), texture coordinates uv
    (M, 2) and object-frame points (M, 3), both in scene units."""
    c, R = object_pose(obj, time)
    q = (p - c) @ R
    if isinstance(obj, Quad):
        u, v = np.asarray(obj.axis_u, np.float64), np.asarray(obj.axis_v, np.float64)
        n = np.broadcast_to(np.cross(u, v), p.shape)
        return n, np.stack([q @ u, q @ v], -1), q
    if isinstance(obj, Box):
        h = np.asarray(obj.half_size, np.float64)
        face = np.argmax(np.abs(q) / h, axis=1)
        rows = np.arange(len(q))
        n_local = np.zeros_like(q)
        n_local[rows, face] = np.sign(q[rows, face])
        uv = np.stack([q[rows, (face + 1) % 3], q[rows, (face + 2) % 3]], -1)
        return n_local @ R.T, uv, q
    nl = q / obj.radius
    s = obj.texture.scale
    wraps = 2 * max(1, round(math.pi * obj.radius / s))  # even: patterns close around the sphere
    lon = np.arctan2(nl[:, 0], nl[:, 2])
    lat = np.arcsin(np.clip(nl[:, 1], -1.0, 1.0))
    uv = np.stack([lon * wraps * s / (2 * math.pi), lat * obj.radius], -1)
    return nl @ R.T, uv, q


def cast(scene: Scene, o: np.ndarray, d: np.ndarray, time: float) -> tuple[np.ndarray, np.ndarray]:
    """Nearest hit over all objects -> (t (N,) with inf = none, object index (N,) with -1 = none).
    o and d are (N, 3) or one shared (3,) vector each."""
    n_rays = len(o) if o.ndim == 2 else len(d) if d.ndim == 2 else 1
    best = np.full(n_rays, np.inf)
    idx = np.full(n_rays, -1, np.int64)
    for i, obj in enumerate(scene.objects):
        t = intersect(obj, o, d, time)
        closer = t < best
        best = np.where(closer, t, best)
        idx = np.where(closer, i, idx)
    return best, idx


def shade(scene: Scene, o: np.ndarray, d: np.ndarray, t: np.ndarray, idx: np.ndarray, time: float,
          shadows: bool = True, appearance: str = "textured") -> np.ndarray:
    """Colour (N, 3) of the hits (t, idx) of rays o + t d; the sky where idx = -1. `appearance`:
    "textured" (each texture evaluated at the hit) or "flat" (each object its texture's mean)."""
    if appearance not in APPEARANCES:
        raise ValueError(f"appearance must be one of {APPEARANCES}, got {appearance!r}")
    o = np.broadcast_to(o, d.shape)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    elev = np.clip(dn[:, 1], 0.0, 1.0)[:, None] ** 0.6
    rgb = np.asarray(scene.sky_horizon) * (1.0 - elev) + np.asarray(scene.sky_zenith) * elev
    hit = np.flatnonzero(idx >= 0)
    if hit.size == 0:
        return rgb
    p = o[hit] + t[hit, None] * d[hit]
    normal = np.zeros_like(p)
    colour = np.zeros_like(p)
    for i, obj in enumerate(scene.objects):
        sel = idx[hit] == i
        if np.any(sel):
            n, uv, q = surface(obj, p[sel], time)
            normal[sel] = n
            colour[sel] = albedo(obj.texture, uv, q) if appearance == "textured" else mean_albedo(obj.texture)
    normal = np.where((np.einsum("ij,ij->i", normal, d[hit]) > 0)[:, None], -normal, normal)  # face the viewer
    sun = np.asarray(scene.sun, np.float64)
    sun = sun / np.linalg.norm(sun)
    lambert = np.maximum(normal @ sun, 0.0)
    if shadows:
        lit = lambert > 0
        blocked, _ = cast(scene, p[lit] + _SHADOW_BIAS * normal[lit], sun, time)
        lambert[np.flatnonzero(lit)[np.isfinite(blocked)]] = 0.0
    rgb[hit] = colour * (scene.ambient + (1.0 - scene.ambient) * lambert)[:, None]
    return rgb


def camera_rays(K: np.ndarray, w2c: np.ndarray, hw: tuple[int, int], offsets=((0.0, 0.0),)):
    """Origin (3,) and directions (S, H, W, 3) through pixel centres + each (du, dv) in `offsets`,
    scaled so that the ray parameter is the z-depth."""
    H, W = hw
    K = np.asarray(K, np.float64)
    c2w = np.linalg.inv(np.asarray(w2c, np.float64))
    off = np.asarray(offsets, np.float64)
    v, u = np.mgrid[:H, :W].astype(np.float64)
    x = (u[None] + off[:, 0, None, None] - K[0, 2]) / K[0, 0]
    y = (v[None] + off[:, 1, None, None] - K[1, 2]) / K[1, 1]
    d_cam = np.stack([x, y, np.ones_like(x)], -1)
    return c2w[:3, 3], d_cam @ c2w[:3, :3].T


def render_view(scene: Scene, K: np.ndarray, w2c: np.ndarray, hw: tuple[int, int], time: float = 0.0,
                supersample: int = 2, shadows: bool = True, appearance: str = "textured") -> View:
    """Renders `scene` at `time` seconds through a pinhole K (3, 3) at world-to-camera w2c (4, 4)
    into an image of hw = (H, W), in `appearance` ("textured" or "flat", see `shade`)."""
    H, W = hw
    if supersample < 1:
        raise ValueError(f"supersample must be >= 1, got {supersample}")
    o, d = camera_rays(K, w2c, hw)
    d = d.reshape(-1, 3)
    t, idx = cast(scene, o, d, time)
    depth = _depth(t, hw)
    ids = idx.reshape(H, W).astype(np.int16)
    if supersample == 1:
        rgb = shade(scene, o, d, t, idx, time, shadows, appearance)
    else:
        k = (np.arange(supersample) + 0.5) / supersample - 0.5
        offsets = np.stack(np.meshgrid(k, k, indexing="ij"), -1).reshape(-1, 2)
        _, ds = camera_rays(K, w2c, hw, offsets)
        ds = ds.reshape(-1, 3)
        ts, idxs = cast(scene, o, ds, time)
        rgb = shade(scene, o, ds, ts, idxs, time, shadows, appearance).reshape(len(offsets), H * W, 3).mean(0)
    return View(rgb.reshape(H, W, 3).clip(0.0, 1.0).astype(np.float32), depth, ids)


def render_depth(scene: Scene, K: np.ndarray, w2c: np.ndarray, hw: tuple[int, int], time: float = 0.0) -> np.ndarray:
    """Only the z-depth (H, W) float32 of `render_view` (0 = sky), without shading."""
    o, d = camera_rays(K, w2c, hw)
    return _depth(cast(scene, o, d.reshape(-1, 3), time)[0], hw)


def _depth(t: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    return np.where(np.isfinite(t), t, 0.0).reshape(hw).astype(np.float32)


def render_video(scene: Scene, K: np.ndarray, w2c: np.ndarray, hw: tuple[int, int], times, supersample: int = 2,
                 shadows: bool = True, appearance: str = "textured") -> View:
    """Renders one view per camera w2c (T, 4, 4) at `times` (T,) seconds -> a View with leading T."""
    w2c = np.asarray(w2c)
    if w2c.ndim != 3 or w2c.shape[1:] != (4, 4) or len(w2c) != len(times):
        raise ValueError(f"render_video: w2c must be (T, 4, 4) with one time each, got {w2c.shape}, {len(times)} times")
    views = [render_view(scene, K, w, hw, float(t), supersample, shadows, appearance) for w, t in zip(w2c, times)]
    return View(*(np.stack([getattr(v, f.name) for v in views]) for f in dataclasses.fields(View)))
