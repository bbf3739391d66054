"""InSpatio manifests and per-frame depth + pose import, end to end on real RGB-D frames."""

import json
import os

import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.manifest import ManifestError, load_manifest, load_scene_geometry, planar_prior_geometry
from star_jax.io.video import VideoSpec, load_video
from star_jax.geometry import warp_frames


def test_release_example_json_is_a_manifest(shared_data):
    (entry,) = load_manifest(os.path.join(shared_data, "reference_videos", "coffee_martini.json"))
    assert entry.video.endswith("coffee_martini.mp4") and os.path.isfile(entry.video)
    assert entry.caption.startswith("The image shows a bartender")
    assert entry.radius_ratio == 1 and entry.depth_dir is None


@pytest.mark.parametrize("content, msg", [("{not json", "cannot read manifest"), ("[]", "empty"),
                                          ('[{"caption": "x"}]', "entry 0 has no video")])
def test_bad_manifests(tmp_path, content, msg):
    p = tmp_path / "m.json"
    p.write_text(content)
    with pytest.raises(ManifestError, match=msg):
        load_manifest(p)


@pytest.fixture(scope="module")
def redkitchen_manifest(shared_data, tmp_path_factory):
    """A manifest over real 7-Scenes frames: an mp4 of the colour frames, the Kinect depth PNGs
    (millimetres), DA3-style stacked 3x4 w2c rows and the 3x3 K."""
    from PIL import Image

    src = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    root = tmp_path_factory.mktemp("redkitchen")
    ids = range(150, 159)
    frames = np.stack([np.asarray(Image.open(os.path.join(src, f"frame-{i:06d}.color.png")).convert("RGB")) for i in ids])
    io.write_mp4(root / "clip.mp4", frames, fps=30)
    os.makedirs(root / "depth")
    for i in ids:
        os.symlink(os.path.join(src, f"frame-{i:06d}.depth.png"), root / "depth" / f"{i:06d}.png")
    w2c = np.stack([np.linalg.inv(np.loadtxt(os.path.join(src, f"frame-{i:06d}.pose.txt"))) for i in ids])
    np.savetxt(root / "extrinsic.txt", w2c[:, :3].reshape(-1, 4))
    np.savetxt(root / "intrinsic.txt", np.loadtxt(os.path.join(src, "camera-intrinsics.txt")))
    manifest = [{"video": "clip.mp4", "caption": "a kitchen", "depth_dir": "depth", "extrinsics": "extrinsic.txt",
                 "intrinsics": "intrinsic.txt", "depth_scale": 0.001}]
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root / "manifest.json", frames, w2c


def test_scene_geometry_import_and_warp_on_real_frames(redkitchen_manifest):
    path, frames, w2c = redkitchen_manifest
    (entry,) = load_manifest(path)
    clip = load_video(entry.video, VideoSpec(height=240, width=320, fps=None))
    geo = load_scene_geometry(entry, clip)
    assert geo.kind == "measured" and geo.depth.shape == (9, 240, 320)
    np.testing.assert_allclose(geo.w2c, w2c, atol=1e-5)
    np.testing.assert_allclose(geo.K[0], [[292.5, 0, 159.75], [0, 292.5, 119.75], [0, 0, 1]], atol=1e-4)
    assert 0.5 < np.median(geo.depth[geo.depth > 0]) < 5.0  # metres, not millimetres
    # warping frame 0 into frame 4's camera through the imported geometry beats no warp
    out = warp_frames(clip.frames[:1].astype(np.float32) / 255, geo.depth[:1], geo.K[:1], geo.w2c[:1],
                      geo.K[4:5], geo.w2c[4:5], point_size=2)
    m = np.asarray(out.mask[0])
    tgt = clip.frames[4].astype(np.float32) / 255
    err_warp = np.abs(np.asarray(out.rgb[0]) - tgt)[m].mean()
    err_none = np.abs(clip.frames[0].astype(np.float32) / 255 - tgt)[m].mean()
    assert m.mean() > 0.7 and err_warp < 0.6 * err_none, (m.mean(), err_warp, err_none)


def test_missing_depth_frames_are_reported(redkitchen_manifest, tmp_path):
    path, _, _ = redkitchen_manifest
    (entry,) = load_manifest(path)
    clip = load_video(entry.video, VideoSpec(height=240, width=320, fps=None))
    import dataclasses

    with pytest.raises(ManifestError, match="no depth files"):
        load_scene_geometry(dataclasses.replace(entry, depth_dir=str(tmp_path)), clip)


def test_planar_prior_geometry():
    geo = planar_prior_geometry(5, 48, 64, depth=2.0, fov_x_deg=90.0)
    assert geo.kind == "planar-prior" and np.all(geo.depth == 2.0)
    np.testing.assert_allclose(geo.K[0, 0, 0], 32.0, rtol=1e-6)
