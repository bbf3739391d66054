"""The navigation main job end to end on a generated clip: random weights, then the same weights
through converted orbax checkpoints (same video), and key-script control."""

import json
import os

import jax
import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.video import VideoSpec, load_video
from experiments.navigate import get_config
from star_jax.checkpoint import save_params
from star_jax.inference.model import random_star_model
from star_jax.navigate import run, total_frames


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    d = tmp_path_factory.mktemp("clip")
    t = np.arange(12)[:, None, None, None]
    y, x = np.mgrid[:48, :80]
    frames = ((x[None, :, :, None] * 3 + y[None, :, :, None] * 2 + t * 9 + np.array([0, 80, 160])) % 256)
    path = str(d / "clip.mp4")
    io.write_mp4(path, frames.astype(np.uint8), 15)
    return path


def _config(clip, out, **kw):
    c = get_config("variant=tiny,blocks=2,height=32,width=64")
    with c.unlocked():
        c.video = clip
        c.output_dir = str(out)
        for k, v in kw.items():
            c[k] = v
    return c


def test_navigate_random_then_checkpoint(clip, tmp_path):
    meta = run(_config(clip, tmp_path / "a"), log=lambda *_: None)
    assert meta["frames"] == total_frames(2) == 21
    assert meta["weights"] == "random-init (tiny)" and meta["text"] == "zeros"
    assert meta["depth"] == "planar-prior" and meta["camera"]["kind"] == "orbit"
    assert len(meta["latency_per_block_s"]) == 2
    assert set(meta["steady_state"]["share"]) == {"warp", "encode", "dit", "decode"}
    for name in ("navigate.mp4", "renders.mp4", "contact_sheet.png", "metadata.json"):
        assert os.path.getsize(tmp_path / "a" / name) > 0
    assert json.load(open(tmp_path / "a" / "metadata.json"))["frames"] == 21
    assert not [f for f in os.listdir(tmp_path / "a") if f.startswith(".")]  # nothing half-written

    # the same weights through the checkpoint path give the same video
    model = random_star_model("tiny", jax.random.PRNGKey(0))
    save_params(model.dit_params, str(tmp_path / "ckpt" / "dit"))
    save_params(model.vae_params, str(tmp_path / "ckpt" / "vae"))
    meta_b = run(_config(clip, tmp_path / "b", checkpoint=str(tmp_path / "ckpt")), log=lambda *_: None)
    assert str(tmp_path / "ckpt" / "dit") in meta_b["weights"]
    spec = VideoSpec(height=32, width=64)
    a = load_video(str(tmp_path / "a" / "navigate.mp4"), spec).frames
    b = load_video(str(tmp_path / "b" / "navigate.mp4"), spec).frames
    np.testing.assert_array_equal(a, b)


def test_navigate_with_keys_and_bad_checkpoint(clip, tmp_path):
    (tmp_path / "keys.txt").write_text("5 forward\n10 forward+yaw_left\n")
    meta = run(_config(clip, tmp_path / "k", keys_file=str(tmp_path / "keys.txt"), num_blocks=1),
               log=lambda *_: None)
    assert meta["camera"]["kind"] == "keys" and meta["frames"] == 9
    from star_jax.checkpoint import CheckpointError

    with pytest.raises(CheckpointError, match="dit checkpoint .*no such folder"):
        run(_config(clip, tmp_path / "x", checkpoint=str(tmp_path / "nowhere")), log=lambda *_: None)
    assert not (tmp_path / "x").exists()
