"""Procedural worlds: the ray caster against closed forms (plane, sphere, boxes, shadows), warps
between two renders against the render itself, camera paths, determinism by seed."""

import math

import jax
import numpy as np
import pytest

from data_pipelines.worlds import (
    Box,
    CameraPath,
    Motion,
    PALETTE,
    Quad,
    Scene,
    Sphere,
    Texture,
    WorldSpec,
    describe,
    keyframes,
    look_at,
    path_w2c,
    quantize_depth,
    random_scene,
    render_view,
    sample_world,
)
from data_pipelines.worlds.raycast import cast, shade
from data_pipelines.worlds.textures import hash01
from star_jax.geometry import warp_frame

GREY = Texture("solid", "grey")


def pinhole(H, W, f):
    """K with the principal point on a pixel centre (odd sizes)."""
    return np.array([[f, 0, (W - 1) / 2], [0, f, (H - 1) / 2], [0, 0, 1]])


def points(view, K):
    """Camera-frame points (H, W, 3) of a view's z-depth, in float64."""
    H, W = view.depth.shape
    v, u = np.mgrid[:H, :W].astype(np.float64)
    z = view.depth.astype(np.float64)
    return np.stack([(u - K[0, 2]) / K[0, 0] * z, (v - K[1, 2]) / K[1, 1] * z, z], -1)


def test_sphere_depth_surface_and_silhouette_are_closed_form():
    H, W, f, zc, r = 101, 101, 80.0, 5.0, 1.0
    K = pinhole(H, W, f)
    scene = Scene((Sphere((0.0, 0.0, zc), r, GREY),))
    v = render_view(scene, K, np.eye(4), (H, W), supersample=1, shadows=False)  # world = camera
    assert v.depth[H // 2, W // 2] == pytest.approx(zc - r, abs=1e-6)
    on = v.ids == 0
    # every sphere pixel's unprojected point lies on the sphere (depth is stored as float32)
    dist = np.linalg.norm(points(v, K)[on] - [0, 0, zc], axis=-1)
    np.testing.assert_allclose(dist, r, atol=1e-6)
    # silhouette: a circle of radius f r / sqrt(zc^2 - r^2) pixels about the principal point
    rho = f * r / math.sqrt(zc**2 - r**2)
    assert abs(on.sum() / (math.pi * rho**2) - 1) < 0.03
    assert np.all(v.depth[~on] == 0) and np.all(v.ids[~on] == -1)  # the rest is sky


def test_floor_depth_at_image_centre_is_h_over_sin_pitch():
    H, W, f, h, pitch = 61, 81, 50.0, 1.5, math.radians(30)
    K = pinhole(H, W, f)
    floor = Quad((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 100.0, 100.0, GREY, "floor")
    c2w = look_at((0.0, h, 0.0), (0.0, 0.0, h / math.tan(pitch)))
    v = render_view(Scene((floor,)), K, np.linalg.inv(c2w), (H, W), supersample=1, shadows=False)
    assert v.depth[H // 2, W // 2] == pytest.approx(h / math.sin(pitch), rel=1e-6)
    on = v.ids == 0
    world = points(v, K)[on] @ c2w[:3, :3].T + c2w[:3, 3]
    np.testing.assert_allclose(world[:, 1], 0.0, atol=1e-6)  # every floor pixel lies on y = 0
    # rows above the horizon (v < cy - f tan(pitch)) see the sky, rows below see the floor
    horizon = (H - 1) / 2 - f * math.tan(pitch)
    assert not on[: int(math.floor(horizon))].any() and on[int(math.ceil(horizon)) + 1 :].all()


def test_box_faces_and_turned_box_edge():
    H, W, f = 81, 81, 60.0
    K = pinhole(H, W, f)
    box = Box((0.0, 0.0, 4.0), (0.5, 0.5, 0.5), GREY)
    v = render_view(Scene((box,)), K, np.eye(4), (H, W), supersample=1, shadows=False)
    np.testing.assert_allclose(v.depth[v.ids == 0], 3.5, rtol=1e-6)  # only the front face at z = 3.5
    turned = Box((0.0, 0.0, 4.0), (0.5, 0.5, 0.5), GREY, yaw_deg=45.0)
    v = render_view(Scene((turned,)), K, np.eye(4), (H, W), supersample=1, shadows=False)
    on = v.ids == 0
    assert v.depth[H // 2, W // 2] == pytest.approx(4.0 - 0.5 * math.sqrt(2), rel=1e-5)  # the near edge
    q = (points(v, K)[on] - [0, 0, 4.0]) @ np.array([[1, 0, 1], [0, math.sqrt(2), 0], [-1, 0, 1]]).T / math.sqrt(2)
    np.testing.assert_allclose(np.abs(q).max(axis=1), 0.5, atol=1e-6)  # points on the box surface


def test_shadow_is_ambient_only_and_lit_floor_is_lambert():
    floor = Quad((0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (0.0, 0.0, 1.0), 50.0, 50.0, GREY, "floor")
    blocker = Box((0.0, 2.0, 0.0), (1.0, 0.1, 1.0), GREY)  # a slab hovering over the origin
    o, d = np.array([0.0, 5.0, -5.0]), np.array([[0.0, -5.0, 5.0]])  # a ray to the floor at the origin

    def colour(objects, sun):
        scene = Scene(objects, sun=sun, ambient=0.3)
        t, idx = cast(scene, o, d, 0.0)
        assert idx[0] == 0 and t[0] == pytest.approx(1.0)
        return shade(scene, o, d, t, idx, 0.0)[0]

    overhead = colour((floor,), (0.0, 1.0, 0.0))  # albedo x (0.3 + 0.7 x 1)
    np.testing.assert_allclose(colour((floor,), (0.0, 0.96, 0.28)), overhead * (0.3 + 0.7 * 0.96), rtol=1e-12)
    np.testing.assert_allclose(colour((floor, blocker), (0.0, 0.96, 0.28)), overhead * 0.3, rtol=1e-12)
    # a sun low enough to pass under the slab's edge lights the point again
    np.testing.assert_allclose(colour((floor, blocker), (0.0, 0.6, 0.8)), overhead * (0.3 + 0.7 * 0.6), rtol=1e-12)


def _hash_twin(ix, iy, iz, seed):
    """hash01 in exact Python integers (mod 2^64): the platform-independent definition."""
    m = (1 << 64) - 1
    x = ((ix & m) * 0x9E3779B97F4A7C15 ^ (iy & m) * 0xC2B2AE3D27D4EB4F ^ (iz & m) * 0x165667B19E3779F9
         ^ (seed & 0xFFFFFFFF) * 0x27D4EB2F165667C5) & m
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & m
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & m
    x ^= x >> 31
    return (x >> 11) / float(1 << 53)


def test_texture_hash_matches_exact_integer_twin():
    rng = np.random.default_rng(0)
    ijk = rng.integers(-(1 << 40), 1 << 40, size=(3, 200))
    got = hash01(ijk[0], ijk[1], ijk[2], 12345)
    want = [_hash_twin(int(a), int(b), int(c), 12345) for a, b, c in ijk.T]
    np.testing.assert_array_equal(got, want)
    assert 0.4 < got.mean() < 0.6 and got.min() >= 0 and got.max() < 1


def _two_views(seed=1, H=120, W=208):
    scene = random_scene(seed)
    spec = WorldSpec(height=H, width=W)
    K = spec.intrinsics()
    base = look_at((0.0, 1.8, -(scene.half_extent - 1.5)), (0.0, 0.5, 0.0))
    path = CameraPath("orbit", keyframes([0.0, 4.0], [0.0, 12.0], [1.0]))
    w2c = path_w2c(base, path, 2, float(np.linalg.norm(base[:3, 3] - [0.0, 0.5, 0.0])))
    return [render_view(scene, K, w, (H, W), time=0.7) for w in w2c], K, w2c


def test_source_warped_with_true_depth_matches_target_render():
    (src, tgt), K, w2c = _two_views()
    warp = jax.jit(warp_frame)

    def warped(depth):
        out = warp(src.rgb, depth, K, w2c[0].astype(np.float32), K, w2c[1].astype(np.float32))
        return np.asarray(out.rgb), np.asarray(out.mask), np.asarray(out.depth)

    rgb, mask, z = warped(src.depth)
    # where the warped point is the surface the target sees (not one seen through a splat gap)
    seen = mask & (np.abs(z - tgt.depth) < 0.01 * tgt.depth)
    psnr = 10 * np.log10(1.0 / np.mean((rgb - tgt.rgb)[seen] ** 2))
    assert seen.mean() > 0.6 and psnr > 30.0, (psnr, seen.mean())
    # a 10 % depth error lands colours on the wrong pixels: the same comparison must see it
    rgb_bad, mask_bad, _ = warped(src.depth * 1.1)
    both = seen & mask_bad
    bad = 10 * np.log10(1.0 / np.mean((rgb_bad - tgt.rgb)[both] ** 2))
    assert both.mean() > 0.5 and bad < psnr - 6.0, (bad, psnr)


def test_sample_world_is_deterministic_seeded_and_moving():
    spec = WorldSpec(height=48, width=80, num_frames=9)
    a, b, c = sample_world(3, spec), sample_world(3, spec), sample_world(4, spec)
    for name in ("source_rgb", "source_depth", "source_w2c", "target_rgb", "target_w2c", "K"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.caption == b.caption != c.caption and not np.array_equal(a.source_rgb, c.source_rgb)
    assert a.source_rgb.shape == a.target_rgb.shape == (9, 48, 80, 3) and a.source_rgb.dtype == np.uint8
    assert a.source_w2c.shape == a.target_w2c.shape == (9, 4, 4)
    # the target starts at the source camera (keyframes begin at the identity), then departs
    np.testing.assert_allclose(a.target_w2c[0], a.source_w2c[0], atol=1e-5)
    assert np.abs(a.target_w2c[-1] - a.source_w2c[-1]).max() > 1e-2
    # captions use the fixed vocabulary and name each moving object's verb
    assert a.caption.startswith("a courtyard") and a.caption == describe(a.scene)
    assert a.scene.moving and all(a.scene.objects[i].motion.verb in a.caption for i in a.scene.moving)
    words = set(a.caption.replace(",", " ").replace(";", " ").replace(".", " ").split())
    assert words & set(PALETTE)


def test_moving_object_moves_and_static_scene_stays():
    K = pinhole(41, 61, 40.0)
    still = Sphere((-1.0, 0.0, 6.0), 0.5, Texture("checker", "red", "white", 0.2))
    mover = Sphere((1.0, 0.0, 6.0), 0.5, GREY, Motion(shift=(0.5, 0.0, 0.0), period_s=2.0))
    scene = Scene((still, mover))
    v0, v1 = (render_view(scene, K, np.eye(4), (41, 61), time=t, shadows=False) for t in (0.0, 0.5))
    np.testing.assert_array_equal(v0.rgb[v0.ids == 0], v1.rgb[v1.ids == 0])  # static: same pixels
    np.testing.assert_array_equal(v0.ids == 0, v1.ids == 0)
    cols = [np.nonzero(v.ids == 1)[1].mean() for v in (v0, v1)]
    # at t = period / 4 the mover is 0.5 to the right: 0.5 f / z = 3.33 pixels (x right)
    assert cols[1] - cols[0] == pytest.approx(0.5 * 40.0 / 6.0, abs=0.3)


def test_quantized_depth_is_what_the_reader_gets_and_refuses_overflow(tmp_path):
    from PIL import Image

    from star_jax.io.manifest import read_depth

    depth = np.array([[0.0, 0.0004, 0.0006, 1.23456], [9.9995, 30.0, 65.534, 2.0]], np.float32)
    code, back = quantize_depth(depth, 0.001)
    np.testing.assert_array_equal(code, [[0, 0, 1, 1235], [10000, 30000, 65534, 2000]])
    Image.fromarray(code).save(tmp_path / "depth_0000.png")
    np.testing.assert_array_equal(read_depth(str(tmp_path / "depth_0000.png"), 0.001), back)
    with pytest.raises(ValueError, match="16 bits"):
        quantize_depth(np.array([70.0]), 0.001)


def test_camera_paths_orbit_dolly_pan():
    base = look_at((0.0, 1.0, -5.0), (0.0, 1.0, 0.0))
    assert np.allclose(base[:3, :3] @ base[:3, :3].T, np.eye(3)) and np.linalg.det(base[:3, :3]) > 0
    np.testing.assert_allclose(base[:3, 2], [0, 0, 1], atol=1e-12)  # z forward at the target
    np.testing.assert_allclose(base[:3, 1], [0, -1, 0], atol=1e-12)  # y down
    pivot = np.array([0.0, 1.0, 0.0])
    orbit = np.linalg.inv(path_w2c(base, CameraPath("orbit", keyframes([0.0], [0.0, 30.0], [1.0])), 5, 5.0))
    np.testing.assert_allclose(np.linalg.norm(orbit[:, :3, 3] - pivot, axis=1), 5.0, rtol=1e-5)
    to_pivot = (pivot - orbit[:, :3, 3]) / 5.0
    np.testing.assert_allclose(np.einsum("tij,ti->tj", orbit[:, :3, :3], to_pivot)[:, 2], 1.0, atol=1e-5)
    pan = np.linalg.inv(path_w2c(base, CameraPath("pan", keyframes([0.0], [0.0, 30.0], [1.0])), 5, 5.0))
    np.testing.assert_allclose(pan[:, :3, 3], np.broadcast_to(base[:3, 3], (5, 3)), atol=1e-6)
    assert np.degrees(np.arccos(np.clip(pan[-1, :3, 2] @ base[:3, 2], -1, 1))) == pytest.approx(30.0, abs=1e-3)
    dolly = np.linalg.inv(path_w2c(base, CameraPath("dolly", keyframes([0.0], [0.0], [0.0, 0.4])), 5, 5.0))
    np.testing.assert_allclose(dolly[-1, :3, 3], [0.0, 1.0, -3.0], atol=1e-5)  # 0.4 x 5 forward
    with pytest.raises(ValueError, match="dolly"):
        CameraPath("dolly", keyframes([0.0], [10.0], [1.0]))


def test_random_scene_objects_keep_apart():
    for seed in range(5):
        scene = random_scene(seed)
        things = [o for o in scene.objects if not isinstance(o, Quad)]
        assert len(scene.objects) - len(things) == 5 and scene.moving  # floor + 4 walls, something moves
        for i, a in enumerate(things):
            for b in things[i + 1 :]:
                gap = np.hypot(a.centre[0] - b.centre[0], a.centre[2] - b.centre[2])
                ra = (a.radius if isinstance(a, Sphere) else np.hypot(a.half_size[0], a.half_size[2]))
                rb = (b.radius if isinstance(b, Sphere) else np.hypot(b.half_size[0], b.half_size[2]))
                assert gap > ra + rb + a.motion.reach() + b.motion.reach()
