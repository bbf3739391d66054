"""navigate on 1.5 scene folders made by `prepare` from real 7-Scenes frames with their true depth
and poses (tiny random weights, one block, 48x64): one image (the scene's target poses set the
frame count, only valid_frames are written), four images (fused render, the per-block view
assignment on a path whose answer is known), and scripted moves; plus the --moves command line."""

import json
import os

import numpy as np
import pytest

from experiments.navigate import get_config
from star_jax.navigate import blocks_for, join_moves_argv, run, total_frames
from star_jax.prepare import main as prepare

SRC = "rgbd_7scenes_redkitchen"


def _frames(shared_data, ids):
    src = os.path.join(shared_data, SRC)
    if not os.path.isfile(os.path.join(src, "frame-000199.color.png")):
        pytest.skip("7-Scenes redkitchen frames not found")
    return src, [os.path.join(src, f"frame-{i:06d}") for i in ids]


def _prepare(src, f, out, *extra):
    prepare(["--source", *[p + ".color.png" for p in f], "--depth", *[p + ".depth.png" for p in f],
             "--c2w", *[p + ".pose.txt" for p in f], "--intrinsics", os.path.join(src, "camera-intrinsics.txt"),
             "--height", "48", "--width", "64", "--output", str(out), "--prompt", "a kitchen", *extra])
    return str(out)


def _config(scene, out, **kw):
    c = get_config("variant=tiny,blocks=4,height=48,width=64,random_weights")
    with c.unlocked():
        c.video, c.trajectory, c.ground_truth, c.output_dir = scene, "", "", str(out)
        c.conditioning = "inspatio-1.5"
        for k, v in kw.items():
            c[k] = v
    return c


def _frame_count(path):
    import av

    with av.open(path) as f:
        return sum(1 for _ in f.decode(video=0))


def test_blocks_for_and_moves_argv():
    assert [blocks_for(n) for n in (1, 9, 10, 21, 22, 33)] == [1, 1, 2, 2, 3, 3]
    assert all(total_frames(blocks_for(n)) >= n for n in range(1, 60))
    argv = ["navigate", "--config=x", "--moves", "forward:36", "turn-right+forward:36", "look-up:12", "--dry_run"]
    assert join_moves_argv(argv) == ["navigate", "--config=x", "--moves=forward:36 turn-right+forward:36 look-up:12",
                                     "--dry_run"]
    assert join_moves_argv(["n", "--moves=forward:3"]) == ["n", "--moves=forward:3"]


@pytest.mark.slow  # ~1-2 min of CPU: two navigate runs (compilation of one block)
def test_one_image_writes_its_valid_frames_and_moves(shared_data, tmp_path):
    """A 7-Scenes frame with its true depth: 7 valid frames pad to 9 (one block of 3 latents,
    the last pose repeated); navigate generates 9 and writes 7, and says so. Then scripted moves
    on the same scene: their frame count sets the run, the camera goes forward then turns right."""
    src, f = _frames(shared_data, [150])
    scene = _prepare(src, f, tmp_path / "one", "--frames", "7")
    sj = json.load(open(os.path.join(scene, "scene.json")))
    assert (sj["frames"], sj["valid_frames"]) == (9, 7)
    meta = run(_config(scene, tmp_path / "out"), log=lambda *_: None)  # no camera given: the scene's own
    assert (meta["frames"], meta["generated_frames"], meta["valid_frames"], meta["blocks"]) == (7, 9, 7, 1)
    assert meta["scene"]["source_type"] == "image" and meta["scene"]["own_cameras"]
    assert meta["depth"] == "measured" and meta["views_per_block"] is None
    out = tmp_path / "out"
    assert _frame_count(out / "navigate.mp4") == 7 and _frame_count(out / "renders.mp4") == 7
    from star_jax.io.scene_folder import load_scene

    with np.load(out / "cameras.npz") as z:
        assert z["w2c"].shape == (7, 4, 4) and z["masks"].shape == (7, 48, 64)
        np.testing.assert_allclose(z["w2c"], load_scene(scene).target_w2c[:7], atol=1e-6)

    meta = run(_config(scene, tmp_path / "moves", moves="forward:3 turn-right+forward:3"), log=lambda *_: None)
    assert (meta["frames"], meta["generated_frames"], meta["blocks"]) == (6, 9, 1)
    assert meta["camera"]["kind"] == "moves" and meta["camera"]["moves"] == "forward:3 turn-right+forward:3"
    with np.load(tmp_path / "moves" / "cameras.npz") as z:
        w2c = z["w2c"].astype(np.float64)
    rel = w2c[0] @ np.linalg.inv(w2c[-1])  # last camera in the first camera's frame (c2w)
    assert rel[2, 3] > 0 and rel[0, 2] > 0  # moved forward, the view axis turned toward +x (right)


@pytest.mark.slow  # ~1-2 min of CPU: one navigate run on four fused views
def test_four_images_fused_and_assigned(shared_data, tmp_path):
    """Four 7-Scenes frames (150, 165, 180, 199) with depths and poses; the target path looks
    from view 2's camera for frames 0-4 and from view 0's for frames 5-8. Every view is rendered
    and fused; the block's latents get views (1, 2, 0): view 2 where the path sees it, then view 0."""
    ids = [150, 165, 180, 199]
    src, f = _frames(shared_data, ids)
    w2c = np.stack([np.linalg.inv(np.loadtxt(p + ".pose.txt")) for p in f])
    np.savetxt(tmp_path / "t.txt", np.stack([w2c[2]] * 5 + [w2c[0]] * 4).reshape(9, 16))
    scene = _prepare(src, f, tmp_path / "four", "--target_w2c", str(tmp_path / "t.txt"))
    meta = run(_config(scene, tmp_path / "out"), log=lambda *_: None)
    assert meta["scene"]["source_type"] == "multi-image" and (meta["frames"], meta["blocks"]) == (9, 1)
    (views,) = meta["views_per_block"]
    assert views["latent_views"] == [1, 2, 0] and views["kept_views"] == [2, 1, 0]
    over = np.array(views["overlap_pixels"])
    assert over.shape == (3, 4) and over[1].argmax() == 2 and over[2].argmax() == 0
    assert meta["reference"]["distinct_source_frames_used"] == 3
    assert min(meta["render_coverage_per_block"]) > 0.9  # four views cover more than any one
    with np.load(tmp_path / "out" / "cameras.npz") as z:
        np.testing.assert_allclose(z["w2c"], np.stack([w2c[2]] * 5 + [w2c[0]] * 4), atol=1e-4)
        assert np.allclose(z["K"], z["K"][0])  # every target rendered with view 0's intrinsics


def test_moves_dry_run_and_bad_move_on_the_command_line(tmp_path):
    """--moves sets the frame count (dry run, in process); a bad move is one named line, exit 2."""
    import subprocess
    import sys

    c = get_config("variant=tiny,blocks=4,height=48,width=64,random_weights")
    with c.unlocked():
        c.moves, c.output_dir = "forward:20 look-up*2:5", str(tmp_path / "out")
    plan = run(c, log=lambda *_: None, dry_run=True)
    assert plan["frames"] == total_frames(blocks_for(25)) == 33 and plan["camera"] == "moves"
    with c.unlocked():
        c.moves_speed.turn_deg = -1.0
    with pytest.raises(Exception, match="config.moves_speed: moves speeds: turn_deg"):
        run(c, log=lambda *_: None, dry_run=True)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    p = subprocess.run([sys.executable, "-m", "star_jax.navigate", "--config=experiments/navigate.py:variant=tiny",
                        "--moves", "forward:36", "jump:3", "--dry_run", f"--output_dir={tmp_path / 'x'}"],
                       cwd=root, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().splitlines()[-1] == ("error: --moves: move 2 'jump:3': unknown move 'jump'; expected one "
                                                 "of forward, back, left, right, up, down, turn-left, turn-right, "
                                                 "look-up, look-down, still")


def test_scene_dry_run_frames_and_frozen_frame_refused(tmp_path):
    """A four-view scene of 13 target poses: 2 blocks (21 frames) are generated; scene_blocks caps
    them; a frozen frame is refused, naming the field."""
    from star_jax.errors import InputError
    from star_jax.io.scene_folder import Scene, write_scene
    from tests.inference.test_session_multiview import _room, _yaw_w2c

    views, depth, K, w2c = _room()
    write_scene(tmp_path / "room", Scene(kind="image", views=views, depth=depth, source_K=K, source_w2c=w2c,
                                         target_w2c=np.stack([_yaw_w2c(3.0 * i) for i in range(13)]), fps=15.0,
                                         output_id="room", valid_frames=11, geometry="user-depth"))
    c = _config(str(tmp_path / "room"), tmp_path / "out")
    assert run(c, log=lambda *_: None, dry_run=True)["frames"] == 21
    with c.unlocked():
        c.scene_blocks = 1
    assert run(c, log=lambda *_: None, dry_run=True)["frames"] == 9
    with c.unlocked():
        c.camera.freeze_frame = 0
    with pytest.raises(InputError, match="config.camera.freeze_frame: a four-image scene .* expected -1, found 0"):
        run(c, log=lambda *_: None, dry_run=True)
