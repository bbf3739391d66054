"""`python -m star_jax.geometry.estimate`: window chaining (closed form), DA3's input sizes, the
manifest folder navigate reads (random tiny weights), and bad inputs (another size, a damaged
checkpoint giving NaN, an output folder holding other files): clear errors, nothing written."""

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
    assert depth.shape == (6, 48, 64) and depth.dtype == np.float32 and np.all(depth > 0)
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
