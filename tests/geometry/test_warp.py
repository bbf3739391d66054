"""Depth warping: exactness, NumPy-twin parity (ours and the release's recipe), closed forms
(parallax, the release's footprint, anchor and tie rule) and ground truth on real Kinect RGB-D
frames with real poses (7-Scenes redkitchen)."""

import os

import jax
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.geometry import intrinsics_matrix, warp_frame, warp_frames
from star_jax.geometry.warp import WarpRecipe, warp_recipe
from tests.geometry.reference_warp import warp_reference, warp_reference_release
from tests.geometry.test_cameras import random_rigid

WARP = jax.jit(warp_frame, static_argnames=("out_hw", "point_size", "recipe"))
RELEASE = warp_recipe("inspatio-release", 2)


def random_scene(seed, H=24, W=32):
    rng = np.random.default_rng(seed)
    rgb = rng.uniform(size=(H, W, 3)).astype(np.float32)
    depth = rng.uniform(1.0, 4.0, size=(H, W)).astype(np.float32)
    depth[rng.uniform(size=(H, W)) < 0.1] = 0.0  # holes
    K = np.array([[30.0, 0, W / 2 - 0.5], [0, 30.0, H / 2 - 0.5], [0, 0, 1]], np.float32)
    return rgb, depth, K


def test_identity_pose_reproduces_input_where_depth_is_valid():
    rgb, depth, K = random_scene(0)
    w2c = random_rigid(np.random.default_rng(5), 1)[0].astype(np.float32)
    out = WARP(rgb, depth, K, w2c, K, w2c)
    valid = depth > 0
    np.testing.assert_array_equal(np.asarray(out.mask), valid)
    np.testing.assert_array_equal(np.asarray(out.rgb)[valid], rgb[valid])
    np.testing.assert_allclose(np.asarray(out.depth)[valid], depth[valid], rtol=1e-5)
    assert np.all(np.asarray(out.rgb)[~valid] == 0)


def moved_pair(seed=7):
    """A random source camera and a target camera moved a little from it (float64)."""
    w2c_src = random_rigid(np.random.default_rng(seed), 1)[0]
    small = np.eye(4)
    small[:3, 3] = [0.15, -0.05, 0.1]
    c, s = np.cos(0.05), np.sin(0.05)
    small[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    return w2c_src, small @ w2c_src


@pytest.mark.parametrize("point_size, out_hw", [(1, None), (2, None), (3, (20, 36))])
def test_matches_float64_numpy_twin(point_size, out_hw):
    rgb, depth, K = random_scene(1)
    w2c_src, w2c_tgt = moved_pair()
    K_tgt = K.copy() if out_hw is None else np.array([[30.0, 0, 17.5], [0, 30.0, 9.5], [0, 0, 1]], np.float32)
    out = WARP(rgb, depth, K, w2c_src.astype(np.float32), K_tgt, w2c_tgt.astype(np.float32),
               out_hw=out_hw, point_size=point_size)
    ref_rgb, ref_mask, ref_z = warp_reference(rgb, depth, K, w2c_src, K_tgt, w2c_tgt, out_hw, point_size)
    mask = np.asarray(out.mask)
    # float32 vs float64 rounding may flip a pixel whose splat sits on a .5 boundary
    assert (mask != ref_mask).mean() < 0.01
    both = mask & ref_mask
    agree = np.all(np.asarray(out.rgb)[both] == ref_rgb[both], axis=-1)
    assert agree.mean() > 0.98, agree.mean()
    np.testing.assert_allclose(np.asarray(out.depth)[both][agree], ref_z[both][agree], rtol=1e-4)


def test_fronto_parallel_plane_shift_is_f_b_over_z():
    """Camera translated by b along x in front of a plane at depth Z: image shifts by f*b/Z px."""
    H, W, f, Z = 16, 40, 20.0, 2.0
    rgb = np.tile(np.arange(W, dtype=np.float32)[None, :, None], (H, 1, 3))
    K = intrinsics_matrix(f, f, (W - 1) / 2, (H - 1) / 2)
    w2c_tgt = np.eye(4, dtype=np.float32)
    w2c_tgt[0, 3] = -0.5  # camera centre moves +0.5 along x: points move -0.5 in camera frame
    out = WARP(rgb, np.full((H, W), Z, np.float32), K, np.eye(4, dtype=np.float32), K, w2c_tgt)
    shift = int(f * 0.5 / Z)  # 5 px to the left
    np.testing.assert_array_equal(np.asarray(out.rgb)[:, : W - shift, 0], rgb[:, shift:, 0])
    assert not np.asarray(out.mask)[:, W - shift :].any() and np.asarray(out.mask)[:, : W - shift].all()


@pytest.mark.parametrize(
    "depth, tx, winner, col",
    [
        # pixel 0 (x=-4, z=4) and pixel 1 (x=0, z=1) both land on column 0; the nearer, higher index wins
        ([4.0, 1.0, 0.0], -4.0 / 3.0, 1, 0),
        # pixel 0 (x=-1, z=1) and pixel 1 (x=0, z=4) both land on column 1; the nearer, lower index wins
        ([1.0, 4.0, 0.0], 4.0 / 3.0, 0, 1),
    ],
)
def test_z_buffer_keeps_the_nearest_point(depth, tx, winner, col):
    K = intrinsics_matrix(1.0, 1.0, 1.0, 0.0)  # u = x / z + 1 on a 1x3 image
    rgb = np.array([[[10.0], [20.0], [30.0]]], np.float32)
    w2c_tgt = np.eye(4, dtype=np.float32)
    w2c_tgt[0, 3] = tx
    out = WARP(rgb, np.array([depth], np.float32), K, np.eye(4, dtype=np.float32), K, w2c_tgt)
    assert float(out.rgb[0, col, 0]) == rgb[0, winner, 0]
    assert float(out.depth[0, col]) == depth[winner]
    assert int(np.asarray(out.mask).sum()) == 1  # the loser leaves no trace elsewhere


def test_batched_equals_per_frame_and_rejects_bad_shapes():
    frames = [random_scene(s) for s in range(3)]
    rgb = np.stack([f[0] for f in frames])
    depth = np.stack([f[1] for f in frames])
    K = frames[0][2]
    w2c_t = random_rigid(np.random.default_rng(3), 3).astype(np.float32)
    w2c_t[:, :3, :3] = np.eye(3)
    w2c_t[:, :3, 3] *= 0.1
    eye = np.eye(4, dtype=np.float32)
    batched = jax.jit(warp_frames)(rgb, depth, K, eye, K, w2c_t)
    for t in range(3):
        single = WARP(rgb[t], depth[t], K, eye, K, w2c_t[t])
        np.testing.assert_array_equal(batched.rgb[t], single.rgb)
        np.testing.assert_array_equal(batched.mask[t], single.mask)
    with pytest.raises(ValueError, match="must agree"):
        warp_frame(rgb[0], depth[0, :-1], K, eye, K, eye)


# --------------------------------------------------------------------- the release's recipe
def test_release_recipe_quantities_and_bad_modes():
    assert RELEASE == WarpRecipe("inspatio-release", 2, 2, 5, 1e-4, 0.1, True)
    assert [warp_recipe("inspatio-release", p).footprint for p in (1, 2, 3)] == [3, 5, 7]
    assert warp_recipe("star-jax-v0", 2) == WarpRecipe("star-jax-v0", 2, 1, 2, 0.0, 1e-3, False)
    with pytest.raises(InputError, match="warp mode 'bilinear': expected one of inspatio-release, star-jax-v0"):
        warp_recipe("bilinear")
    with pytest.raises(InputError, match="point_size must be >= 1, got 0"):
        warp_recipe("inspatio-release", 0)
    with pytest.raises(ValueError, match="not both"):
        warp_frame(np.zeros((4, 4, 3)), np.ones((4, 4)), np.eye(3), np.eye(4), np.eye(3), np.eye(4),
                   point_size=2, recipe=RELEASE)


def test_release_footprint_anchor_and_downsampling_closed_form():
    """One point at output pixel (r, c): a 5 x 5 square around (2r, 2c) on the 2x canvas. The
    mask takes each cell's top-left canvas sample (rows/cols r-1..r+1); colour is the 2 x 2 cell
    mean, so the cells right of / below the point are half covered."""
    H, W, r, c = 9, 11, 4, 6
    depth = np.zeros((H, W), np.float32)
    depth[r, c] = 2.0
    rgb = np.zeros((H, W, 1), np.float32)
    rgb[r, c] = 1.0
    K = intrinsics_matrix(10.0, 10.0, 5.0, 4.0)
    out = WARP(rgb, depth, K, np.eye(4, dtype=np.float32), K, np.eye(4, dtype=np.float32), recipe=RELEASE)
    want_mask = np.zeros((H, W), bool)
    want_mask[r - 1:r + 2, c - 1:c + 2] = True
    np.testing.assert_array_equal(np.asarray(out.mask), want_mask)
    w = np.array([1.0, 1.0, 0.5])
    want_rgb = np.zeros((H, W))
    want_rgb[r - 1:r + 2, c - 1:c + 2] = np.outer(w, w)
    np.testing.assert_array_equal(np.asarray(out.rgb)[..., 0], want_rgb)
    np.testing.assert_array_equal(np.asarray(out.depth)[want_mask], 2.0)


def test_release_ties_on_a_constant_depth_plane():
    """Seen from its own camera, every point of a constant-depth plane ties in the z-test; the
    last source index wins, as the release's in-order canvas write leaves it, so each output cell
    shows the source pixel one down and one right (the last row / column repeat) and the mask is
    full. Our old recipe (first index wins) shifts the other way."""
    H, W = 8, 10
    rgb = np.random.default_rng(0).uniform(size=(H, W, 3)).astype(np.float32)
    K = intrinsics_matrix(12.0, 12.0, 5.0, 4.0)
    eye = np.eye(4, dtype=np.float32)
    out = WARP(rgb, np.full((H, W), 3.0, np.float32), K, eye, K, eye, recipe=RELEASE)
    assert np.asarray(out.mask).all()
    rows, cols = np.minimum(np.arange(H) + 1, H - 1), np.minimum(np.arange(W) + 1, W - 1)
    np.testing.assert_allclose(np.asarray(out.rgb), rgb[rows][:, cols], rtol=0, atol=1e-7)
    old = WARP(rgb, np.full((H, W), 3.0, np.float32), K, eye, K, eye, point_size=2)
    np.testing.assert_array_equal(np.asarray(old.rgb)[1:, 1:], rgb[:-1, :-1])


def _plane_scene(H=24, W=32):
    """A slanted textured plane (depth grows left to right, so no two points tie in depth)."""
    K = intrinsics_matrix(28.0, 28.0, W / 2, H / 2)
    u = np.arange(W, dtype=np.float32)
    depth = np.broadcast_to(2.0 + 0.03 * u, (H, W)).astype(np.float32)
    rgb = np.random.default_rng(3).uniform(size=(H, W, 3)).astype(np.float32)
    return rgb, depth, K


@pytest.mark.parametrize("scene, point_size, out_hw", [("plane", 2, None), ("random", 2, None),
                                                        ("random", 1, (20, 36))])
def test_release_recipe_matches_its_float64_twin(scene, point_size, out_hw):
    if scene == "plane":
        rgb, depth, K = _plane_scene()
        w2c_src = np.eye(4)
        w2c_tgt = np.eye(4)
        w2c_tgt[:3, 3] = [-0.21, 0.07, 0.13]  # a sideways and forward step
    else:
        rgb, depth, K = random_scene(1)
        w2c_src, w2c_tgt = moved_pair()
    K_tgt = K if out_hw is None else np.array([[30.0, 0, 18.0], [0, 30.0, 10.0], [0, 0, 1]], np.float32)
    recipe = warp_recipe("inspatio-release", point_size)
    out = WARP(rgb, depth, K, w2c_src.astype(np.float32), K_tgt, w2c_tgt.astype(np.float32), out_hw=out_hw,
               recipe=recipe)
    ref_rgb, ref_mask = warp_reference_release(rgb, depth, K, w2c_src, K_tgt, w2c_tgt, out_hw, point_size)
    mask = np.asarray(out.mask)
    # float32 vs float64 may move a splat that sits on a .5 canvas boundary
    assert (mask != ref_mask).mean() < 0.01
    close = np.all(np.abs(np.asarray(out.rgb) - ref_rgb) < 1e-6, axis=-1)
    assert close.mean() > 0.97, close.mean()
    if scene == "plane":  # the step uncovers strips at the right and top edges, nothing inside
        assert 0.85 < mask.mean() < 0.95 and mask[1:, :-2].all() and not mask[:, -2:].any()


def test_release_downsampling_is_opencv_area_and_nearest():
    """The twin's reading of the release's cv2.resize calls, checked against OpenCV itself."""
    cv2 = pytest.importorskip("cv2")
    rgb, depth, K = random_scene(2)
    w2c_src, w2c_tgt = moved_pair(11)
    H, W = depth.shape
    out, mask, (canvas, hit) = warp_reference_release(rgb, depth, K, w2c_src, K, w2c_tgt, return_canvas=True)
    area = cv2.resize(canvas.astype(np.float32), (W, H), interpolation=cv2.INTER_AREA)
    nearest = cv2.resize(hit.astype(np.uint8) * 255, (W, H), interpolation=cv2.INTER_NEAREST)
    np.testing.assert_allclose(area, out, atol=1e-6)
    np.testing.assert_array_equal(nearest > 0, mask)
    assert 0.3 < hit.mean() < 1.0


# --------------------------------------------------------------------- real RGB-D ground truth
def load_7scenes(folder, i):
    from star_jax.io.manifest import read_depth
    from PIL import Image

    rgb = np.asarray(Image.open(os.path.join(folder, f"frame-{i:06d}.color.png")).convert("RGB"), np.float32) / 255
    depth = read_depth(os.path.join(folder, f"frame-{i:06d}.depth.png"), depth_scale=0.001)
    c2w = np.loadtxt(os.path.join(folder, f"frame-{i:06d}.pose.txt"))
    return rgb, depth, np.linalg.inv(c2w).astype(np.float32)


SEVEN_SCENES_PAIRS = [(150, 151), (150, 155), (150, 160), (170, 180), (185, 195)]


def seven_scenes_errors(folder, i, j, recipe, warp=WARP):
    """Warp frame i into frame j's camera -> (MAE warped, MAE unwarped, valid fraction, valid
    fraction of the Kinect's coverage), RGB in 0..1 on the warp's mask."""
    K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")).astype(np.float32)
    rgb_i, depth_i, w2c_i = load_7scenes(folder, i)
    rgb_j, _, w2c_j = load_7scenes(folder, j)
    out = warp(rgb_i, depth_i, K, w2c_i, K, w2c_j, recipe=recipe)
    m = np.asarray(out.mask)
    err_warp = np.abs(np.asarray(out.rgb) - rgb_j)[m].mean()
    err_source = np.abs(rgb_i - rgb_j)[m].mean()
    return err_warp, err_source, m.mean(), m.mean() / (depth_i > 0).mean()


@pytest.mark.parametrize("mode", ["star-jax-v0", "inspatio-release"])
@pytest.mark.parametrize("i, j", SEVEN_SCENES_PAIRS)
def test_warp_matches_real_target_frame(shared_data, i, j, mode):
    folder = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    err_warp, err_source, valid, covered = seven_scenes_errors(folder, i, j, warp_recipe(mode, 2))
    print(f"{mode} {i}->{j}: MAE warped {err_warp:.4f} vs unwarped {err_source:.4f}; valid {valid:.3f} "
          f"({covered:.3f} of depth)")
    assert err_warp < 0.6 * err_source, (err_warp, err_source)
    assert err_warp < 0.08
    assert covered > (0.9 if j - i <= 5 else 0.8)
