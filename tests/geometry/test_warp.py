"""Depth warping: exactness, NumPy-twin parity, a closed-form parallax case and ground truth on
real Kinect RGB-D frames with real poses (7-Scenes redkitchen)."""

import os

import jax
import numpy as np
import pytest

from star_jax.geometry import intrinsics_matrix, warp_frame, warp_frames
from tests.geometry.reference_warp import warp_reference
from tests.geometry.test_cameras import random_rigid

WARP = jax.jit(warp_frame, static_argnames=("out_hw", "point_size"))


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


@pytest.mark.parametrize("point_size, out_hw", [(1, None), (2, None), (3, (20, 36))])
def test_matches_float64_numpy_twin(point_size, out_hw):
    rgb, depth, K = random_scene(1)
    rng = np.random.default_rng(7)
    w2c_src = random_rigid(rng, 1)[0]
    small = np.eye(4)
    small[:3, 3] = [0.15, -0.05, 0.1]
    c, s = np.cos(0.05), np.sin(0.05)
    small[:3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]
    w2c_tgt = small @ w2c_src
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


# --------------------------------------------------------------------- real RGB-D ground truth
def load_7scenes(folder, i):
    from star_jax.io.manifest import read_depth
    from PIL import Image

    rgb = np.asarray(Image.open(os.path.join(folder, f"frame-{i:06d}.color.png")).convert("RGB"), np.float32) / 255
    depth = read_depth(os.path.join(folder, f"frame-{i:06d}.depth.png"), depth_scale=0.001)
    c2w = np.loadtxt(os.path.join(folder, f"frame-{i:06d}.pose.txt"))
    return rgb, depth, np.linalg.inv(c2w).astype(np.float32)


@pytest.mark.parametrize("i, j", [(150, 151), (150, 155), (150, 160), (170, 180), (185, 195)])
def test_warp_matches_real_target_frame(shared_data, i, j):
    folder = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")).astype(np.float32)
    rgb_i, depth_i, w2c_i = load_7scenes(folder, i)
    rgb_j, _, w2c_j = load_7scenes(folder, j)
    out = WARP(rgb_i, depth_i, K, w2c_i, K, w2c_j, point_size=2)
    m = np.asarray(out.mask)
    err_warp = np.abs(np.asarray(out.rgb) - rgb_j)[m].mean()
    err_source = np.abs(rgb_i - rgb_j)[m].mean()
    covered = m.mean() / (depth_i > 0).mean()  # valid fraction relative to the Kinect's coverage
    print(f"{i}->{j}: MAE warped {err_warp:.4f} vs unwarped {err_source:.4f}; valid {m.mean():.3f} ({covered:.3f} of depth)")
    assert err_warp < 0.6 * err_source, (err_warp, err_source)
    assert err_warp < 0.08
    assert covered > (0.9 if j - i <= 5 else 0.8)
