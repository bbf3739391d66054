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
