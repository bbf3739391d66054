"""`python -m star_jax.geometry.estimate`: window chaining (closed form), DA3's input sizes, the
manifest folder navigate reads (random tiny weights), confidence masking (DA3's threshold; a planted
low-confidence region), cameras from the ray maps (known cameras through the job), and bad inputs
(another size, a damaged checkpoint giving NaN, NaN / zero depth, a video shorter than the window, an
output folder holding other files): clear errors or explicit masking, nothing half-written.

Tests named `..._network_output_...` replace the jitted network by a stand-in returning planted
outputs (`fake_network`), so they check the job around the network exactly."""

import json
import os

import numpy as np
import pytest

from star_jax.checkpoint.storage import CheckpointError
from star_jax.errors import InputError
from star_jax.geometry.encoder import encoder_variant, params_to_da3_state
from star_jax.geometry.encoder.convert import encoder_shapes
from star_jax.geometry.estimate import chain_windows, main, normalise_scene, processing_size, window_starts
from star_jax.geometry.trajectory import foreground_depth


def random_rigid(rng):
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    x, y, z, w = q
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    m = np.eye(4)
    m[:3, :3], m[:3, 3] = R, rng.normal(size=3)
    return m


def test_window_starts_and_da3_processing_size():
    assert window_starts(7, 3) == [0, 2, 4]
    assert window_starts(10, 4) == [0, 3, 6]
    assert window_starts(11, 4) == [0, 3, 6, 7]
    assert window_starts(3, 16) == [0]
    assert processing_size((480, 832), 504) == (294, 504)  # 290.8 -> 291 -> nearest multiple of 14
    assert processing_size((832, 480), 504) == (504, 294)
    assert processing_size((100, 100), 504) == (504, 504)
    assert processing_size((30, 40), 56) == (42, 56)


def test_chaining_undoes_a_different_similarity_per_window():
    """Each window sees the true scene in its own frame and scale (a random similarity); chained and
    normalised, the result equals the normalised true scene."""
    rng = np.random.default_rng(0)
    T, V = 8, 3
    depth = rng.uniform(1.0, 4.0, size=(T, 5, 6))
    w2c = np.stack([random_rigid(rng) for _ in range(T)])
    windows = []
    for start in window_starts(T, V):
        s, G = rng.uniform(0.2, 5.0), random_rigid(rng)
        m = w2c[start:start + V] @ np.linalg.inv(G)
        m[:, :3, 3] *= s
        windows.append((start, depth[start:start + V] * s, m))
    got_d, got_w = normalise_scene(*chain_windows(T, windows))[:2]
    want_d, want_w = normalise_scene(depth, w2c)[:2]
    np.testing.assert_allclose(got_d, want_d, rtol=1e-9)
    np.testing.assert_allclose(got_w, want_w, atol=1e-9)
    np.testing.assert_allclose(got_w[0], np.eye(4), atol=1e-12)
    assert foreground_depth(got_d[0]) == pytest.approx(1.0)


def write_tiny_checkpoint(folder) -> str:
    """Random weights of the tiny encoder's shapes as a DA3 safetensors file (and a NaN-damaged copy
    nan.safetensors) in `folder` -> the path of model.safetensors."""
    from safetensors.numpy import save_file

    from flax.traverse_util import unflatten_dict

    rng = np.random.default_rng(0)  # random weights of the tiny shapes (no init pass: that is slow on CPU)
    params = {}
    for path, shape in encoder_shapes(encoder_variant("tiny")).items():
        if path.endswith("kernel"):
            params[path] = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif path.endswith(("scale", "ls1", "ls2")):
            params[path] = 1 + 0.1 * rng.normal(size=shape)
        else:
            params[path] = 0.1 * rng.normal(size=shape)
    params = unflatten_dict({k: v.astype(np.float32) for k, v in params.items()}, sep="/")
    os.makedirs(folder, exist_ok=True)
    state = {f"model.{k}": v for k, v in params_to_da3_state(params).items()}
    save_file(state, os.path.join(folder, "model.safetensors"))
    nan = dict(state)
    nan["model.head.scratch.output_conv2.2.bias"] = np.full_like(state["model.head.scratch.output_conv2.2.bias"], np.nan)
    save_file(nan, os.path.join(folder, "nan.safetensors"))
    return os.path.join(folder, "model.safetensors")


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("da3")
    write_tiny_checkpoint(folder)
    return folder


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    from star_jax.io.files import write_mp4

    rng = np.random.default_rng(1)
    base = rng.uniform(0, 1, size=(48, 64, 3))
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(6)])
    path = tmp_path_factory.mktemp("video") / "clip.mp4"
    write_mp4(str(path), frames, fps=15)
    return str(path)


def test_writes_the_manifest_navigate_reads(tiny_checkpoint, video, tmp_path):
    from star_jax.io.manifest import check_manifest_entry, load_manifest

    out = tmp_path / "scene"
    meta = main(["--video", video, "--checkpoint", str(tiny_checkpoint / "model.safetensors"), "--out", str(out),
                 "--window", "4", "--process_res", "56"])
    assert meta["variant"] == "tiny" and meta["frames"] == 6 and meta["windows"] == 2
    assert meta["process_hw"] == [42, 56] and json.load(open(out / "metadata.json"))["variant"] == "tiny"
    (entry,) = load_manifest(out / "manifest.json")
    probe = check_manifest_entry(entry)  # the depth folder's numbering and count, shapes, camera files
    assert probe.num_frames == 6
    depth = np.stack([np.load(out / "depth" / f"depth_{k:05d}.npy") for k in range(6)])
    w2c, K = np.load(out / "extrinsics.npy"), np.load(out / "intrinsics.npy")
    assert depth.shape == (6, 48, 64) and depth.dtype == np.float32 and np.all(depth >= 0)
    low = np.array(meta["low_confidence_pixels"])  # DA3's threshold: about 40% of each window's pixels
    assert meta["cameras"] == "camera_decoder" and meta["depth_pixels_per_frame"] == 42 * 56
    assert meta["invalid_depth_pixels"] == [0] * 6 and np.all(low > 0) and 0.2 < low.sum() / (6 * 42 * 56) < 0.6
    # counted, not masked by default: every finite positive depth conditions the warp
    assert not meta["confidence"]["masked"] and np.all(depth > 0) and meta["masked_depth_pixels"] == [0] * 6
    assert w2c.shape == (6, 4, 4) and K.shape == (6, 3, 3)
    np.testing.assert_allclose(w2c[0], np.eye(4), atol=1e-6)
    np.testing.assert_allclose(w2c[:, :3, :3] @ np.swapaxes(w2c[:, :3, :3], 1, 2), np.broadcast_to(np.eye(3), (6, 3, 3)),
                               atol=1e-5)
    assert foreground_depth(depth[0]) == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(K[:, 0, 2], 31.5, atol=1e-4)  # DA3's centred principal point, pixel centres
    np.testing.assert_allclose(K[:, 1, 2], 23.5, atol=1e-4)
    assert sorted(os.listdir(tmp_path)) == ["scene"]  # nothing left beside it


def test_bad_inputs_write_nothing(tiny_checkpoint, video, tmp_path):
    out = tmp_path / "scene"
    args = ["--video", video, "--out", str(out), "--window", "4", "--process_res", "56"]
    with pytest.raises(CheckpointError, match="'small' geometry encoder"):
        main(args + ["--checkpoint", str(tiny_checkpoint / "model.safetensors"), "--variant", "small"])
    with pytest.raises(InputError, match="non-finite or non-positive cameras|no finite positive depth"):
        main(args + ["--checkpoint", str(tiny_checkpoint / "nan.safetensors")])
    with pytest.raises(InputError, match="--window: expected at least 2"):
        main(args + ["--checkpoint", str(tiny_checkpoint / "model.safetensors"), "--window", "1"])
    assert not out.exists() and os.listdir(tmp_path) == []
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(InputError, match="holds files this job does not write"):
        main(args + ["--checkpoint", str(tiny_checkpoint / "model.safetensors")])
    assert os.listdir(out) == ["mine.txt"]


def test_seven_scenes_through_the_estimate_path_keeps_the_warp_gain(shared_data, tmp_path):
    """Real RGB-D: the true 7-Scenes depth and poses, handed to the chaining as four windows each in
    its own random frame and scale (as the network would give them), normalised, written by
    `write_scene`, read back through the manifest path navigate uses (load_video +
    load_scene_geometry), then warped: the same error as the raw data, well below the unwarped one."""
    from star_jax.geometry.estimate import write_scene
    from star_jax.geometry.warp import warp_recipe
    from star_jax.io.files import write_mp4
    from star_jax.io.manifest import SceneGeometry, load_manifest, load_scene_geometry
    from star_jax.io.video import VideoSpec, load_video
    from tests.geometry.test_warp import WARP, load_7scenes

    folder = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    K = np.loadtxt(os.path.join(folder, "camera-intrinsics.txt")).astype(np.float32)
    rgb, depth, w2c = map(np.stack, zip(*[load_7scenes(folder, i) for i in range(150, 161)]))
    rng = np.random.default_rng(0)
    windows = []
    for start in window_starts(11, 4):
        s, G = rng.uniform(0.2, 5.0), random_rigid(rng)
        m = w2c[start:start + 4].astype(np.float64) @ np.linalg.inv(G)
        m[:, :3, 3] *= s
        windows.append((start, depth[start:start + 4] * s, m))
    d, m, _ = normalise_scene(*chain_windows(11, windows))
    video = str(tmp_path / "kitchen.mp4")
    write_mp4(video, rgb, fps=15)
    (tmp_path / "scene").mkdir()
    geometry = SceneGeometry(d.astype(np.float32), np.tile(K, (11, 1, 1)), m.astype(np.float32), "estimated")
    write_scene(str(tmp_path / "scene"), video, geometry, {})
    (entry,) = load_manifest(tmp_path / "scene" / "manifest.json")
    clip = load_video(entry.video, VideoSpec(height=480, width=640, fps=None, frame_multiple=1))
    scene = load_scene_geometry(entry, clip)
    recipe = warp_recipe("star-jax-v0", 2)
    for j in (5, 10):
        ours = WARP(rgb[0], scene.depth[0], scene.K[0], scene.w2c[0], scene.K[j], scene.w2c[j], recipe=recipe)
        raw = WARP(rgb[0], depth[0], K, w2c[0], K, w2c[j], recipe=recipe)
        mask = np.asarray(ours.mask)
        assert np.mean(mask == np.asarray(raw.mask)) > 0.999
        err = np.abs(np.asarray(ours.rgb) - rgb[j])[mask].mean()
        err_raw = np.abs(np.asarray(raw.rgb) - rgb[j])[mask].mean()
        err_source = np.abs(rgb[0] - rgb[j])[mask].mean()
        assert abs(err - err_raw) < 1e-3 and err < 0.6 * err_source, (err, err_raw, err_source)


@pytest.mark.slow  # ~20 s of CPU: the encoder at DA3's 504-px processing size
def test_render_job_estimates_geometry_in_process(tiny_checkpoint, video, tmp_path):
    """`render --config.geometry_checkpoint`: a video without a depth folder gets the encoder's depth
    and cameras in-process (depth "estimated" in the metadata), and a missing checkpoint is refused
    before anything is decoded."""
    from experiments import render as render_exp
    from star_jax import render
    from star_jax.errors import InputError

    c = render_exp.get_config("variant=tiny,height=48,width=64")
    with c.unlocked():
        c.video, c.trajectory, c.output_dir = video, "", str(tmp_path / "out")
        c.geometry_checkpoint = str(tiny_checkpoint / "model.safetensors")
        c.video_spec["max_frames"] = 5
    traj = tmp_path / "orbit.txt"
    traj.write_text("0 5\n0 10\n1 1\n")
    with c.unlocked():
        c.trajectory = str(traj)
    meta = render.run(c, log=lambda *_: None)
    assert meta["depth"] == "estimated"
    with c.unlocked():
        c.geometry_checkpoint, c.output_dir = str(tmp_path / "none.safetensors"), str(tmp_path / "out2")
    with pytest.raises(InputError, match="geometry_checkpoint: .*none.safetensors: no such file"):
        render.run(c, log=lambda *_: None)
    assert not (tmp_path / "out2").exists()


def test_bad_checkpoint_sizes_write_nothing(video, tmp_path):
    """A DA3 checkpoint of a size this port does not have (the CC BY-NC large, width 1024) is named
    before any frame is decoded."""
    from safetensors.numpy import save_file

    path = tmp_path / "large.safetensors"
    save_file({"model.backbone.pretrained.cls_token": np.zeros((1, 1, 1024), np.float32)}, str(path))
    with pytest.raises(CheckpointError, match=r"large.safetensors: a DA3 backbone of width 1024; this port has "
                                              r"tiny \(32\), small \(384\), base \(768\)"):
        main(["--video", video, "--checkpoint", str(path), "--out", str(tmp_path / "scene")])
    assert not (tmp_path / "scene").exists()


def fake_network(monkeypatch, make):
    """Replaces the jitted network: `make(frames)` gets the window's frames (V, h, w, 3) (uint8
    values) and returns a dict of GeometryOutput fields for one window (no batch axis)."""
    from star_jax.geometry import estimate
    from star_jax.geometry.encoder import GeometryOutput

    def run(params, x):
        out = {k: np.asarray(v, np.float32)[None] for k, v in make(np.asarray(x[0])).items()}
        V = x.shape[1]
        out.setdefault("pose_enc", np.zeros((1, V, 9), np.float32))
        for k, shape in [("ray", (V, 8, 8, 6)), ("ray_conf", (V, 8, 8))]:
            out.setdefault(k, np.ones((1,) + shape, np.float32))
        return GeometryOutput(**out)

    monkeypatch.setattr(estimate, "_runner", lambda cfg: run)


def planted(frames, low_frame=None, nan_frame=None):
    """Depth 2 + a gradient, confidence 2 (5 + 5 in the planted square of `low_frame`: conf 1.01), NaN
    and 0 depth in two squares of `nan_frame`; identity cameras, f = 50 px, centred."""
    V, h, w, _ = frames.shape
    depth = 2.0 + np.linspace(0, 0.5, w)[None, None] + np.zeros((V, h, 1))
    conf = np.full((V, h, w), 2.0)
    for k in range(V):
        t = int(round(frames[k, 0, 0, 0] / 10))  # the frame's number, painted into it
        if t == low_frame:
            conf[k, 10:20, 20:30] = 1.01
        if t == nan_frame:
            depth[k, 0:5, 0:6] = np.nan
            depth[k, 30:32, 40:45] = 0.0
    w2c = np.tile(np.eye(4)[:3], (V, 1, 1))
    K = np.tile(np.array([[50.0, 0, w / 2], [0, 50.0, h / 2], [0, 0, 1]]), (V, 1, 1))
    return {"depth": depth, "depth_conf": conf, "w2c": w2c, "K": K}


def numbered_frames(T, h=42, w=56):
    """(T, h, w, 3) uint8, frame t filled with 10 t (constant frames survive DA3's resize exactly)."""
    return np.stack([np.full((h, w, 3), 10 * t, np.uint8) for t in range(T)])


def test_low_confidence_and_nan_network_output_is_masked_and_counted(monkeypatch):
    """Depth under DA3's confidence threshold (here 2: the 40th percentile, above 1.05) is 0 exactly
    in the planted square and nowhere else; NaN and zero depth are 0 and counted apart; the shared
    frame is counted once, from the window its depth comes from."""
    from star_jax.geometry.estimate import EstimateSettings, estimate_geometry

    fake_network(monkeypatch, lambda x: planted(x, low_frame=2, nan_frame=4))
    geometry, info = estimate_geometry(numbered_frames(6), {}, encoder_variant("tiny"),
                                       EstimateSettings(window=4, process_res=56, confidence_mask=True))
    assert info["confidence"]["per_window"] == [2.0, 2.0] and info["process_hw"] == [42, 56]
    assert info["low_confidence_pixels"] == [0, 0, 100, 0, 0, 0]
    assert info["invalid_depth_pixels"] == [0, 0, 0, 0, 40, 0]
    assert info["masked_depth_pixels"] == [0, 0, 100, 0, 40, 0]
    zero = geometry.depth == 0
    assert zero[2, 10:20, 20:30].all() and zero[2].sum() == 100
    assert zero[4, 0:5, 0:6].all() and zero[4, 30:32, 40:45].all() and zero[4].sum() == 40
    assert zero.sum() == 140 and np.all(np.isfinite(geometry.depth))
    kept, _ = estimate_geometry(numbered_frames(6), {}, encoder_variant("tiny"),  # both percentiles 0: keep all
                                EstimateSettings(window=4, process_res=56, conf_percentile=0, conf_ensure_percentile=0,
                                                 confidence_mask=True))
    assert (kept.depth == 0).sum() == 40
    unmasked, info = estimate_geometry(numbered_frames(6), {}, encoder_variant("tiny"),  # the default: counted only
                                       EstimateSettings(window=4, process_res=56))
    assert (unmasked.depth == 0).sum() == 40 and info["low_confidence_pixels"] == [0, 0, 100, 0, 0, 0]
    assert info["masked_depth_pixels"] == [0, 0, 0, 0, 40, 0]


def test_network_output_with_no_usable_depth_is_refused(monkeypatch, tmp_path):
    """A frame left without depth (all below the threshold, or all NaN) is an error naming the
    frame; through the command nothing is written."""
    from star_jax.geometry.estimate import EstimateSettings, estimate_geometry

    def all_low(x):
        out = planted(x)
        out["depth_conf"][1] = 1.01  # frame 1: every pixel under 2, the window's 40th percentile
        return out

    fake_network(monkeypatch, all_low)
    with pytest.raises(InputError, match=r"source frame 1: no depth pixel has confidence >= 2, expected some"):
        estimate_geometry(numbered_frames(3), {}, encoder_variant("tiny"),
                          EstimateSettings(window=4, process_res=56, confidence_mask=True))

    def all_nan(x):
        out = planted(x)
        out["depth"][2] = np.nan
        return out

    fake_network(monkeypatch, all_nan)
    with pytest.raises(InputError, match=r"source frame 2: the geometry network gave no finite positive depth"):
        estimate_geometry(numbered_frames(3), {}, encoder_variant("tiny"), EstimateSettings(window=4, process_res=56))
    with pytest.raises(InputError, match=r"expected frames \(T >= 1, H, W, 3\), found \(0, 42, 56, 3\)"):
        estimate_geometry(np.zeros((0, 42, 56, 3), np.uint8), {}, encoder_variant("tiny"), EstimateSettings())
    with pytest.raises(InputError, match=r"--conf_percentile / --conf_ensure_percentile: expected 0 <= 95"):
        EstimateSettings(conf_percentile=95)


def test_video_shorter_than_the_window_is_one_window(monkeypatch, tiny_checkpoint, tmp_path):
    """3 frames and --window 16: one window of the 3 frames, said in metadata.json; one frame:
    monocular depth and the identity camera."""
    from star_jax.geometry.estimate import EstimateSettings, estimate_geometry
    from star_jax.io.files import write_mp4

    seen = []
    fake_network(monkeypatch, lambda x: seen.append(len(x)) or planted(x))
    video = str(tmp_path / "short.mp4")
    write_mp4(video, numbered_frames(3, 48, 64), fps=15)
    meta = main(["--video", video, "--checkpoint", str(tiny_checkpoint / "model.safetensors"), "--out",
                 str(tmp_path / "scene"), "--process_res", "56"])
    assert seen == [3] and meta["window"] == 16 and meta["views_per_window"] == 3 and meta["windows"] == 1
    assert json.load(open(tmp_path / "scene" / "metadata.json"))["views_per_window"] == 3
    geometry, info = estimate_geometry(numbered_frames(1), {}, encoder_variant("tiny"), EstimateSettings())
    assert info["views_per_window"] == 1 and geometry.depth.shape == (1, 42, 56)
    np.testing.assert_allclose(geometry.w2c[0], np.eye(4), atol=1e-7)


def test_ray_pose_network_output_gives_the_known_cameras(monkeypatch):
    """--ray_pose: ray maps cast by known cameras (one world frame, depth 2 everywhere) through the
    job: the cameras written are the known ones re-based to frame 0 and divided by the foreground
    depth 2, K the known focal lengths in source pixels with the centred principal point."""
    from star_jax.geometry.estimate import EstimateSettings, estimate_geometry
    from star_jax.geometry.encoder.ray_pose import ray_grid
    from tests.geometry.encoder.test_ray_pose import random_rotation

    rng = np.random.default_rng(2)
    T = 5
    R = np.stack([random_rotation(rng) for _ in range(T)])
    c, f = rng.normal(size=(T, 3)), rng.uniform(0.8, 1.4, size=(T, 2))

    def cast(x):
        V, h, w, _ = x.shape
        out = planted(x)
        out["depth"] = np.full((V, h, w), 2.0)
        g = ray_grid(8 * h // 14, 8 * w // 14)
        rays = []
        for k in range(V):
            t = int(round(x[k, 0, 0, 0] / 10))
            d = np.concatenate([g / f[t], np.ones(g.shape[:2] + (1,))], -1) @ R[t].T
            rays.append(np.concatenate([d, np.broadcast_to(c[t], d.shape)], -1))
        out["ray"] = np.stack(rays)
        out["ray_conf"] = 1 + rng.uniform(size=out["ray"].shape[:-1])
        out["w2c"] = np.full((V, 3, 4), np.nan)  # the decoder's cameras must not be read
        return out

    fake_network(monkeypatch, cast)
    geometry, info = estimate_geometry(numbered_frames(T), {}, encoder_variant("tiny"),
                                       EstimateSettings(window=3, process_res=56, ray_pose=True))
    assert info["cameras"] == "ray_pose" and info["windows"] == 2
    w2c = np.tile(np.eye(4), (T, 1, 1))
    w2c[:, :3, :3] = np.swapaxes(R, 1, 2)
    w2c[:, :3, 3] = -np.einsum("tji,tj->ti", R, c)
    want = w2c @ np.linalg.inv(w2c[0])
    want[:, :3, 3] /= 2.0
    np.testing.assert_allclose(geometry.w2c, want, atol=2e-6)
    np.testing.assert_allclose(geometry.K[:, 0, 0], f[:, 0] * 56 / 2, rtol=1e-5)
    np.testing.assert_allclose(geometry.K[:, 1, 1], f[:, 1] * 42 / 2, rtol=1e-5)
    np.testing.assert_allclose(geometry.K[:, :2, 2], np.broadcast_to([27.5, 20.5], (T, 2)), atol=1e-5)


def test_confidence_threshold_is_the_packages():
    """`confidence_threshold` against depth-anything-3's own `get_conf_thresh` (utils/export/glb.py,
    compiled alone from the package's source: its module imports trimesh and moviepy, not installed
    here) at the package's inference defaults (conf_thresh 1.05, percentiles 40 and 90), and at
    settings where each clamp decides."""
    pytest.importorskip("depth_anything_3")
    import ast
    import types

    import depth_anything_3

    from star_jax.geometry.estimate import EstimateSettings, confidence_threshold

    source = open(os.path.join(list(depth_anything_3.__path__)[0], "utils", "export", "glb.py")).read()
    (fn,) = [n for n in ast.parse(source).body if isinstance(n, ast.FunctionDef) and n.name == "get_conf_thresh"]
    scope = {"np": np, "Prediction": object}
    exec(compile(ast.Module([fn], []), "glb.py", "exec"), scope)
    rng = np.random.default_rng(0)
    conf = 1.0 + rng.exponential(0.3, size=(4, 12, 16))
    for settings in [EstimateSettings(), EstimateSettings(conf_thresh=1.0), EstimateSettings(conf_thresh=5.0),
                     EstimateSettings(conf_percentile=10, conf_ensure_percentile=50)]:
        want = scope["get_conf_thresh"](types.SimpleNamespace(conf=conf), None, settings.conf_thresh,
                                        settings.conf_percentile, settings.conf_ensure_percentile)
        assert confidence_threshold(conf, settings) == pytest.approx(want, rel=1e-12)
    assert confidence_threshold(conf, EstimateSettings(conf_thresh=5.0)) == pytest.approx(np.percentile(conf, 90))
