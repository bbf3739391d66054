"""The main job end to end on the shared real video (short, small), and its configs."""

import json
import os

import numpy as np
import pytest

from experiments import render as render_exp


def test_config_variants_and_arguments():
    big = render_exp.get_config("variant=1.3B")
    d = big.model.dit
    assert (d.dim, d.num_layers, d.num_heads, d.ffn_dim, d.in_dim, d.text_dim, d.freq_dim) == (
        1536, 30, 12, 8960, 36, 4096, 256)
    assert tuple(d.patch_size) == (1, 2, 2) and d.eps == 1e-6 and d.frames_per_block == 3
    tiny = render_exp.get_config("variant=tiny,max_frames=9,height=64,width=112")
    assert tiny.model.dit.dim < 256 and tiny.video_spec.max_frames == 9 and tiny.video_spec.width == 112
    with pytest.raises(ValueError, match="unknown config argument"):
        render_exp.get_config("bogus=1")
    with pytest.raises(Exception):
        big.new_field = 1  # locked


def run_job(tmp_path, trajectory, shared_data, **camera):
    from star_jax import render

    cfg = render_exp.get_config("variant=tiny,max_frames=9,height=96,width=160")
    cfg.unlock()
    cfg.manifest = os.path.join(shared_data, "reference_videos", "coffee_martini.json")  # explicit, not the default
    cfg.video = ""
    cfg.output_dir = str(tmp_path)
    cfg.trajectory = trajectory
    for k, v in camera.items():
        cfg.camera[k] = v
    cfg.lock()
    return render.run(cfg, log=lambda *_: None)


def test_render_job_on_real_video(shared_data, tmp_path):
    meta = run_job(tmp_path, os.path.join(shared_data, "trajectories", "zoom_out_in.txt"), shared_data)
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["renders.mp4", "masks.mp4", "reference.mp4", "contact_sheet.png", "conditions.npz", "metadata.json"])
    assert meta["frames"] == 9 and meta["depth"] == "planar-prior" and meta["camera"]["kind"] == "dolly"
    ref = meta["reference"]  # provenance of the source clip: 1352x760 at 30 fps, every other frame kept
    assert ref["source_size_hw"] == [760, 1352] and ref["source_fps"] == 30 and ref["distinct_reference_frames"] == 9
    assert not [f for f in os.listdir(tmp_path.parent) if f.startswith(f".{tmp_path.name}.")]  # staging gone
    assert meta["caption"].startswith("The image shows a bartender")
    with np.load(tmp_path / "conditions.npz") as z:
        masks, renders, w2c = z["masks"], z["renders"], z["target_w2c"]
    # zoom_out_in over 9 frames (linear): displacement 0, -0.9375 at frame 2, 0 at frame 4,
    # +0.9375 at frame 6, 0. Backing off a plane shows its border: holes all round.
    assert masks[0].all() and masks[4].all() and masks[-1].all()
    assert masks[2].mean() < 0.5 and not masks[2][:, 0].any() and not masks[2][0].any()
    np.testing.assert_allclose(w2c[2, :3, 3], [0, 0, 0.9375], atol=1e-5)  # centre at z = -0.9375
    assert w2c[6, 2, 3] < -0.9
    assert json.load(open(tmp_path / "metadata.json"))["frames"] == 9
    assert renders.dtype == np.uint8 and renders[0].std() > 20


def test_render_job_rejects_bad_trajectory(shared_data, tmp_path):
    from star_jax.geometry import TrajectoryError

    bad = tmp_path / "bad.txt"
    bad.write_text("0 1\n0 1\n")
    out = tmp_path / "out"
    with pytest.raises(TrajectoryError, match="bad.txt"):
        run_job(out, str(bad), shared_data)
    assert sorted(os.listdir(tmp_path)) == ["bad.txt"]  # validated before decoding: nothing made


def test_render_job_fuses_a_four_image_scene(tmp_path):
    """A four-view scene folder (the synthetic room of tests/inference/test_session_multiview.py):
    the job fuses every view into each target, writes the source clip the release would encode
    (the view assigned to each latent) and records the choice per block."""
    from star_jax import render
    from star_jax.io.scene_folder import Scene, write_scene
    from tests.inference.test_session_multiview import COLOURS, _room, _yaw_w2c

    views, depth, K, w2c = _room()
    target = np.stack([_yaw_w2c(180.0)] * 5 + [_yaw_w2c(0.0)] * 4)
    write_scene(tmp_path / "room", Scene(kind="image", views=views, depth=depth, source_K=K, source_w2c=w2c,
                                         target_w2c=target, fps=15.0, output_id="room", valid_frames=9,
                                         geometry="user-depth"))
    cfg = render_exp.get_config("variant=tiny,height=32,width=48")
    with cfg.unlocked():
        cfg.video, cfg.trajectory, cfg.output_dir = str(tmp_path / "room"), "", str(tmp_path / "out")
        cfg.w2c_file = str(tmp_path / "room" / "input" / "target_tcw.txt")
        cfg.warp.mode = "inspatio-1.5"
    meta = render.run(cfg, log=lambda *_: None)
    assert meta["frames"] == 9 and meta["views_per_block"][0]["latent_views"] == [1, 2, 0]
    with np.load(tmp_path / "out" / "conditions.npz") as z:
        np.testing.assert_array_equal(z["source_indices"], [1, 2, 2, 2, 2, 0, 0, 0, 0])
        assert z["masks"].mean() > 0.95 and z["K"].shape == (9, 3, 3)
        np.testing.assert_allclose(np.median(z["renders"][2][z["masks"][2]], axis=0), COLOURS[2], atol=1)
        np.testing.assert_allclose(np.median(z["renders"][7][z["masks"][7]], axis=0), COLOURS[0], atol=1)
