"""The crack-free mesh render ("star-jax-v1", issue 11) and the 1.5 release's bilinear render
("inspatio-1.5", issue 15): float64 NumPy twins, closed forms (a zoomed textured plane, the
disocclusion width behind a box, hand-made splats) and real 7-Scenes frames."""

import os

import jax
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.geometry import intrinsics_matrix, warp_frame, warp_frames
from star_jax.geometry.splat import bilinear_splat
from star_jax.geometry.warp import WarpRecipe, warp_recipe
from tests.geometry.reference_splat import bilinear_points, bilinear_reference, mesh_reference
from tests.geometry.test_cameras import random_rigid
from tests.geometry.test_warp import SEVEN_SCENES_PAIRS, moved_pair, random_scene, seven_scenes_errors

WARP = jax.jit(warp_frame, static_argnames=("out_hw", "point_size", "recipe"))
MESH = warp_recipe("star-jax-v1", 2)
SOFT = warp_recipe("inspatio-1.5", 2)
EYE = np.eye(4, dtype=np.float32)


def test_recipes_and_bad_recipes():
    assert MESH == WarpRecipe("star-jax-v1", 2, 1, 1, 0.0, 1e-3, False, "mesh", 0.05, 4)
    assert [warp_recipe("star-jax-v1", p).window for p in (1, 4)] == [3, 6]
    assert SOFT == WarpRecipe("inspatio-1.5", 2, 1, 1, 0.0, 0.0, False, "bilinear", softness=50.0, z_max=1000.0)
    assert SOFT.metadata()["splat"] == "bilinear" and MESH.metadata()["depth_cut"] == 0.05
    with pytest.raises(InputError, match="splat must be one of square, mesh, bilinear"):
        WarpRecipe("x", splat="disc")
    with pytest.raises(InputError, match="only 'square' supersamples"):
        WarpRecipe("x", supersample=2, splat="mesh")
    with pytest.raises(InputError, match="window must be >= 1"):
        WarpRecipe("x", splat="mesh", window=0)


# --------------------------------------------------------------------- star-jax-v1: the mesh
def zoom_plane(H=40, W=56, f=40.0, Z=4.0, zoom=2.0):
    """A fronto-parallel textured plane at depth Z and a target camera moved forward to Z / zoom:
    target pixel p sees source pixel c + (p - c) / zoom. Texture: channel 0 linear in u, channel 1
    linear in v, channel 2 a sinusoid (curvature bounded by M = 0.5 * 0.3^2)."""
    cx, cy = W / 2 - 0.5, H / 2 - 0.5
    K = np.asarray(intrinsics_matrix(f, f, cx, cy))
    v, u = np.mgrid[:H, :W].astype(np.float64)

    def texture(u, v):
        return np.stack([0.01 * u + 0.1, 0.015 * v + 0.2, 0.5 + 0.5 * np.sin(0.3 * u + 0.2 * v)], -1)

    w2c_tgt = EYE.copy()
    w2c_tgt[2, 3] = -Z * (1 - 1 / zoom)
    want = texture(cx + (u - cx) / zoom, cy + (v - cy) / zoom)
    return texture(u, v).astype(np.float32), np.full((H, W), Z, np.float32), K, w2c_tgt, want


@pytest.mark.parametrize("zoom", [2.0, 3.0])
def test_zoomed_plane_has_no_cracks_and_the_inverse_warp_colours(zoom):
    rgb, depth, K, w2c_tgt, want = zoom_plane(zoom=zoom)
    old = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=warp_recipe("star-jax-v0", 1))
    assert (~np.asarray(old.mask)).mean() > 0.5  # the bug: a grid of cracks (3 of 4 pixels at 2x)
    out = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=MESH)
    assert np.asarray(out.mask).all()  # the plane's footprint is the whole target image
    err = np.abs(np.asarray(out.rgb) - want)
    # linear channels: exact up to float32 round-off of the projection (1e-4 px * 0.015 / px)
    assert err[..., :2].max() < 1e-5, err[..., :2].max()
    # sinusoid: linear interpolation on a right triangle with unit legs is off by at most M R^2 / 2
    # with R^2 = 1/2 (its circumradius squared): 0.045 / 4
    assert err[..., 2].max() <= 0.045 / 4 + 1e-5, err[..., 2].max()
    np.testing.assert_allclose(np.asarray(out.depth), 4.0 / zoom, rtol=1e-5)


def test_zoom_beyond_the_window_leaves_seams():
    """At 5x the quads (5 px) exceed the window (4 px at point size 2): each draws its top-left
    4 x 4 pixels, so 1-px seams remain but most of the plane is covered; point size 4 (window 6)
    draws them whole again, crack-free."""
    rgb, depth, K, w2c_tgt, want = zoom_plane(zoom=5.0)
    mask = np.asarray(WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=MESH).mask)
    assert 0.5 < mask.mean() < 1.0
    out = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=warp_recipe("star-jax-v1", 4))
    assert np.asarray(out.mask).all()
    assert np.abs(np.asarray(out.rgb) - want)[..., :2].max() < 1e-5


def test_identity_camera_reproduces_the_source():
    rgb, depth, K = random_scene(0)
    depth[5, 7] = 3.0  # an isolated valid pixel (its triangles are cut) must survive too
    depth[4:7, 6:9][[0, 0, 0, 1, 1, 2, 2, 2], [0, 1, 2, 0, 2, 0, 1, 2]] = 0.0
    w2c = random_rigid(np.random.default_rng(5), 1)[0].astype(np.float32)
    out = WARP(rgb, depth, K, w2c, K, w2c, recipe=MESH)
    valid = depth > 0
    np.testing.assert_array_equal(np.asarray(out.mask), valid)
    # interpolation at a vertex: exact up to the projection's float32 round-off
    np.testing.assert_allclose(np.asarray(out.rgb)[valid], rgb[valid], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out.depth)[valid], depth[valid], rtol=1e-5)
    assert np.all(np.asarray(out.rgb)[~valid] == 0)
    as_bytes = (rgb * 255).round().astype(np.uint8)
    out8 = WARP(as_bytes, depth, K, w2c, K, w2c, recipe=MESH)  # integer colours round, never truncate
    np.testing.assert_array_equal(np.asarray(out8.rgb)[valid], as_bytes[valid])


def box_scene(H=40, W=64, f=40.0, z_near=2.0, z_far=6.0, b=0.6):
    """A near box (columns 24..39, rows 10..29) in front of a far wall; the camera moves b along
    +x, so the wall right of the box's right edge is uncovered for f b (1/z_near - 1/z_far) px."""
    K = np.asarray(intrinsics_matrix(f, f, W / 2 - 0.5, H / 2 - 0.5))
    depth = np.full((H, W), z_far, np.float32)
    depth[10:30, 24:40] = z_near
    rgb = np.random.default_rng(2).uniform(size=(H, W, 3)).astype(np.float32)
    w2c_tgt = EYE.copy()
    w2c_tgt[0, 3] = -b
    return rgb, depth, K, w2c_tgt, f * b * (1 / z_near - 1 / z_far)


def test_depth_edge_leaves_the_disocclusion_hole():
    rgb, depth, K, w2c_tgt, width = box_scene()  # width = 8 px
    out = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=MESH)
    mask = np.asarray(out.mask)
    # rows of the box: the box's right edge (source column 39) lands at 39 - f b / z_near = 27, the
    # wall column 40 at 40 - f b / z_far = 36: columns 28..35 see the uncovered wall
    rows = mask[12:28]
    assert not rows[:, 28:36].any()
    assert rows[:, 36:60].all() and rows[:, :28].all()
    assert (~rows[0]).sum() == width + 4  # plus the strip the move uncovers at the right border
    assert mask[:10, :60].all() and mask[30:, :60].all()  # wall above and below: no cracks
    assert not mask[:, 60:].any()  # the right border strip: f b / z_far = 4 px
    # the box colours stay the box's: nearest wins over the wall behind it
    np.testing.assert_allclose(np.asarray(out.depth)[12:28, 12:27], 2.0, rtol=1e-5)


@pytest.mark.parametrize("seed, out_hw", [(1, None), (4, (20, 36)), (6, (40, 64))])
def test_mesh_matches_its_float64_twin(seed, out_hw):
    rgb, depth, K = random_scene(seed)
    depth = np.where(depth > 0, 2.0 + 0.2 * np.sin(np.arange(depth.shape[1]) / 3.0)[None], 0.0).astype(np.float32)
    depth[:, 20:] *= 1.5  # a depth edge
    w2c_src, w2c_tgt = moved_pair(seed)
    # (40, 64) at focal 150: a ~5x zoom, every quad clipped to the window
    f = {None: 30.0, (20, 36): 45.0, (40, 64): 150.0}[out_hw]
    K_tgt = K if out_hw is None else np.array([[f, 0, out_hw[1] / 2 - 0.5], [0, f, out_hw[0] / 2 - 0.5], [0, 0, 1]],
                                              np.float32)
    out = WARP(rgb, depth, K, w2c_src.astype(np.float32), K_tgt, w2c_tgt.astype(np.float32), out_hw=out_hw,
               recipe=MESH)
    ref_rgb, ref_mask, ref_z = mesh_reference(rgb, depth, K, w2c_src, K_tgt, w2c_tgt, out_hw)
    mask = np.asarray(out.mask)
    assert 0.3 < ref_mask.mean() < 1.0
    # float32 vs float64 may flip a pixel centre that sits on a triangle's outer edge
    assert (mask != ref_mask).mean() < 0.01
    both = mask & ref_mask
    close = np.all(np.abs(np.asarray(out.rgb) - ref_rgb) < 1e-4, axis=-1)[both]
    assert close.mean() > 0.99, close.mean()
    np.testing.assert_allclose(np.asarray(out.depth)[both][close], ref_z[both][close], rtol=1e-4)


def test_batched_modes_equal_per_frame():
    frames = [random_scene(s) for s in range(3)]
    rgb, depth = np.stack([f[0] for f in frames]), np.stack([f[1] for f in frames])
    K = frames[0][2]
    w2c_t = random_rigid(np.random.default_rng(3), 3).astype(np.float32)
    w2c_t[:, :3, :3] = np.eye(3)
    w2c_t[:, :3, 3] *= 0.1
    fn = jax.jit(warp_frames, static_argnames=("out_hw", "recipe"))
    for recipe in (MESH, SOFT):
        batched = fn(rgb, depth, K, EYE, K, w2c_t, recipe=recipe)
        for t in range(3):
            single = WARP(rgb[t], depth[t], K, EYE, K, w2c_t[t], recipe=recipe)
            np.testing.assert_allclose(batched.rgb[t], single.rgb, atol=1e-6)
            np.testing.assert_array_equal(batched.mask[t], single.mask)


# --------------------------------------------------------------------- inspatio-1.5: the bilinear splat
def splat_points(uv, z, col, hw=(4, 5)):
    uv, z, col = (np.asarray(x, np.float32) for x in (uv, z, col))
    rgb, mask, depth = bilinear_splat(uv[None], z[None], np.ones(z.shape, bool)[None], col[None], hw, 50.0, 1000.0)
    return np.asarray(rgb), np.asarray(mask), np.asarray(depth)


def test_one_point_between_four_pixels():
    rgb, mask, depth = splat_points([[1.25, 2.5]], [3.0], [[0.8, 0.4, 0.2]])
    want = np.zeros((4, 5), bool)
    want[2:4, 1:3] = True
    np.testing.assert_array_equal(mask, want)
    np.testing.assert_allclose(rgb[want], np.tile([0.8, 0.4, 0.2], (4, 1)), rtol=1e-6)
    np.testing.assert_allclose(depth[want], 3.0, rtol=1e-6)
    ref = bilinear_points([[1.25, 2.5]], [3.0], [[0.8, 0.4, 0.2]], (4, 5))
    np.testing.assert_array_equal(ref[1], want)


def test_an_integer_coordinate_weighs_four_times():
    """The release's taps are floor and ceil: a point on (1, 1) puts weight 1 on all four (the
    same pixel), a point on (1.5, 1) puts 0.5 twice on (1, 1) and twice on (2, 1)."""
    rgb, mask, _ = splat_points([[1.0, 1.0], [1.5, 1.0]], [2.0, 2.0], [[1.0, 0, 0], [0, 1.0, 0]])
    np.testing.assert_allclose(rgb[1, 1], [0.8, 0.2, 0.0], rtol=1e-6)
    np.testing.assert_allclose(rgb[1, 2], [0.0, 1.0, 0.0], rtol=1e-6)
    assert mask.sum() == 2


def test_two_depths_on_one_pixel_blend_by_the_soft_weights():
    """Points at z = 1 and z = 3 on pixel (1, 2); max log(1 + z) = log 4, so the near point's
    weight is exp(50 (log 4 - log 2) / log 4) = e^25 times the far one's."""
    rgb, mask, depth = splat_points([[2.0, 1.0], [2.0, 1.0]], [1.0, 3.0], [[1.0, 0, 0], [0, 1.0, 0]])
    r = np.exp(50 * (np.log(4) - np.log(2)) / np.log(4))
    assert mask.sum() == 1 and mask[1, 2]
    np.testing.assert_allclose(rgb[1, 2], [r / (r + 1), 1 / (r + 1), 0], rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(depth[1, 2], (r + 3) / (r + 1), rtol=1e-6)
    # a smaller spread of depths blends visibly: z = 2 and 2.1 with max log 3.1
    rgb, _, _ = splat_points([[2.0, 1.0], [2.0, 1.0]], [2.0, 2.1], [[1.0, 0, 0], [0, 1.0, 0]])
    ref, _, _ = bilinear_points([[2.0, 1.0], [2.0, 1.0]], [2.0, 2.1], [[1.0, 0, 0], [0, 1.0, 0]], (4, 5))
    np.testing.assert_allclose(rgb, ref, rtol=1e-4, atol=1e-7)
    assert 0.7 < rgb[1, 2, 0] < 0.9


def test_a_point_behind_the_camera_adds_nothing():
    """Source 1 x 5 (f = 10, cx = 2): pixel 1 (z 10) and 3 (z 11) stay in front of a camera moved
    4.5 forward and land at u = 0.18 and 3.69; pixel 2 (z 4, on the axis) ends up behind it, at
    z = -0.5, where x / z would put it on pixel 2. It must add nothing (not even to the max depth
    of the soft weights); moved only 3.5 forward, it is in front and nearest there."""
    K = np.asarray(intrinsics_matrix(10.0, 10.0, 2.0, 0.0))
    rgb = np.arange(1.0, 6.0, dtype=np.float32).reshape(1, 5, 1)
    depth = np.array([[0.0, 10.0, 4.0, 11.0, 0.0]], np.float32)
    w2c_tgt = EYE.copy()
    w2c_tgt[2, 3] = -4.5
    out = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=SOFT)
    np.testing.assert_array_equal(np.asarray(out.mask), [[True, True, False, True, True]])
    np.testing.assert_allclose(np.asarray(out.rgb)[0, :, 0], [2, 2, 0, 4, 4], rtol=1e-6)
    ref = bilinear_reference(rgb, depth, K, EYE, K, w2c_tgt)
    np.testing.assert_array_equal(ref[1], np.asarray(out.mask))
    np.testing.assert_allclose(np.asarray(out.depth), ref[2], rtol=1e-5)
    w2c_tgt[2, 3] = -3.5
    out = WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=SOFT)
    assert np.asarray(out.mask)[0, 2] and np.isclose(np.asarray(out.rgb)[0, 2, 0], 3.0)


@pytest.mark.parametrize("seed, out_hw", [(1, None), (2, (20, 36)), (3, None)])
def test_bilinear_matches_its_float64_twin(seed, out_hw):
    rgb, depth, K = random_scene(seed)
    w2c_src, w2c_tgt = moved_pair(seed)
    K_tgt = K if out_hw is None else np.array([[30.0, 0, 17.5], [0, 30.0, 9.5], [0, 0, 1]], np.float32)
    out = WARP(rgb, depth, K, w2c_src.astype(np.float32), K_tgt, w2c_tgt.astype(np.float32), out_hw=out_hw,
               recipe=SOFT)
    ref_rgb, ref_mask, ref_z = bilinear_reference(rgb, depth, K, w2c_src, K_tgt, w2c_tgt, out_hw)
    mask = np.asarray(out.mask)
    assert 0.5 < ref_mask.mean() < 1.0
    assert (mask != ref_mask).mean() < 0.005  # a point on an integer coordinate may round either way
    both = mask & ref_mask
    close = np.all(np.abs(np.asarray(out.rgb) - ref_rgb) < 1e-4, axis=-1)[both]
    assert close.mean() > 0.99, close.mean()
    np.testing.assert_allclose(np.asarray(out.depth)[both][close], ref_z[both][close], rtol=1e-4)


def test_bilinear_identity_and_no_cracks_at_moderate_zoom():
    rgb, depth, K = random_scene(0)
    # a smooth surface: with random depths, a neighbour's 1e-6 leak is amplified up to e^40 when it
    # is much nearer (the soft weights), as in the release
    depth = np.where(depth > 0, 2.0 + 0.02 * np.arange(depth.shape[1])[None], 0.0).astype(np.float32)
    w2c = random_rigid(np.random.default_rng(5), 1)[0].astype(np.float32)
    out = WARP(rgb, depth, K, w2c, K, w2c, recipe=SOFT)
    valid, mask = depth > 0, np.asarray(out.mask)
    np.testing.assert_allclose(np.asarray(out.rgb)[valid], rgb[valid], atol=1e-5)
    # any positive weight counts: a point 1e-6 px off its integer position marks its neighbour
    # with weight ~1e-6 (as in the release); such pixels border a valid one
    assert mask[valid].all() and (mask & ~valid).mean() < 0.05
    grown = valid.copy()
    grown[1:] |= valid[:-1]; grown[:-1] |= valid[1:]; grown[:, 1:] |= valid[:, :-1]; grown[:, :-1] |= valid[:, 1:]
    assert not (mask & ~grown).any()
    rgb, depth, K, w2c_tgt, _ = zoom_plane(zoom=1.8)
    assert np.asarray(WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=SOFT).mask).all()
    rgb, depth, K, w2c_tgt, _ = zoom_plane(zoom=3.0)  # beyond 2x the 4 taps leave cracks
    assert not np.asarray(WARP(rgb, depth, K, EYE, K, w2c_tgt, recipe=SOFT).mask).all()


# --------------------------------------------------------------------- real RGB-D ground truth
@pytest.mark.parametrize("mode", ["star-jax-v1", "inspatio-1.5"])
@pytest.mark.parametrize("i, j", SEVEN_SCENES_PAIRS[1::2])
def test_new_modes_match_real_target_frames(shared_data, i, j, mode):
    folder = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    err_warp, err_source, valid, covered = seven_scenes_errors(folder, i, j, warp_recipe(mode, 2), warp=WARP)
    assert err_warp < 0.6 * err_source, (err_warp, err_source)
    assert err_warp < 0.08
    assert covered > 0.8


# --------------------------------------------------------------------- several views into one camera
def test_fuse_views_hard_z_test_ties_to_the_lower_view():
    from star_jax.geometry.warp import WarpResult, fuse_views

    mask = np.array([[[True, True, False, False]], [[True, True, True, False]], [[False, True, True, False]]])
    depth = np.array([[[2.0, 3.0, 0.0, 0.0]], [[1.0, 3.0, 5.0, 0.0]], [[0.0, 1.0, 4.0, 0.0]]], np.float32)
    rgb = np.broadcast_to(np.arange(3, dtype=np.float32)[:, None, None, None] + 1, (3, 1, 4, 3))
    fused, counts = fuse_views(WarpResult(rgb, mask, depth))
    np.testing.assert_array_equal(np.asarray(fused.mask), [[True, True, True, False]])
    # pixel 0: view 1 nearer; pixel 1: view 2 nearest; pixel 2: view 2 (4 < 5); pixel 3: none
    np.testing.assert_array_equal(np.asarray(fused.rgb)[0, :, 0], [2, 3, 3, 0])
    np.testing.assert_array_equal(np.asarray(fused.depth), [[1.0, 1.0, 4.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(counts), [2, 3, 2])
    depth[2, 0, 1] = 3.0  # a three-way tie on pixel 1: the lowest view index that covers it
    fused, _ = fuse_views(WarpResult(rgb, mask, depth))
    assert float(fused.rgb[0, 1, 0]) == 1.0
