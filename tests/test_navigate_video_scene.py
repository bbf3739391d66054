"""The third 1.5 input kind: a video made into a scene folder by `prepare` (with its true depth and
per-frame poses, from the shared 7-Scenes sequence) goes through navigate; target frame f is
rendered from source frame f, and the scene's own targets drive it."""

import json
import os

import numpy as np
import pytest

from experiments.navigate import get_config
from star_jax.io.files import write_mp4
from star_jax.io.scene_folder import load_scene
from star_jax.navigate import run
from star_jax.prepare import main as prepare

SRC = "rgbd_7scenes_redkitchen"


@pytest.mark.slow  # ~1-2 min of CPU: one navigate run (compilation of one block)
def test_a_video_scene_through_prepare_and_navigate(shared_data, tmp_path):
    from PIL import Image

    src = os.path.join(shared_data, SRC)
    if not os.path.isfile(os.path.join(src, "frame-000199.color.png")):
        pytest.skip("7-Scenes redkitchen frames not found")
    ids = range(150, 159)  # 9 frames: one first block
    frames = np.stack([np.asarray(Image.open(os.path.join(src, f"frame-{i:06d}.color.png"))) for i in ids])
    write_mp4(str(tmp_path / "clip.mp4"), frames, 15.0, crf=0)
    depth = tmp_path / "depth"
    depth.mkdir()
    for k, i in enumerate(ids):
        os.link(os.path.join(src, f"frame-{i:06d}.depth.png"), depth / f"depth_{k:04d}.png")
    w2c = np.stack([np.linalg.inv(np.loadtxt(os.path.join(src, f"frame-{i:06d}.pose.txt"))) for i in ids])
    np.savetxt(tmp_path / "w2c.txt", w2c.reshape(len(ids), 16))
    scene_dir = str(tmp_path / "scene")
    prepare(["--source", str(tmp_path / "clip.mp4"), "--depth", str(depth), "--w2c", str(tmp_path / "w2c.txt"),
             "--intrinsics", os.path.join(src, "camera-intrinsics.txt"), "--height", "48", "--width", "64",
             "--output", scene_dir, "--trajectory", os.path.join(shared_data, "trajectories", "x_y_circle_cycle.txt")])
    scene = load_scene(scene_dir)
    assert scene.kind == "video" and scene.geometry == "user-depth" and scene.frames == 9
    c = get_config("variant=tiny,blocks=1,height=48,width=64,random_weights")
    with c.unlocked():
        c.video, c.trajectory, c.ground_truth, c.output_dir = scene_dir, "", "", str(tmp_path / "out")
        c.w2c_file = os.path.join(scene_dir, "input", "target_tcw.txt")
        c.evaluate = True
    meta = run(c, log=lambda *_: None)
    assert meta["frames"] == 9 and meta["depth"] == "measured"  # the user's depth, not a prior
    with np.load(tmp_path / "out" / "cameras.npz") as z:
        np.testing.assert_allclose(z["w2c"], scene.target_w2c[:9], atol=1e-5)
    assert meta["reference"]["distinct_source_frames_used"] == 9  # target frame f from source frame f
    assert min(meta["render_coverage_per_block"]) > 0.5  # true depth: the orbit keeps the kitchen in view
    assert json.load(open(tmp_path / "out" / "metrics.json"))["metrics"]["photometric_consistency"]["ok"]
