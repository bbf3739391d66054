"""Closed-form checks of the camera primitives against float64 NumPy."""

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.geometry import (
    intrinsics_matrix,
    invert_rigid,
    plucker_rays,
    project,
    resize_intrinsics,
    transform_points,
    unproject,
)


def random_rigid(rng, n):
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q.T
    R = np.stack([
        np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
        np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
        np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
    ], -2)
    T = np.tile(np.eye(4), (n, 1, 1))
    T[:, :3, :3] = R
    T[:, :3, 3] = rng.normal(size=(n, 3))
    return T


def test_invert_rigid_matches_numpy_inverse():
    T = random_rigid(np.random.default_rng(0), 5).astype(np.float32)
    np.testing.assert_allclose(invert_rigid(jnp.asarray(T)), np.linalg.inv(T), atol=1e-5)


def test_unproject_project_round_trip_and_closed_form():
    K = intrinsics_matrix(500.0, 480.0, 63.5, 47.5)
    depth = jnp.asarray(np.random.default_rng(1).uniform(0.5, 5.0, size=(96, 128)), jnp.float32)
    pts = unproject(depth, K)
    # closed form for one pixel: (u, v) = (10, 20)
    d = float(depth[20, 10])
    np.testing.assert_allclose(pts[20, 10], [(10 - 63.5) / 500 * d, (20 - 47.5) / 480 * d, d], rtol=1e-6)
    uv, z = project(pts.reshape(-1, 3), K)
    v, u = np.mgrid[:96, :128]
    np.testing.assert_allclose(uv.reshape(96, 128, 2), np.stack([u, v], -1), atol=2e-4)
    np.testing.assert_allclose(z.reshape(96, 128), depth, rtol=1e-6)


def test_project_marks_points_behind_camera_as_offscreen():
    uv, z = project(jnp.asarray([[0.0, 0.0, -1.0], [0.1, 0.0, 2.0]]), intrinsics_matrix(100, 100, 50, 50))
    assert np.all(np.isinf(uv[0])) and np.all(np.isfinite(uv[1]))
    np.testing.assert_allclose(uv[1], [55.0, 50.0])


def test_transform_then_project_equals_float64_pipeline():
    rng = np.random.default_rng(2)
    T = random_rigid(rng, 1)[0]
    P = rng.normal(size=(50, 3)) + [0, 0, 8]
    K = np.array([[300.0, 0, 160], [0, 310.0, 120], [0, 0, 1]])
    Pc = (T[:3, :3] @ P.T).T + T[:3, 3]
    ref = (K @ Pc.T).T
    ref = ref[:, :2] / ref[:, 2:]
    uv, _ = project(transform_points(jnp.asarray(T, jnp.float32), jnp.asarray(P, jnp.float32)), jnp.asarray(K, jnp.float32))
    ok = Pc[:, 2] > 1e-3
    np.testing.assert_allclose(np.asarray(uv)[ok], ref[ok], rtol=1e-4, atol=1e-3)


def test_resize_intrinsics_tracks_a_point_through_resize_and_crop():
    # A world point seen at pixel (u, v) in the original image lands at s*(u+0.5)-0.5-offset.
    K = np.array([[585.0, 0, 320], [0, 585.0, 240], [0, 0, 1]])
    P = np.array([0.3, -0.2, 2.0])
    u0 = (K @ P)[:2] / P[2]
    scale, crop = (0.75, 0.75), (12.0, 4.0)
    K2 = resize_intrinsics(jnp.asarray(K, jnp.float32), scale, crop)
    u1, _ = project(jnp.asarray(P[None], jnp.float32), K2)
    expected = np.asarray(scale) * (u0 + 0.5) - 0.5 - np.asarray(crop)
    np.testing.assert_allclose(u1[0], expected, atol=1e-3)


def test_plucker_rays_closed_form():
    rng = np.random.default_rng(3)
    c2w = random_rigid(rng, 1)[0].astype(np.float32)
    K = intrinsics_matrix(50.0, 50.0, 7.0, 5.0)
    rays = np.asarray(plucker_rays(K, jnp.asarray(c2w), 11, 15))
    assert rays.shape == (11, 15, 6)
    m, d = rays[..., :3], rays[..., 3:]
    np.testing.assert_allclose(np.linalg.norm(d, axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(d[5, 7], c2w[:3, 2], atol=1e-5)  # principal point: optical axis
    np.testing.assert_allclose(np.sum(m * d, -1), 0.0, atol=1e-5)  # moment is orthogonal to d
    # the moment is o x d for every point o on the ray: also for the point at depth 2
    p = c2w[:3, 3] + 2.0 * d[3, 4]
    np.testing.assert_allclose(m[3, 4], np.cross(p, d[3, 4]), atol=1e-4)


def test_camera_ops_jit_and_vmap():
    K = intrinsics_matrix(jnp.array([100.0, 200.0]), 100.0, 10.0, 10.0)
    assert K.shape == (2, 3, 3)
    depth = jnp.ones((2, 4, 6))
    pts = jax.jit(jax.vmap(unproject))(depth, K)
    np.testing.assert_allclose(pts[1, 0, 0], [-10 / 200, -10 / 100, 1.0], rtol=1e-6)
