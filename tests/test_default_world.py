"""The embedded default world: a held-out world (a test seed, at the tiny model's 96x160), small,
complete, equal to what its generator renders, read by the jobs' own ingest as measured geometry,
its ground truth consistent with its cameras, and the jobs' defaults pointing at it (no ../shared
needed)."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

from data_pipelines import make_default_world as mdw
from data_pipelines.worlds import random_scene, render_depth
from star_jax.assets import DEFAULT_WORLD, default_world_path
from star_jax.geometry import load_w2c_file, warp_frames
from star_jax.io.manifest import load_manifest
from star_jax.io.video import VideoSpec, load_video

SPEC = VideoSpec(height=96, width=160, fps=15.0)


@pytest.fixture(scope="module")
def ingested():
    """The default config's input as the jobs ingest it: (config, entry, clip, geometry)."""
    from experiments.navigate import get_config
    from star_jax.render import load_reference

    config = get_config()
    entry = load_manifest(config.manifest)[0]
    clip, geometry = load_reference(entry, config, log=lambda *_: None)
    return config, entry, clip, geometry


@pytest.fixture(scope="module")
def rerender():
    """The generator's world, rendered once for the drift checks (~10 s)."""
    return mdw.build()


def test_asset_is_small_and_complete():
    files = [os.path.join(r, f) for r, _, fs in os.walk(DEFAULT_WORLD) for f in fs]
    assert sum(os.path.getsize(f) for f in files) < 2_000_000
    names = {os.path.relpath(f, DEFAULT_WORLD) for f in files}
    assert set(mdw._FILES) <= names
    assert sorted(n for n in names if n.startswith("depth")) == [f"depth/depth_{t:04d}.png" for t in range(45)]
    assert not [n for n in names if os.path.basename(n).startswith(".")]  # nothing half-written


def test_world_is_held_out_of_every_training_split():
    from data_pipelines.synth_worlds import split_seeds, test_every

    assert mdw.SEED % test_every(0.1) == test_every(0.1) - 1 == mdw.TEST_EVERY - 1
    for first, n in ((0, 320), (0, 1000), (mdw.SEED, 20)):
        seeds = split_seeds(first, n, 0.1)
        assert mdw.SEED in seeds["test"] and mdw.SEED not in seeds["train"]
    with open(default_world_path("world.json")) as f:
        record = json.load(f)
    assert record["seed"] == mdw.SEED and record["spec"]["height"] == 96 and record["spec"]["width"] == 160


def test_asset_matches_its_generator(rerender):
    assert mdw.check(sample=rerender) == []


def test_check_finds_a_tampered_asset(tmp_path, rerender):
    copy = str(tmp_path / "world")
    shutil.copytree(DEFAULT_WORLD, copy)
    with open(os.path.join(copy, "trajectory.txt"), "w") as f:
        f.write("0 5\n0 30\n1\n")
    from PIL import Image

    png = os.path.join(copy, "depth", "depth_0000.png")
    d = np.asarray(Image.open(png)).copy()
    d[40:60, 60:90] += 50  # 5 cm
    Image.fromarray(d).save(png)
    problems = mdw.check(copy, sample=rerender)
    assert any("trajectory.txt" in p for p in problems) and any("depth_0000.png" in p for p in problems)
    os.remove(os.path.join(copy, "target.mp4"))
    assert mdw.check(copy) == [f"{copy}: missing target.mp4"]
    assert mdw.main(["--check", "--out", copy]) == 1


def test_ingest_gives_measured_geometry_and_the_ground_truth_cameras(ingested):
    from star_jax.render import build_target_cameras

    config, entry, clip, geometry = ingested
    assert entry.caption.startswith("a courtyard") and entry.depth_scale == mdw.DEPTH_SCALE
    assert clip.frames.shape == (45, 96, 160, 3) and geometry.kind == "measured"
    np.testing.assert_array_equal(clip.source_indices, np.arange(45))  # native size and rate: no resampling
    np.testing.assert_allclose(geometry.w2c, load_w2c_file(default_world_path("source_w2c.txt")), atol=1e-6)
    np.testing.assert_allclose(geometry.K[0], mdw.SPEC.intrinsics(), atol=1e-4)
    # stored depth = the generator's depth to the millimetre (sky = 0 = no measurement)
    scene = random_scene(mdw.SEED)
    true = render_depth(scene, mdw.SPEC.intrinsics(), geometry.w2c[30], (96, 160), 2.0)
    assert np.abs(geometry.depth[30] - true).max() <= 0.0005 + 1e-6
    # the jobs' cameras for the default trajectory over 4 blocks (45 frames) are target.mp4's cameras
    w2c, info = build_target_cameras(config, geometry, 45, entry.radius_ratio)
    assert info["kind"] == "orbit" and config.num_blocks == 4
    np.testing.assert_allclose(w2c, load_w2c_file(default_world_path("target_w2c.txt")), atol=1e-5)


def test_warping_the_source_reproduces_the_ground_truth_target(ingested):
    _, _, clip, g = ingested
    target = load_video(default_world_path("target.mp4"), SPEC).frames
    tgt_w2c = load_w2c_file(default_world_path("target_w2c.txt")).astype(np.float32)
    t = np.array([22, 44])  # the orbit's widest point and its return
    out = jax.jit(warp_frames, static_argnames=("out_hw", "point_size"))(
        clip.frames[t].astype(np.float32), g.depth[t], g.K[t], g.w2c[t], g.K[t], tgt_w2c[t])
    for k, i in enumerate(t):
        z_true = render_depth(random_scene(mdw.SEED), mdw.SPEC.intrinsics(), tgt_w2c[i], (96, 160), float(i) / 15.0)
        z = np.asarray(out.depth[k])
        seen = np.asarray(out.mask[k]) & (np.abs(z - z_true) < 0.01 * z_true)
        assert seen.mean() > 0.4
        assert mdw.psnr(np.asarray(out.rgb[k])[seen], target[i][seen]) > 27.0  # H.264 on both sides
        # the same pixels of another target frame (other cameras, other times) are far off
        assert mdw.psnr(np.asarray(out.rgb[k])[seen], target[i - 12][seen]) < 20.0


def test_job_defaults_live_in_the_package():
    from experiments import navigate, render

    root = os.path.dirname(DEFAULT_WORLD)
    for config in (navigate.get_config(), render.get_config()):
        for path in (config.manifest, config.trajectory):
            assert os.path.isfile(path) and os.path.commonpath([path, root]) == root
            assert "shared" not in path.split(os.sep)
        assert (config.video_spec.height, config.video_spec.width) == (96, 160)  # the world's own size
    from star_jax.assets import TINY_MODEL

    config = navigate.get_config()  # the embedded trained model and the world's ground truth by default
    assert config.checkpoint == TINY_MODEL and config.ground_truth == default_world_path("target.mp4")
    assert navigate.get_config("random_weights").checkpoint == "" == navigate.get_config("variant=1.3B").checkpoint
