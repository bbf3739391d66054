"""InSpatio manifests and per-frame depth + pose import, end to end on real RGB-D frames."""

import dataclasses
import json
import os

import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.manifest import (
    ManifestError,
    check_manifest_entry,
    index_depth_folder,
    load_manifest,
    load_scene_geometry,
    planar_prior_geometry,
    read_depth,
)
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
    with pytest.raises(ManifestError, match="no depth files"):
        load_scene_geometry(dataclasses.replace(entry, depth_dir=str(tmp_path)), clip)


def test_gap_in_real_depth_folder_fails_instead_of_shifting(redkitchen_manifest, tmp_path):
    """One depth file missing from the middle used to shift every later depth map by one frame."""
    path, _, _ = redkitchen_manifest
    (entry,) = load_manifest(path)
    gap = tmp_path / "depth"
    gap.mkdir()
    for name in sorted(os.listdir(entry.depth_dir)):
        if name != "000154.png":
            os.symlink(os.path.realpath(os.path.join(entry.depth_dir, name)), gap / name)
    entry = dataclasses.replace(entry, depth_dir=str(gap))
    msg = r"depth: depth for frame number 154 is missing \(numbers run from 150 to 158, 1 missing\)"
    with pytest.raises(ManifestError, match=msg):
        check_manifest_entry(entry)  # the cheap check finds it before any decoding
    clip = load_video(entry.video, VideoSpec(height=240, width=320, fps=None, max_frames=1))
    with pytest.raises(ManifestError, match=msg):
        load_scene_geometry(entry, clip)  # even when the clip only needs frame 0


def test_check_manifest_entry_on_real_frames(redkitchen_manifest):
    path, _, _ = redkitchen_manifest
    (entry,) = load_manifest(path)
    probe = check_manifest_entry(entry, VideoSpec(height=240, width=320))
    assert probe.num_frames == 9 and probe.size_hw == (480, 640)


def test_planar_prior_geometry():
    geo = planar_prior_geometry(5, 48, 64, depth=2.0, fov_x_deg=90.0)
    assert geo.kind == "planar-prior" and np.all(geo.depth == 2.0)
    np.testing.assert_allclose(geo.K[0, 0, 0], 32.0, rtol=1e-6)


def _scene(root, n=5, hw=(24, 32), names="depth_{:04d}.npy", first=0, w2c=None, K=None, values=None):
    """A synthetic scene: an n-frame video, depth maps whose value is 1 + the frame number, identity
    cameras and a pinhole K, written under `root`; returns the manifest path."""
    os.makedirs(root / "depth", exist_ok=True)
    frames = np.full((n, *hw, 3), 128, np.uint8)
    io.write_mp4(root / "clip.mp4", frames, fps=15)
    for i in range(n):
        d = np.full(hw, 1.0 + i, np.float32) if values is None else values(i)
        np.save(root / "depth" / names.format(first + i), d)
    np.savetxt(root / "w2c.txt", (np.tile(np.eye(4), (n, 1, 1)) if w2c is None else w2c).reshape(n, 16))
    K = np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]) if K is None else K
    np.savetxt(root / "K.txt", K.reshape(-1, 3))
    m = {"video": "clip.mp4", "depth_dir": "depth", "extrinsics": "w2c.txt", "intrinsics": "K.txt"}
    (root / "m.json").write_text(json.dumps(m))
    return root / "m.json"


def _geometry(manifest, **spec):
    (entry,) = load_manifest(manifest)
    clip = load_video(entry.video, VideoSpec(**{"height": 32, "width": 48, "fps": None, "min_source_side": 0, **spec}))
    return entry, clip, load_scene_geometry(entry, clip)


@pytest.mark.parametrize("names, first", [("depth_{:04d}.npy", 0), ("depth_{}.npy", 1), ("frame-{:06d}.depth.npy", 150),
                                          ("{:06d}.npy", 123), ("scene2_d{}.npy", 7)])
def test_depth_files_are_matched_to_frames_by_number(tmp_path, names, first):
    """Frame k gets the file numbered first + k, whatever the name sorts like ('depth_10' < 'depth_9')."""
    _, _, geo = _geometry(_scene(tmp_path, n=12, names=names, first=first))
    np.testing.assert_array_equal(geo.depth[:, 0, 0], 1.0 + np.arange(9))  # 12 frames snapped to 9
    files = index_depth_folder(tmp_path / "depth")
    assert files.first_index == first and len(files.paths) == 12
    assert files.paths[10].endswith(names.format(first + 10))


def test_depth_folder_keeps_depth_named_files(tmp_path):
    """A 7-Scenes-like folder with colour frames beside the depth: only names with 'depth' count."""
    d = tmp_path / "f"
    d.mkdir()
    for i in (3, 4):
        np.save(d / f"frame-{i:06d}.depth.npy", np.ones((2, 2)))
        (d / f"frame-{i:06d}.color.png").write_bytes(b"")
    files = index_depth_folder(d)
    assert files.first_index == 3 and [os.path.basename(p) for p in files.paths] == [
        "frame-000003.depth.npy", "frame-000004.depth.npy"]


@pytest.mark.parametrize("files, msg", [
    (["d_1.npy", "d_001.npy", "d_2.npy"], r"f: two depth files for frame number 1: d_001.npy and d_1.npy"),
    (["0001.npy", "0001.png"], r"f: two depth files for frame number 1"),
    (["a.npy"], r"a.npy: expected a frame number in the depth file name, found none"),
    (["d_0.npy", "d_1.npy", "d_3.npy", "d_4.npy", "d_6.npy"],
     r"f: depth for frame number 2 is missing \(numbers run from 0 to 6, 2 missing\)"),
    (["notes.txt"], r"f: no depth files \(.npy, .npz, .png, .tif, .tiff\) found"),
])
def test_depth_folder_numbering_errors(tmp_path, files, msg):
    d = tmp_path / "f"
    d.mkdir()
    for name in files:
        (d / name).write_bytes(b"")
    with pytest.raises(ManifestError, match=msg):
        index_depth_folder(d)


def test_depth_count_must_equal_the_video_frame_count(tmp_path):
    """A first file missing (numbers 1..4 for a 5-frame video) cannot be told from a 1-based folder
    by the numbers, but the count tells: both fewer and more maps than frames are refused."""
    m = _scene(tmp_path, n=5)
    os.remove(tmp_path / "depth" / "depth_0000.npy")
    with pytest.raises(ManifestError, match=r"depth: expected one depth map per video frame \(5\), found 4"):
        _geometry(m)
    with pytest.raises(ManifestError, match=r"depth: expected one depth map per video frame \(5\), found 4"):
        check_manifest_entry(load_manifest(m)[0])
    np.save(tmp_path / "depth" / "depth_0000.npy", np.ones((24, 32)))
    np.save(tmp_path / "depth" / "depth_0005.npy", np.ones((24, 32)))
    with pytest.raises(ManifestError, match=r"expected one depth map per video frame \(5\), found 6"):
        _geometry(m)


@pytest.mark.parametrize("value, msg", [
    (lambda d: d.__setitem__((3, 4), np.nan), r"expected finite depth \(0 = no measurement\), found 1 NaN/inf values, "
                                             r"first at row 3, column 4"),
    (lambda d: d.__setitem__((slice(0, 2), 0), np.inf), r"expected finite depth .* found 2 NaN/inf values, first at row 0, column 0"),
    (lambda d: d.__setitem__((5, 6), -2.0), r"expected depth >= 0 \(0 = no measurement\), found 1 negative values, "
                                           r"first -2 at row 5, column 6"),
    (lambda d: d.__setitem__(slice(None), 0.0), r"expected some positive depth, found only zeros"),
])
def test_bad_depth_values_name_the_file_and_frame(tmp_path, value, msg):
    def values(i):
        d = np.full((24, 32), 2.0, np.float32)
        if i == 3:
            value(d)
        return d

    m = _scene(tmp_path, n=5, values=values)
    with pytest.raises(ManifestError, match=r"depth_0003.npy \(source frame 3\): " + msg):
        _geometry(m)


def test_depth_shape_and_format_errors(tmp_path):
    from PIL import Image

    m = _scene(tmp_path, n=5, values=lambda i: np.ones((24, 32) if i != 2 else (12, 16), np.float32))
    with pytest.raises(ManifestError, match=r"depth_0002.npy \(source frame 2\): expected 24x32 like the clip's first "
                                            r"depth map, found 12x16"):
        _geometry(m)
    m = _scene(tmp_path / "b", n=5, values=lambda i: np.ones((24, 24), np.float32))
    with pytest.raises(ManifestError, match=r"depth_0000.npy \(source frame 0\): expected a depth map with the video's "
                                            r"aspect ratio \(24x32, HxW\), found 24x24"):
        _geometry(m)
    with pytest.raises(ManifestError, match=r"found 24x24"):
        check_manifest_entry(load_manifest(m)[0])
    # half resolution, same aspect: accepted and cropped like the video
    _, clip, geo = _geometry(_scene(tmp_path / "c", n=5, values=lambda i: np.full((12, 16), 1.0 + i, np.float32)))
    np.testing.assert_array_equal(geo.depth[:, 5, 5], 1.0 + np.arange(5))
    p = tmp_path / "x.png"
    Image.fromarray(np.full((4, 4), 200, np.uint8)).save(p)
    with pytest.raises(ManifestError, match=r"x.png \(source frame 7\): expected a 16-bit or float depth image, found 8 bits"):
        read_depth(str(p), frame=7)
    Image.fromarray(np.full((4, 4), 1000, np.uint16)).save(p)
    np.testing.assert_allclose(read_depth(str(p), 0.001), 1.0)
    np.save(tmp_path / "rgb.npy", np.ones((4, 4, 3)))
    with pytest.raises(ManifestError, match=r"rgb.npy: expected a 2-D depth map \(H, W\), found shape \(4, 4, 3\)"):
        read_depth(str(tmp_path / "rgb.npy"))
    (tmp_path / "junk.npy").write_bytes(b"junk")
    with pytest.raises(ManifestError, match=r"junk.npy \(source frame 0\): cannot read depth map"):
        read_depth(str(tmp_path / "junk.npy"), frame=0)


def test_mirrored_extrinsics_and_bad_intrinsics_in_a_manifest(tmp_path):
    w2c = np.tile(np.eye(4), (5, 1, 1))
    w2c[3, 1, 1] = -1.0  # a mirror
    m = _scene(tmp_path, n=5, w2c=w2c)
    with pytest.raises(ManifestError, match=r"w2c.txt:4: matrix 3: expected a proper rotation \(det R = \+1\), found det R = -1"):
        _geometry(m)
    with pytest.raises(ManifestError, match=r"w2c.txt:4: matrix 3"):
        check_manifest_entry(load_manifest(m)[0])
    m = _scene(tmp_path / "k", n=5, K=np.array([[30.0, 0, 15.5], [0, 0.0, 11.5], [0, 0, 1]]))
    with pytest.raises(ManifestError, match=r"K.txt:1: matrix 0: expected focal lengths fx, fy > 0, found fx = 30, fy = 0"):
        _geometry(m)
    # per-frame K: one per video frame (a short list used to repeat its last K silently)
    m = _scene(tmp_path / "pk", n=5, K=np.tile(np.array([[30.0, 0, 15.5], [0, 30.0, 11.5], [0, 0, 1]]), (3, 1, 1)))
    with pytest.raises(ManifestError, match=r"K.txt: expected one intrinsics matrix per video frame \(5\), found 3"):
        _geometry(m)
    m = _scene(tmp_path / "pw", n=5, w2c=np.tile(np.eye(4), (5, 1, 1)))
    np.savetxt(tmp_path / "pw" / "w2c.txt", np.tile(np.eye(4), (4, 1, 1)).reshape(4, 16))
    with pytest.raises(ManifestError, match=r"w2c.txt: expected one camera matrix per video frame \(5\), found 4"):
        _geometry(m)


@pytest.mark.parametrize("entry, msg", [
    ({"video": "clip.mp4", "depth_scale": "mm"}, r"entry 0 field 'depth_scale': expected a positive finite number, found 'mm'"),
    ({"video": "clip.mp4", "depth_scale": -1}, r"entry 0 field 'depth_scale': expected a positive finite number, found -1"),
    ({"video": "clip.mp4", "radius_ratio": True}, r"entry 0 field 'radius_ratio': expected a positive finite number, found True"),
    ({"video": "clip.mp4", "radius_ratio": float("nan")}, r"entry 0 field 'radius_ratio': expected a positive finite number"),
    ({"video": 3}, r"entry 0 field 'video': expected a string, found 3"),
    ({"video": "nope.mp4"}, r"entry 0 field 'video': no such file .*nope.mp4"),
    ({"video": "clip.mp4", "depth": "nodir"}, r"entry 0 field 'depth': no such folder .*nodir"),
    ({"video": "clip.mp4", "K": "depth"}, r"entry 0 field 'K': no such file .*depth"),
])
def test_manifest_fields_are_checked_on_load(tmp_path, entry, msg):
    _scene(tmp_path, n=1)
    (tmp_path / "bad.json").write_text(json.dumps([entry]))
    with pytest.raises(ManifestError, match=r"bad.json: " + msg):
        load_manifest(tmp_path / "bad.json")
