"""GeometryEncoder against Depth-Anything-3's own torch modules (random tiny config, float32, CPU),
through the production converter: backbone features and camera tokens, depth / confidence, rays /
confidence, decoded cameras; with and without given cameras; with the reference-view reordering;
cameras solved from the ray maps (use_ray_pose)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("depth_anything_3")

from star_jax.geometry.encoder import GeometryEncoder, convert_da3_state, encoder_variant  # noqa: E402
from star_jax.geometry.encoder.camera import (  # noqa: E402
    cameras_to_pose_encoding,
    matrix_to_quat_xyzw,
    pose_encoding_to_cameras,
    quat_xyzw_to_matrix,
)
from tests.geometry.encoder.da3_reference import reference_model, state_numpy  # noqa: E402

TOL = 1e-4  # max |y - y_ref| / max |y_ref|


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / np.abs(b).max())


@pytest.fixture(scope="module")
def tiny():
    cfg = encoder_variant("tiny")
    ref = reference_model(cfg)
    params = convert_da3_state(state_numpy(ref), cfg)

    @jax.jit
    def run(params, images, w2c=None, K=None):
        out, inter = GeometryEncoder(cfg).apply(
            {"params": params}, images, w2c, K, capture_intermediates=lambda m, _: m.name == "backbone",
            mutable=["intermediates"])
        return out, inter["intermediates"]["backbone"]["__call__"][0]

    return cfg, ref, params, run


def images(S, H, W, seed=0):
    return np.random.default_rng(seed).normal(size=(1, S, H, W, 3)).astype(np.float32)


def torch_in(x):
    return torch.from_numpy(x.transpose(0, 1, 4, 2, 3).copy())


def check_all(ref, out, backbone, x, ext=None, ixt=None):
    """Every output of ours against the reference's on the same input; returns the largest error."""
    H, W = x.shape[2:4]
    with torch.no_grad():
        cam_token = None if ext is None else ref.cam_enc(ext, ixt, (H, W))
        feats_t, _ = ref.backbone(torch_in(x), cam_token=cam_token, export_feat_layers=[])
        head_t = ref.head(feats_t, H, W, patch_start_idx=0)
        full_t = ref(torch_in(x), ext, ixt)
    feats, cams = backbone
    errs = {}
    for k in range(4):
        errs[f"feat{k}"] = rel(feats[k], feats_t[k][0].numpy())
        errs[f"cam_token{k}"] = rel(cams[k], feats_t[k][1].numpy())
    for k in ("depth", "depth_conf", "ray", "ray_conf"):
        errs[k] = rel(getattr(out, k), head_t[k].numpy())
    errs["depth(full)"] = rel(out.depth, full_t.depth.numpy())
    errs["w2c"] = rel(out.w2c, full_t.extrinsics.numpy())
    errs["K"] = rel(out.K, full_t.intrinsics.numpy())
    bad = {k: v for k, v in errs.items() if not v <= TOL}
    assert not bad, bad
    return max(errs.values())


def test_four_views_non_square_with_reference_reordering(tiny, monkeypatch):
    """S = 4 >= 3 views and no cameras: the reference picks a reference view (here not view 0, so the
    reorder and its undoing are exercised); 42 x 70 px also resizes the 4 x 4 position table to 3 x 5."""
    import depth_anything_3.model.dinov2.vision_transformer as vt

    cfg, ref, params, run = tiny
    picked = []
    select = vt.select_reference_view
    monkeypatch.setattr(vt, "select_reference_view", lambda x, strategy: picked.append(select(x, strategy)) or picked[-1])
    x = images(4, 42, 70, seed=3)
    out, backbone = run(params, jnp.asarray(x))
    check_all(ref, out, backbone, x)
    assert picked and int(picked[0][0]) != 0, picked
    assert out.depth.shape == (1, 4, 42, 70) and out.ray.shape == (1, 4, 24, 40, 6)
    assert out.w2c.shape == (1, 4, 3, 4) and out.K.shape == (1, 4, 3, 3)


def test_two_views_at_the_position_table_size(tiny):
    """S = 2 (no reordering), 56 x 56 px: the learned position table is used as is."""
    cfg, ref, params, run = tiny
    x = images(2, 56, 56, seed=1)
    out, backbone = run(params, jnp.asarray(x))
    check_all(ref, out, backbone, x)


def test_given_cameras_replace_the_camera_tokens(tiny):
    """With cameras the camera encoder's tokens enter the backbone (and no reordering happens)."""
    cfg, ref, params, run = tiny
    x = images(3, 28, 42, seed=2)
    rng = np.random.default_rng(5)
    w2c = np.tile(np.eye(4, dtype=np.float32), (1, 3, 1, 1))
    for s in range(3):
        q = rng.normal(size=4)
        w2c[0, s, :3, :3] = np.asarray(quat_xyzw_to_matrix(jnp.asarray(q / np.linalg.norm(q))))
        w2c[0, s, :3, 3] = rng.normal(size=3)
    K = np.tile(np.array([[40.0, 0, 21], [0, 38.0, 14], [0, 0, 1]], np.float32), (1, 3, 1, 1))
    out, backbone = run(params, jnp.asarray(x), jnp.asarray(w2c), jnp.asarray(K))
    check_all(ref, out, backbone, x, torch.from_numpy(w2c), torch.from_numpy(K))
    with torch.no_grad():  # the cameras do change the prediction, so matching above is not vacuous
        plain = ref(torch_in(x)).depth.numpy()
    assert rel(out.depth, plain) > 1e-3


def test_pose_encoding_round_trip_and_reference_conversions():
    """Our quaternion / pose-encoding helpers against the package's on random rotations, and
    decode(encode(w2c, K)) == (w2c, K) for principal points at the centre."""
    from depth_anything_3.model.utils import transform as T

    rng = np.random.default_rng(0)
    q = rng.normal(size=(2, 5, 4)).astype(np.float32)
    R = quat_xyzw_to_matrix(jnp.asarray(q))
    np.testing.assert_allclose(R, T.quat_to_mat(torch.from_numpy(q)).numpy(), atol=1e-6)
    np.testing.assert_allclose(matrix_to_quat_xyzw(R), T.mat_to_quat(torch.from_numpy(np.array(R))).numpy(),
                               atol=1e-6)
    enc = np.concatenate([rng.normal(size=(2, 5, 3)), q / np.linalg.norm(q, axis=-1, keepdims=True),
                          rng.uniform(0.5, 1.5, size=(2, 5, 2))], -1).astype(np.float32)
    w2c, K = pose_encoding_to_cameras(jnp.asarray(enc), (28, 42))
    c2w_t, K_t = T.pose_encoding_to_extri_intri(torch.from_numpy(enc), (28, 42))
    np.testing.assert_allclose(K, K_t.numpy(), rtol=1e-6)
    R_t, t_t = c2w_t[..., :3].numpy(), c2w_t[..., 3].numpy()
    np.testing.assert_allclose(w2c[..., :3], np.swapaxes(R_t, -1, -2), atol=1e-6)
    np.testing.assert_allclose(w2c[..., 3], -np.einsum("bsji,bsj->bsi", R_t, t_t), atol=1e-5)
    w2c4 = jnp.concatenate([w2c, jnp.broadcast_to(jnp.array([[[[0, 0, 0, 1.0]]]]), (2, 5, 1, 4))], -2)
    back = cameras_to_pose_encoding(w2c4, K, (28, 42))
    q_std = np.where(enc[..., 6:7] < 0, -enc[..., 3:7], enc[..., 3:7])
    np.testing.assert_allclose(back[..., :3], enc[..., :3], atol=1e-5)
    np.testing.assert_allclose(back[..., 3:7], q_std, atol=1e-5)
    np.testing.assert_allclose(back[..., 7:], enc[..., 7:], atol=1e-5)


@pytest.mark.parametrize("hw, res", [((480, 832), 504), ((760, 1352), 504), ((100, 150), 504), ((300, 200), 126)])
def test_frames_are_resized_as_da3s_input_processor(monkeypatch, hw, res):
    """`da3_input_frame` against the package's own resize steps (`_resize_image` then
    `_make_divisible_by_resize`, through PIL as it does); torchvision, which that module imports
    for its normalisation only, is stubbed (not installed next to the pinned torch)."""
    import sys
    import types

    from PIL import Image

    from star_jax.geometry.estimate import da3_input_frame

    stub = types.ModuleType("torchvision")
    stub.transforms = types.ModuleType("torchvision.transforms")
    stub.transforms.Normalize = lambda *a, **k: None
    monkeypatch.setitem(sys.modules, "torchvision", stub)
    monkeypatch.setitem(sys.modules, "torchvision.transforms", stub.transforms)
    from depth_anything_3.utils.io.input_processor import InputProcessor

    frame = (np.random.default_rng(0).uniform(0, 255, size=hw + (3,))).astype(np.uint8)
    proc = InputProcessor()
    ref = proc._make_divisible_by_resize(proc._resize_image(Image.fromarray(frame), res, "upper_bound_resize"), 14)
    np.testing.assert_array_equal(da3_input_frame(frame, res), np.asarray(ref))


def test_ray_pose_cameras_match_the_package_forward(tiny, monkeypatch):
    """The package's forward with use_ray_pose=True (cameras solved from the predicted ray maps) and
    ours (`cameras_from_rays` on our ray maps) with the same RANSAC sample table, 4 views at 42 x 70
    px (24 x 40 ray maps), random tiny weights:
    - end to end (the package solves in float32): w2c and K^-1 (what the solve determines: its L
      factor) within 1e-3 relative; the random network's rays are near-degenerate (1 / fx down to
      ~3e-6), which amplifies the float32 SVDs' error to ~3e-4;
    - the package's solve (`get_extrinsic_from_camray`) run in float64 on its own forward's ray maps
      (only its 3 x 3 QL step and its pixel grid stay float32: both hard-code float32) and ours on
      the same maps: within 1e-5."""
    import depth_anything_3.utils.ray_utils as ru

    from star_jax.geometry.encoder.ray_pose import cameras_from_rays

    cfg, ref, params, run = tiny
    tables, draw = [], ru.get_params_for_ransac
    monkeypatch.setattr(ru, "get_params_for_ransac", lambda N, dev: tables.append(draw(N, dev)) or tables[-1])
    x = images(4, 42, 70, seed=3)  # the shapes of the first test: compiled once
    H, W = x.shape[2:4]
    torch.manual_seed(0)
    with torch.no_grad():
        full_t = ref(torch_in(x), use_ray_pose=True)
        head_t = ref.head(ref.backbone(torch_in(x), cam_token=None, export_feat_layers=[])[0], H, W, patch_start_idx=0)
    out, _ = run(params, jnp.asarray(x))
    table = tables[0][3].numpy()
    w2c, K = cameras_from_rays(np.asarray(out.ray[0]), np.asarray(out.ray_conf[0]), (H, W), table)
    K_t = full_t.intrinsics[0].numpy()
    errs = {"w2c": rel(w2c, full_t.extrinsics[0].numpy()), "K^-1": rel(np.linalg.inv(K), np.linalg.inv(K_t))}
    assert max(errs.values()) <= 1e-3, errs

    ql, grid = ru.ql_decomposition, ru.unproject_depth
    monkeypatch.setattr(ru, "ql_decomposition", lambda A: tuple(t.double() for t in ql(A.float())))
    monkeypatch.setattr(ru, "unproject_depth", lambda d, k, **kw: grid(d.float(), k.float(), **kw).double())
    monkeypatch.setattr(ru, "get_params_for_ransac", lambda N, dev: draw(N, dev)[:3] + (torch.from_numpy(table),))
    ray64, conf64 = head_t["ray"].double(), head_t["ray_conf"].double()
    ext, focal, pp = ru.get_extrinsic_from_camray(ray64, conf64, ray64.shape[-3], ray64.shape[-2])
    c2w = ext[0, :, :3].numpy()
    w2c64, K64 = cameras_from_rays(ray64[0].numpy(), conf64[0].numpy(), (H, W), table)
    errs = {"R": rel(w2c64[:, :, :3], np.swapaxes(c2w[:, :, :3], 1, 2)), "centre": rel(
        -np.einsum("sji,sj->si", w2c64[:, :, :3], w2c64[:, :, 3]), c2w[:, :, 3]),
        "1/focal": rel(1 / focal[0].numpy(), np.stack([K64[:, 0, 0] / W * 2, K64[:, 1, 1] / H * 2], -1) ** -1),
        "pp": rel(np.stack([K64[:, 0, 2] / W * 2, K64[:, 1, 2] / H * 2], -1), pp[0].numpy())}
    assert max(errs.values()) <= 1e-5, errs
    with torch.no_grad():  # the decoder's cameras differ, so matching above is not vacuous
        assert rel(w2c, ref(torch_in(x)).extrinsics[0].numpy()) > 1e-2
