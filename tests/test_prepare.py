"""`python -m star_jax.prepare`: one image, four images and a video each become a scene folder that
`load_scene` accepts, with the right kind, views, frames and geometry provenance; bad input is one
named error and nothing is written; real 7-Scenes frames keep their true depth and poses."""

import os

import numpy as np
import pytest
from PIL import Image

from star_jax import cli
from star_jax.errors import InputError
from star_jax.io import files as io
from star_jax.io.scene_folder import load_scene, padded_frame_count
from star_jax.prepare import DEFAULT_IMAGE_FRAMES, PrepareOptions, main, prepare

H, W = 48, 64


def _image(path, seed=0, hw=(H, W)):
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, hw + (3,), dtype=np.uint8)).save(path)
    return str(path)


def _rigid(yaw: float, t) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, 0, s, t[0]], [0, 1, 0, t[1]], [-s, 0, c, t[2]], [0, 0, 0, 1]])


def _quiet(*_):
    pass


def test_one_image_planar_prior(tmp_path, capsys):
    src = _image(tmp_path / "photo.png")
    out = tmp_path / "scene"
    main(["--source", src, "--output", str(out), "--height", str(H), "--width", str(W), "--frames", "10",
          "--prompt", "a red chair"])
    assert "geometry: planar-prior" in capsys.readouterr().out  # printed, and in scene.json
    scene = load_scene(out)
    assert (scene.kind, len(scene.views), scene.valid_frames, scene.frames) == ("image", 1, 10, padded_frame_count(10))
    assert scene.frames == 21 and scene.geometry == "planar-prior" and scene.prompt == "a red chair"
    np.testing.assert_array_equal(scene.views[0], np.asarray(Image.open(src)))
    assert (scene.depth == 1.0).all() and (scene.source_w2c == np.eye(4)).all()
    np.testing.assert_allclose(scene.target_w2c[0], np.eye(4), atol=1e-6)  # the orbit starts at the photo
    assert (scene.target_w2c[10:] == scene.target_w2c[9]).all()  # padding repeats the last valid pose
    yaw = np.degrees(np.arctan2(scene.target_w2c[9, 0, 2], scene.target_w2c[9, 0, 0]))
    assert abs(abs(yaw) - 15.0) < 1e-3  # the default gentle orbit ends 15 degrees round
    assert scene.provenance["target_cameras"]["kind"] == "orbit"


def test_one_image_resized_to_the_scene_size(tmp_path):
    """A 96x160 photo with its depth becomes a 48x80 scene: K and depth follow the resize."""
    src = _image(tmp_path / "big.jpg", hw=(96, 160))
    depth = np.random.default_rng(1).uniform(1, 3, (96, 160)).astype(np.float32)
    np.save(tmp_path / "d.npy", depth)
    np.savetxt(tmp_path / "K.txt", [[100.0, 0, 79.5], [0, 100.0, 47.5], [0, 0, 1]])
    scene = prepare(PrepareOptions(source=(src,), output=str(tmp_path / "s"), depth=(str(tmp_path / "d.npy"),),
                                   intrinsics=str(tmp_path / "K.txt"), height=48, width=80), log=_quiet)
    back = load_scene(tmp_path / "s")
    assert back.resolution == (48, 80) and back.geometry == "user-depth"
    np.testing.assert_allclose(back.source_K[0], [[50, 0, 39.5], [0, 50, 23.5], [0, 0, 1]], atol=1e-5)
    # nearest neighbour: output pixel i (centre 2 i + 0.5 in the source) takes source pixel 2 i + 1
    np.testing.assert_allclose(back.depth[0], depth[1::2, 1::2], atol=0.5 * depth.max() / 65535 + 1e-6)
    np.testing.assert_array_equal(back.views, scene.views)


def test_four_images_with_depth_and_poses(tmp_path):
    srcs = [_image(tmp_path / f"v{i}.png", seed=i) for i in range(4)]
    rng = np.random.default_rng(5)
    depths = [rng.uniform(0.5, 4, (H, W)).astype(np.float32) for _ in range(4)]
    for i, d in enumerate(depths):
        np.save(tmp_path / f"d{i}.npy", d)
    w2c = np.stack([_rigid(0.2 * i, (0.1 * i, 0, 0.3)) for i in range(4)])
    np.savetxt(tmp_path / "w2c.txt", w2c.reshape(4, 16))
    np.savetxt(tmp_path / "K.txt", [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    targets = np.stack([_rigid(0.01 * f, (0, 0.02 * f, 0)) for f in range(30)])
    np.savetxt(tmp_path / "targets.txt", targets.reshape(-1, 16))
    out = tmp_path / "room"
    main(["--source", *srcs, "--output", str(out), "--depth", *[str(tmp_path / f"d{i}.npy") for i in range(4)],
          "--intrinsics", str(tmp_path / "K.txt"), "--w2c", str(tmp_path / "w2c.txt"), "--target_w2c",
          str(tmp_path / "targets.txt"), "--height", str(H), "--width", str(W), "--output_id", "room_01"])
    scene = load_scene(out)
    assert (scene.kind, len(scene.views), scene.geometry, scene.output_id) == ("image", 4, "user-depth", "room_01")
    assert scene.valid_frames == 30 and scene.frames == padded_frame_count(30) == 33
    for i in range(4):
        assert np.abs(scene.depth[i] - depths[i]).max() <= 0.5 * scene.depth.max() / 65535 + 1e-6
    np.testing.assert_allclose(scene.source_w2c, w2c, atol=1e-7)
    np.testing.assert_allclose(scene.target_w2c[:30], targets, atol=1e-7)
    assert (scene.target_w2c[30:] == scene.target_w2c[29]).all()


def test_video_planar_prior_with_a_trajectory(tmp_path):
    y, x = np.mgrid[:H, :W]
    frames = np.stack([np.stack([(x * 4 + 3 * t) % 256, (y * 5) % 256, np.full_like(x, 20 * t)], -1)
                       for t in range(13)]).astype(np.uint8)  # smooth: H.264 keeps it close
    io.write_mp4(tmp_path / "clip.mp4", frames, fps=15)
    (tmp_path / "t.txt").write_text("0 0\n0 20\n1 1\n")
    out = tmp_path / "v"
    scene = prepare(PrepareOptions(source=(str(tmp_path / "clip.mp4"),), output=str(out), height=H, width=W,
                                   trajectory=str(tmp_path / "t.txt")), log=_quiet)
    back = load_scene(out)
    assert (back.kind, len(back.views), back.frames, back.valid_frames) == ("video", 13, 13, 13)
    assert back.geometry == "planar-prior" and back.fps == 15.0
    np.testing.assert_array_equal(back.views, scene.views)  # the ingested clip, stored losslessly
    assert np.abs(back.views.astype(int) - frames).mean() < 8  # and it is the video (H.264 crf 18 in)
    yaw = np.degrees(np.arctan2(back.target_w2c[-1, 0, 2], back.target_w2c[-1, 0, 0]))
    assert abs(abs(yaw) - 20) < 1e-3
    # --frames caps a video (then snapped to 4k + 1)
    short = prepare(PrepareOptions(source=(str(tmp_path / "clip.mp4"),), output=str(tmp_path / "v5"), height=H,
                                   width=W, frames=7), log=_quiet)
    assert short.frames == 5 and len(short.views) == 5


def test_video_with_a_depth_folder_and_cameras(tmp_path):
    """A video's depth folder is matched to its frames by number (as manifests are); its per-frame
    w2c and K come along; --target_w2c gives the first T targets."""
    y, x = np.mgrid[:H, :W]
    frames = np.stack([np.stack([(x * 3 + 5 * t) % 256, (y * 4) % 256, np.full_like(x, 9 * t)], -1)
                       for t in range(9)]).astype(np.uint8)
    io.write_mp4(tmp_path / "clip.mp4", frames, fps=15)
    rng = np.random.default_rng(4)
    depth = rng.uniform(1, 5, (9, H, W)).astype(np.float32)
    (tmp_path / "depth").mkdir()
    for t in range(9):
        np.save(tmp_path / "depth" / f"depth_{t + 100:04d}.npy", depth[t])
    w2c = np.stack([_rigid(0.02 * t, (0.05 * t, 0, 0)) for t in range(9)])
    np.savetxt(tmp_path / "w2c.txt", w2c.reshape(9, 16))
    np.savetxt(tmp_path / "K.txt", [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    targets = np.stack([_rigid(-0.03 * t, (0, 0, 0.01 * t)) for t in range(12)])
    np.savetxt(tmp_path / "targets.txt", targets.reshape(12, 16))
    common = ["--source", str(tmp_path / "clip.mp4"), "--depth", str(tmp_path / "depth"), "--intrinsics",
              str(tmp_path / "K.txt"), "--w2c", str(tmp_path / "w2c.txt"), "--height", str(H), "--width", str(W)]
    main([*common, "--output", str(tmp_path / "v"), "--target_w2c", str(tmp_path / "targets.txt")])
    scene = load_scene(tmp_path / "v")
    assert (scene.kind, len(scene.views), scene.frames, scene.geometry) == ("video", 9, 9, "user-depth")
    assert np.abs(scene.depth - depth).max() <= 0.5 * depth.max() / 65535 + 1e-6
    np.testing.assert_allclose(scene.source_w2c, w2c, atol=1e-7)
    np.testing.assert_allclose(scene.target_w2c, targets[:9], atol=1e-7)
    np.testing.assert_allclose(scene.source_K[0], [[50, 0, 31.5], [0, 50, 23.5], [0, 0, 1]])
    np.savetxt(tmp_path / "few.txt", targets[:5].reshape(5, 16))
    with pytest.raises(InputError, match=r"few\.txt: --target_w2c: expected a camera matrix per output frame \(9\)"):
        main([*common, "--output", str(tmp_path / "w"), "--target_w2c", str(tmp_path / "few.txt")])
    assert not os.path.exists(tmp_path / "w")


def _bad_cases(tmp_path):
    ok = _image(tmp_path / "ok.png")
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    small = _image(tmp_path / "small.png", hw=(H, W - 16))
    sheared = np.eye(4)
    sheared[0, 1] = 0.5
    np.savetxt(tmp_path / "sheared.txt", np.stack([np.eye(4), sheared]).reshape(2, 16))
    np.savetxt(tmp_path / "two.txt", np.stack([np.eye(4), np.eye(4)]).reshape(2, 16))
    np.save(tmp_path / "d.npy", np.ones((H, W), np.float32))
    np.savetxt(tmp_path / "K.txt", [[50.0, 0, 31.5], [0, 50.0, 23.5], [0, 0, 1]])
    (tmp_path / "notes.md").write_text("x")
    size = ["--height", str(H), "--width", str(W)]
    d, K = str(tmp_path / "d.npy"), str(tmp_path / "K.txt")
    return {
        "unreadable image": ([str(garbage)], [], "garbage.png: cannot read image"),
        "missing file": ([str(tmp_path / "nope.png")], [], "nope.png: --source: no such file"),
        "two images": ([ok, ok], [], "expected 1 image or 4 images (what InSpatio-World 1.5 runs), found 2"),
        "three images": ([ok, ok, ok], [], "found 3"),
        "unknown type": ([str(tmp_path / "notes.md")], [], "notes.md: --source: expected an image"),
        "video and image": ([str(tmp_path / "c.mp4"), ok], [], "expected one video alone"),
        "mismatched sizes": ([ok, ok, small, ok], [], "small.png: expected 48x64 (HxW) like"),
        "four without depth": ([ok] * 4, [], "4 images need their depth and poses"),
        "sheared targets": ([ok], ["--target_w2c", str(tmp_path / "sheared.txt")],
                            "sheared.txt:2: matrix 1: not a rigid transform"),
        "too few targets": ([ok], ["--target_w2c", str(tmp_path / "two.txt"), "--frames", "5"],
                            "expected a camera matrix per output frame (5), found 2"),
        "both target kinds": ([ok], ["--target_w2c", "a", "--trajectory", "b"], "expected at most one target"),
        "depth count": ([ok], ["--depth", d, d, "--intrinsics", K], "expected one depth file per image (1), found 2"),
        "depth without K": ([ok], ["--depth", d], "--intrinsics: expected the source intrinsics"),
        "K without depth": ([ok], ["--intrinsics", K], "expected only with --depth"),
        "sheared source pose": ([ok], ["--depth", d, "--intrinsics", K, "--w2c", str(tmp_path / "sheared.txt")],
                                "sheared.txt:2: matrix 1: not a rigid"),
        "source poses count": ([ok], ["--depth", d, "--intrinsics", K, "--w2c", str(tmp_path / "two.txt")],
                               "expected 1 camera matrices (one per image), found 2"),
        "geometry encoder weights missing": ([ok], ["--geometry_checkpoint", "ckpt"],
                                             "--geometry_checkpoint ckpt: no such file"),
        "geometry encoder and depth": ([ok], ["--geometry_checkpoint", "ckpt", "--depth", d],
                                       "expected it instead of --depth"),
        "bad size": ([ok], ["--height", "50"], "expected height and width positive multiples of 16"),
        "bad frames": ([ok], ["--frames", "0"], "--frames: expected an integer >= 1"),
    }, size


def test_bad_input_is_one_named_error_and_nothing_is_written(tmp_path, capsys):
    io.write_mp4(tmp_path / "c.mp4", np.zeros((5, H, W, 3), np.uint8), fps=15)
    cases, size = _bad_cases(tmp_path)
    before = sorted(os.listdir(tmp_path))
    for name, (sources, extra, message) in cases.items():
        out = tmp_path / "out" / name.replace(" ", "_")
        argv = ["--source", *sources, "--output", str(out), *size, *extra]
        with pytest.raises(InputError) as e:
            main(argv)
        assert message in str(e.value) and "\n" not in str(e.value), (name, str(e.value))
        assert not os.path.exists(tmp_path / "out"), name  # nothing written, not even the parent folder
        assert sorted(os.listdir(tmp_path)) == before, name  # no staging leftovers
    # through the command-line entry: exit code 2 and one line on stderr
    capsys.readouterr()
    code = cli.execute(main, ["--source", str(tmp_path / "garbage.png"), "--output", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "garbage.png" in err
    assert cli.execute(main, ["--output", str(tmp_path / "x")]) == 2  # --source is required


def test_default_image_frames():
    assert DEFAULT_IMAGE_FRAMES == padded_frame_count(DEFAULT_IMAGE_FRAMES)  # 4 whole blocks, no padding


def _seven_scenes(shared_data):
    src = os.path.join(shared_data, "rgbd_7scenes_redkitchen")
    if not os.path.isfile(os.path.join(src, "frame-000150.color.png")):
        pytest.skip("7-Scenes redkitchen frames not found")
    return src


@pytest.mark.parametrize("ids", [(150,), (150, 160, 170, 180)])
def test_seven_scenes_true_depth_and_poses(shared_data, tmp_path, ids):
    """Real frames with their Kinect depth (PNG millimetres) and camera-to-world poses: the scene
    keeps the true depth within quantisation and w2c = the inverted true poses."""
    from star_jax.io.manifest import read_depth

    src = _seven_scenes(shared_data)
    f = [os.path.join(src, f"frame-{i:06d}") for i in ids]
    out = tmp_path / "kitchen"
    main(["--source", *[p + ".color.png" for p in f], "--depth", *[p + ".depth.png" for p in f],
          "--c2w", *[p + ".pose.txt" for p in f], "--intrinsics", os.path.join(src, "camera-intrinsics.txt"),
          "--height", "480", "--width", "640", "--output", str(out), "--prompt", "a kitchen"])
    scene = load_scene(out)
    assert (scene.kind, len(scene.views), scene.geometry) == ("image", len(ids), "user-depth")
    true_depth = np.stack([read_depth(p + ".depth.png", 0.001) for p in f])
    lo, hi = (float(v) for v in (out / "depth" / "metadata.txt").read_text().split())
    step = (hi - lo) / 65535
    assert lo == 0 and hi == pytest.approx(true_depth.max())
    assert np.abs(scene.depth - true_depth).max() <= 0.5 * step + 1e-6
    np.testing.assert_array_equal(scene.depth == 0, true_depth == 0)  # Kinect holes stay holes
    w2c = np.stack([np.linalg.inv(np.loadtxt(p + ".pose.txt")) for p in f])
    np.testing.assert_allclose(scene.source_w2c, w2c, atol=2e-6)
    np.testing.assert_allclose(scene.source_K, np.broadcast_to(np.loadtxt(os.path.join(src, "camera-intrinsics.txt")),
                                                               (len(ids), 3, 3)), atol=1e-4)
    np.testing.assert_array_equal(scene.views[0], np.asarray(Image.open(f[0] + ".color.png").convert("RGB")))
    if len(ids) > 1:  # the stored geometry is usable: view 0 warped into view 1's camera matches view 1
        from star_jax.geometry import warp_frames
        from star_jax.io.scene_folder import resize_scene

        s = resize_scene(scene, (120, 160))
        rgb = s.views.astype(np.float32) / 255
        out = warp_frames(rgb[:1], s.depth[:1], s.source_K[:1], s.source_w2c[:1], s.source_K[1:2], s.source_w2c[1:2],
                          point_size=2)
        m = np.asarray(out.mask[0])
        err_warp = np.abs(np.asarray(out.rgb[0]) - rgb[1])[m].mean()
        err_none = np.abs(rgb[0] - rgb[1])[m].mean()
        assert m.mean() > 0.5 and err_warp < 0.6 * err_none, (m.mean(), err_warp, err_none)
    # the default orbit is anchored at view 0's true camera (trajectory.target_w2c inverts poses as rigid
    # transforms, [R^T | -R^T t], and these real rotations are orthonormal to ~1e-4 only)
    np.testing.assert_allclose(scene.target_w2c[0], w2c[0], atol=5e-4)


def test_coffee_martini_video(shared_data, tmp_path):
    video = os.path.join(shared_data, "reference_videos", "coffee_martini.mp4")
    if not os.path.isfile(video):
        pytest.skip("coffee_martini.mp4 not found")
    scene = prepare(PrepareOptions(source=(video,), output=str(tmp_path / "cm"), height=96, width=160, frames=9,
                                   prompt="a bartender"), log=_quiet)
    back = load_scene(tmp_path / "cm")
    assert (back.kind, len(back.views), back.frames, back.geometry) == ("video", 9, 9, "planar-prior")
    np.testing.assert_array_equal(back.views, scene.views)
    assert back.prompt == "a bartender" and back.provenance["sources"] == [video]


@pytest.mark.slow
def test_prepared_photo_drives_a_navigation_session(tmp_path):
    """The integration navigate needs: a prepared one-image scene, through `scene_reference`, into
    the streaming session (random tiny model), following the scene's own target cameras."""
    import jax

    from star_jax.inference import NavigationSession, random_star_model
    from star_jax.io.scene_folder import scene_reference

    src = _image(tmp_path / "photo.png", hw=(32, 48))
    prepare(PrepareOptions(source=(src,), output=str(tmp_path / "s"), height=32, width=48, frames=9), log=_quiet)
    scene = load_scene(tmp_path / "s")
    frames, geometry = scene_reference(scene)
    assert frames.shape == (9, 32, 48, 3) and geometry.kind == "planar-prior"
    session = NavigationSession(random_star_model("tiny", jax.random.PRNGKey(0)), frames, geometry,
                                rng=jax.random.PRNGKey(1))
    n = session.frames_needed()
    out = session.step(target_w2c=scene.target_w2c[:n])
    assert n == 9 and out.frames.shape == (9, 32, 48, 3)
    np.testing.assert_allclose(out.target_w2c, scene.target_w2c[:9], atol=1e-6)
    assert out.masks[0].mean() > 0.95 and out.masks.mean() > 0.5  # the orbit starts at the photo's camera


def test_four_photos_placed_by_the_geometry_encoder(tmp_path):
    """--geometry_checkpoint (random tiny Depth-Anything-3 weights): four photos without depth or
    poses get the encoder's depth and cameras; scene.json says geometry-encoder."""
    from tests.geometry.encoder.test_estimate import write_tiny_checkpoint

    ckpt = write_tiny_checkpoint(tmp_path / "da3")
    srcs = [_image(tmp_path / f"v{i}.png", seed=i) for i in range(4)]
    out = tmp_path / "scene"
    main(["--source", *srcs, "--output", str(out), "--height", str(H), "--width", str(W), "--frames", "5",
          "--geometry_checkpoint", ckpt])
    scene = load_scene(out)
    assert scene.geometry == "geometry-encoder" and len(scene.views) == 4
    assert np.all(np.isfinite(scene.depth)) and np.all(scene.depth >= 0) and scene.depth.max() > 0
    np.testing.assert_allclose(scene.source_w2c[0], np.eye(4), atol=1e-5)  # frame 0 is the world
