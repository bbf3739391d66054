"""InSpatio-World 1.5 scene folders: exact round trips, one named error per corruption, 1.5's own
files (scene.json without our keys, a video scene without depth, depth.mp4 read the way 1.5 reads
it), atomic writes, and what navigate gets from a scene."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from star_jax.errors import InputError
from star_jax.io import scene_folder as sf
from star_jax.io.scene_folder import (
    Scene,
    SceneError,
    check_scene_folder,
    is_scene_folder,
    load_scene,
    padded_frame_count,
    resize_scene,
    scene_reference,
    scene_source_type,
    write_scene,
)

H, W = 32, 48


def _rot_y(a: float, t=(0.0, 0.0, 0.0)) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    m = np.array([[c, 0, s, t[0]], [0, 1, 0, t[1]], [-s, 0, c, t[2]], [0, 0, 0, 1]])
    return m.astype(np.float32)


def make_scene(kind: str = "image", views: int = 4, frames: int = 9, valid: int = 7, seed: int = 0, **kw) -> Scene:
    rng = np.random.default_rng(seed)
    V = frames if kind == "video" else views
    depth = rng.uniform(0.5, 6.0, (V, H, W)).astype(np.float32)
    depth[:, :2, :3] = 0.0  # no measurement: must stay exactly 0
    K = np.array([[40.0, 0, 23.5], [0, 41.0, 15.5], [0, 0, 1]], np.float32) + np.float32(0.123)
    K[1, 0] = K[2, 0] = K[2, 1] = 0
    K[2, 2] = 1
    fields = dict(
        kind=kind, views=rng.integers(0, 256, (V, H, W, 3), dtype=np.uint8), depth=depth,
        source_K=np.stack([K] * V),
        source_w2c=np.stack([_rot_y(0.1 * i + 0.01, (0.3 * i, -0.1, 0.2)) for i in range(V)]),
        target_w2c=np.stack([_rot_y(-0.05 * i, (0.01 * i, 0, 0.02)) for i in range(frames)]), fps=15.0,
        output_id=f"{kind}_{V}", valid_frames=valid if kind == "image" else frames, prompt="a room with a red chair",
        geometry="user-depth", target_intrinsics="user_depth_source_view_00_fixed", provenance={"note": [1, 2]},
    )
    fields.update(kw)
    return Scene(**fields)


def assert_same_scene(a: Scene, b: Scene) -> None:
    np.testing.assert_array_equal(a.views, b.views)
    np.testing.assert_array_equal(a.source_K, b.source_K)
    np.testing.assert_array_equal(a.source_w2c, b.source_w2c)
    np.testing.assert_array_equal(a.target_w2c, b.target_w2c)
    assert (a.kind, a.fps, a.output_id, a.valid_frames, a.prompt, a.geometry, a.target_intrinsics, a.provenance) == (
        b.kind, b.fps, b.output_id, b.valid_frames, b.prompt, b.geometry, b.target_intrinsics, b.provenance)


@pytest.mark.parametrize("kind, views", [("image", 1), ("image", 4), ("video", 9)])
def test_round_trip(tmp_path, kind, views):
    scene = make_scene(kind, views)
    write_scene(tmp_path / "a", scene)
    back = load_scene(tmp_path / "a")
    assert_same_scene(scene, back)  # views, cameras and fields exactly (lossless video, %.9g floats)
    lo, hi = (float(v) for v in (tmp_path / "a" / "depth" / "metadata.txt").read_text().split())
    step = (hi - lo) / 65535
    assert lo == 0 and hi == pytest.approx(float(scene.depth.max()), rel=1e-7)
    err = np.abs(back.depth.astype(np.float64) - scene.depth)
    # rounded to the nearest level (plus float32 rounding of the decoded metres), and not exact
    assert err.max() <= 0.5 * step + float(np.spacing(np.float32(hi))) and err.max() > 1e-3 * step
    np.testing.assert_array_equal(back.depth == 0, scene.depth == 0)  # "no measurement" survives
    assert json.loads((tmp_path / "a" / "scene.json").read_text()) == sf.scene_json(scene)
    # a loaded scene writes back identically: same json, same depth levels
    write_scene(tmp_path / "b", back)
    again = load_scene(tmp_path / "b")
    assert (tmp_path / "b" / "scene.json").read_text() == (tmp_path / "a" / "scene.json").read_text()
    np.testing.assert_array_equal(again.depth, back.depth)
    assert_same_scene(back, again)


def test_layout_is_the_release_layout(tmp_path):
    write_scene(tmp_path / "s", make_scene("image", 4))
    listing = sorted(os.path.relpath(os.path.join(r, f), tmp_path / "s") for r, _, fs in os.walk(tmp_path / "s")
                     for f in fs)
    assert listing == ["depth/depth_00.png", "depth/depth_01.png", "depth/depth_02.png", "depth/depth_03.png",
                       "depth/metadata.txt", "depth/source_intrinsics.txt", "depth/source_tcw.txt",
                       "input/prompt.txt", "input/target_tcw.txt", "input/view_00.png", "input/view_01.png",
                       "input/view_02.png", "input/view_03.png", "scene.json"]
    with Image.open(tmp_path / "s" / "depth" / "depth_00.png") as im:
        assert im.mode == "I;16"
    rows = (tmp_path / "s" / "input" / "target_tcw.txt").read_text().splitlines()
    assert len(rows) == 9 and all(len(r.split()) == 16 for r in rows)
    rows = (tmp_path / "s" / "depth" / "source_intrinsics.txt").read_text().splitlines()
    assert len(rows) == 4 and all(len(r.split()) == 9 for r in rows)


def test_video_depth_reads_the_way_the_release_reads_it(tmp_path):
    """1.5 decodes depth.mp4 with OpenCV (BGR): q = (channel 2 << 8) | channel 1."""
    import cv2

    scene = make_scene("video", frames=5)
    write_scene(tmp_path / "v", scene)
    lo, hi = (float(v) for v in (tmp_path / "v" / "depth" / "metadata.txt").read_text().split())
    cap = cv2.VideoCapture(str(tmp_path / "v" / "depth" / "depth.mp4"))
    q = []
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        q.append((bgr[..., 2].astype(np.uint16) << 8) | bgr[..., 1].astype(np.uint16))
    cap.release()
    q, want = np.stack(q), sf.encode_depth(scene.depth, lo, hi)
    np.testing.assert_array_equal(q, want)
    cap = cv2.VideoCapture(str(tmp_path / "v" / "input" / "video.mp4"))
    ok, bgr = cap.read()
    cap.release()
    np.testing.assert_array_equal(bgr[..., ::-1], scene.views[0])


def test_release_scene_json_and_video_without_depth(tmp_path):
    """A 1.5 scene.json (no "geometry" key) loads as geometry-encoder; a 1.5 video scene without
    depth/ loads with no geometry and says why it cannot be rendered yet."""
    write_scene(tmp_path / "i", make_scene("image", 1, frames=21, valid=19))
    release = {"output_id": "image_example_00", "kind": "image", "views": 1, "frames": 21, "valid_frames": 19,
               "fps": 15.0, "resolution": [H, W], "target_intrinsics": "estimated_source_view_00_fixed",
               "depth_encoding": "uint16_minmax_v1"}
    (tmp_path / "i" / "scene.json").write_text(json.dumps(release, indent=2))
    scene = load_scene(tmp_path / "i")
    assert scene.geometry == "geometry-encoder" and scene.target_intrinsics == "estimated_source_view_00_fixed"
    assert scene.frames == 21 and scene.valid_frames == 19 and scene.provenance == {}

    video = make_scene("video", frames=5, depth=None, source_K=None, source_w2c=None, geometry="geometry-encoder")
    write_scene(tmp_path / "v", video)
    assert not os.path.exists(tmp_path / "v" / "depth")
    back = load_scene(tmp_path / "v")
    assert back.depth is None and back.geometry == "geometry-encoder"
    np.testing.assert_array_equal(back.views, video.views)
    with pytest.raises(SceneError, match="issue 11"):
        scene_reference(back)


def test_padded_frame_count_matches_the_release_examples():
    assert padded_frame_count(139) == 141 and padded_frame_count(130) == 141  # 1.5's image examples
    for v in range(1, 200):  # the smallest whole-block length 12 b - 3 that holds v frames
        assert padded_frame_count(v) == next(12 * b - 3 for b in range(1, 100) if 12 * b - 3 >= v)


def _json_edit(**changes):
    def edit(root):
        p = root / "scene.json"
        meta = json.loads(p.read_text())
        for k, v in changes.items():
            if v is _DROP:
                meta.pop(k)
            else:
                meta[k] = v
        p.write_text(json.dumps(meta))
    return edit


_DROP = object()


def _write(rel: str, text: str):
    def edit(root):
        (root / rel).write_text(text)
    return edit


def _lines(rel: str, fn):
    def edit(root):
        rows = [[float(x) for x in r.split()] for r in (root / rel).read_text().splitlines()]
        (root / rel).write_text("\n".join(" ".join(f"{x:.9g}" for x in r) for r in fn(rows)) + "\n")
    return edit


def _png(rel: str, array):
    def edit(root):
        Image.fromarray(array).save(root / rel)
    return edit


def _remove(rel: str):
    def edit(root):
        target = root / rel
        if target.is_dir():
            import shutil

            shutil.rmtree(target)
        else:
            target.unlink()
    return edit


def _set(rows, i, j, value):
    rows[i][j] = value
    return rows


CORRUPTIONS = {
    "no scene.json": (_remove("scene.json"), "scene.json: no such file"),
    "scene.json not JSON": (_write("scene.json", "{oops"), "scene.json: cannot read scene JSON"),
    "scene.json a list": (_write("scene.json", "[]"), "scene.json: top level: expected a JSON object"),
    "missing frames": (_json_edit(frames=_DROP), "scene.json: field 'frames': expected an integer >= 1, found no such"),
    "bad kind": (_json_edit(kind="panorama"), "scene.json: field 'kind'"),
    "two views": (_json_edit(views=2), "scene.json: field 'views': expected 1 or 4"),
    "views a string": (_json_edit(views="4"), "scene.json: field 'views': expected an integer"),
    "frames a float": (_json_edit(frames=9.0), "scene.json: field 'frames'"),
    "valid > frames": (_json_edit(valid_frames=10), "scene.json: field 'valid_frames': expected an integer in [1, "),
    "negative fps": (_json_edit(fps=-15), "scene.json: field 'fps'"),
    "bad resolution": (_json_edit(resolution=[H]), "scene.json: field 'resolution'"),
    "wrong resolution": (_json_edit(resolution=[H, W + 16]), "view_00.png: expected 32x64"),
    "bad encoding": (_json_edit(depth_encoding="float32"), "scene.json: field 'depth_encoding'"),
    "bad geometry": (_json_edit(geometry="lidar"), "scene.json: field 'geometry'"),
    "missing output_id": (_json_edit(output_id=_DROP), "scene.json: field 'output_id'"),
    "missing view": (_remove("input/view_02.png"), "input: expected view_00.png, view_01.png, view_02.png"),
    "extra view": (_png("input/view_04.png", np.zeros((H, W, 3), np.uint8)), "input: expected view_00.png"),
    "view size": (_png("input/view_01.png", np.zeros((H, W - 1, 3), np.uint8)), "view_01.png: expected 32x48"),
    "view not an image": (_write("input/view_00.png", "not a png"), "view_00.png: cannot read image"),
    "view 16-bit": (_png("input/view_03.png", np.ones((H, W), np.uint16)), "view_03.png: expected an 8-bit RGB"),
    "no targets": (_remove("input/target_tcw.txt"), "target_tcw.txt: no such file"),
    "too few targets": (_lines("input/target_tcw.txt", lambda r: r[:8]), "target_tcw.txt: expected 9 matrices"),
    "target scaled": (_lines("input/target_tcw.txt", lambda r: _set(r, 2, 0, 2.0)),
                      "target_tcw.txt:3: matrix 2: not a rigid transform"),
    "target NaN": (_lines("input/target_tcw.txt", lambda r: _set(r, 4, 3, float("nan"))),
                   "target_tcw.txt:5: matrix 4: expected finite"),
    "target mirror": (_lines("input/target_tcw.txt", lambda r: [[-x for x in row[:4]] + row[4:] for row in r]),
                      "target_tcw.txt:1: matrix 0: expected a proper rotation"),
    "target text": (_write("input/target_tcw.txt", "1 0 0 x\n"), "target_tcw.txt:1: expected numbers, found 'x'"),
    "target bottom row": (_lines("input/target_tcw.txt", lambda r: _set(r, 1, 15, 2.0)),
                          "target_tcw.txt:2: matrix 1: expected last row 0 0 0 1"),
    "prompt not UTF-8": (lambda root: (root / "input" / "prompt.txt").write_bytes(b"\xff\xfe\xfa"),
                         "prompt.txt: cannot read the prompt"),
    "no depth folder": (_remove("depth"), "depth: expected the depth folder of an image scene"),
    "no metadata": (_remove("depth/metadata.txt"), "metadata.txt: no such file"),
    "metadata one number": (_write("depth/metadata.txt", "5\n"), "metadata.txt: expected two finite numbers"),
    "metadata NaN": (_write("depth/metadata.txt", "0 nan\n"), "metadata.txt: expected two finite numbers"),
    "metadata min > max": (_write("depth/metadata.txt", "3 1\n"), "metadata.txt: expected 0 <= min < max"),
    "metadata min = max": (_write("depth/metadata.txt", "2 2\n"), "metadata.txt: expected 0 <= min < max"),
    "metadata negative": (_write("depth/metadata.txt", "-1 4\n"), "metadata.txt: expected 0 <= min < max"),
    "missing depth": (_remove("depth/depth_02.png"), "depth_02.png: no such file"),
    "depth 8-bit": (_png("depth/depth_01.png", np.ones((H, W), np.uint8)), "depth_01.png: expected a single-channel"),
    "depth RGB": (_png("depth/depth_01.png", np.ones((H, W, 3), np.uint8)), "depth_01.png: expected a single-channel"),
    "depth size": (_png("depth/depth_03.png", np.ones((H + 1, W), np.uint16)), "depth_03.png: expected 32x48"),
    "depth all zero": (_png("depth/depth_02.png", np.zeros((H, W), np.uint16)),
                       "depth_02.png: view 2: expected some positive depth"),
    "no intrinsics": (_remove("depth/source_intrinsics.txt"), "source_intrinsics.txt: no such file"),
    "intrinsics count": (_lines("depth/source_intrinsics.txt", lambda r: r[:3]),
                         "source_intrinsics.txt: expected 4 matrices"),
    "zero focal": (_lines("depth/source_intrinsics.txt", lambda r: _set(r, 1, 0, 0.0)),
                   "source_intrinsics.txt:2: matrix 1: expected focal lengths fx, fy > 0"),
    "tiny focal": (_lines("depth/source_intrinsics.txt", lambda r: _set(r, 0, 0, 0.5)),
                   "source_intrinsics.txt: matrix 0: expected a horizontal field of view"),
    "centre outside": (_lines("depth/source_intrinsics.txt", lambda r: _set(r, 3, 5, 400.0)),
                       "source_intrinsics.txt: matrix 3: expected the principal point inside"),
    "intrinsics row": (_lines("depth/source_intrinsics.txt", lambda r: _set(r, 2, 6, 1.0)),
                       "source_intrinsics.txt:3: matrix 2: expected [[fx, s, cx]"),
    "no source poses": (_remove("depth/source_tcw.txt"), "source_tcw.txt: no such file"),
    "source pose count": (_lines("depth/source_tcw.txt", lambda r: r + r[:1]), "source_tcw.txt: expected 4 matrices"),
    "source pose sheared": (_lines("depth/source_tcw.txt", lambda r: _set(r, 3, 1, 0.3)),
                            "source_tcw.txt:4: matrix 3: not a rigid transform"),
}


PIXEL_LEVEL = {"view 16-bit", "prompt not UTF-8", "depth 8-bit", "depth RGB", "depth all zero"}  # load only


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_every_corruption_names_its_file_and_field(tmp_path, name):
    edit, message = CORRUPTIONS[name]
    write_scene(tmp_path / "s", make_scene("image", 4))
    check_scene_folder(tmp_path / "s")
    edit(tmp_path / "s")
    with pytest.raises(SceneError) as e:
        load_scene(tmp_path / "s")
    text = str(e.value)
    assert message in text and "\n" not in text, text
    assert isinstance(e.value, InputError)
    # the cheap check (no pixel decoded) catches all but pixel-level faults, naming the same file
    if name in PIXEL_LEVEL:
        check_scene_folder(tmp_path / "s")
    else:
        with pytest.raises(SceneError) as e:
            check_scene_folder(tmp_path / "s")
        assert message.split(":")[0] in str(e.value) and "\n" not in str(e.value), str(e.value)


def test_video_corruptions(tmp_path):
    scene = make_scene("video", frames=5)
    write_scene(tmp_path / "v", scene)
    # a depth video re-encoded lossily (blue no longer 0)
    rgb = np.zeros((5, H, W, 3), np.uint8)
    rgb[..., 2] = 7
    sf.write_lossless_video(str(tmp_path / "v" / "depth" / "depth.mp4"), rgb, 15)
    with pytest.raises(SceneError, match=r"depth\.mp4: frame 0: expected blue 0 .* re-encoded lossily"):
        load_scene(tmp_path / "v")
    # a source video with a frame missing
    write_scene(tmp_path / "v", scene)
    sf.write_lossless_video(str(tmp_path / "v" / "input" / "video.mp4"), scene.views[:4], 15)
    with pytest.raises(SceneError, match=r"video\.mp4: expected 5 frames \(views \(scene\.json\)\), found 4"):
        load_scene(tmp_path / "v")
    # video views must equal frames
    write_scene(tmp_path / "v", scene)
    _json_edit(views=4)(tmp_path / "v")
    with pytest.raises(SceneError, match=r"scene\.json: field 'views': expected one per frame"):
        load_scene(tmp_path / "v")
    with pytest.raises(SceneError, match="expected a scene folder, found nothing"):
        load_scene(tmp_path / "nothing")


@pytest.mark.parametrize("change, message", [
    (dict(kind="panorama"), "kind"),
    (dict(views=np.zeros((2, H, W, 3), np.uint8)), "views: expected 1 or 4 views"),
    (dict(views=np.zeros((4, H, W, 3), np.float32)), "views: expected a non-empty (V, H, W, 3) uint8"),
    (dict(depth=np.ones((4, H, W), np.float64)), "depth: expected (4, 32, 48) float32"),
    (dict(depth=np.full((4, H, W), np.nan, np.float32)), "depth: expected finite values"),
    (dict(depth=None), "depth / source_K / source_w2c: expected all three or none"),
    (dict(source_w2c=np.ones((4, 4, 4), np.float32)), "source_w2c: matrix 0"),
    (dict(target_w2c=np.zeros((0, 4, 4), np.float32)), "target_w2c: expected (F, 4, 4) float32"),
    (dict(valid_frames=10), "valid_frames: expected an integer in [1, frames = 9]"),
    (dict(fps=float("inf")), "fps"),
    (dict(output_id="a/b"), "output_id"),
    (dict(geometry="lidar"), "geometry"),
])
def test_scene_checks_its_fields(change, message):
    import dataclasses

    scene = make_scene("image", 4)
    with pytest.raises(SceneError) as e:
        dataclasses.replace(scene, **change)
    assert message in str(e.value), str(e.value)


def test_write_is_staged(tmp_path, monkeypatch):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="holds files this job does not write"):
        write_scene(tmp_path / "mine", make_scene())
    assert os.listdir(tmp_path / "mine") == ["notes.txt"]
    # a failure half-way leaves nothing: no target, no staging folder
    video = make_scene("video", frames=5)

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(sf, "write_lossless_video", boom)
    with pytest.raises(OSError, match="disk full"):
        write_scene(tmp_path / "v", video)
    assert sorted(os.listdir(tmp_path)) == ["mine"]
    monkeypatch.undo()
    # a scene replaces a previous scene whole
    write_scene(tmp_path / "s", make_scene("image", 4))
    write_scene(tmp_path / "s", make_scene("image", 1, seed=3, prompt=""))
    assert sorted(os.listdir(tmp_path / "s" / "input")) == ["target_tcw.txt", "view_00.png"]
    assert load_scene(tmp_path / "s").prompt == ""


def test_scene_reference_for_navigate(tmp_path):
    one = make_scene("image", 1, frames=21, valid=19)
    frames, geo = scene_reference(one)
    assert frames.shape == (21, H, W, 3) and (frames == one.views[0]).all()  # a static clip
    assert geo.depth.shape == (21, H, W) and geo.K.shape == (21, 3, 3) and geo.w2c.shape == (21, 4, 4)
    assert geo.kind == "measured" and (geo.depth == one.depth[0]).all()
    video = make_scene("video", frames=5, geometry="planar-prior")
    frames, geo = scene_reference(video)
    np.testing.assert_array_equal(frames, video.views)
    np.testing.assert_array_equal(geo.w2c, video.source_w2c)
    assert geo.kind == "planar-prior"
    four = make_scene("image", 4, frames=21)
    frames, geo = scene_reference(four, num_frames=21)  # the views themselves, fused per target by the session
    np.testing.assert_array_equal(frames, four.views)
    np.testing.assert_array_equal(geo.w2c, four.source_w2c)
    assert geo.depth.shape == (4, H, W) and scene_source_type(four) == "multi-image"
    assert (scene_source_type(one), scene_source_type(video)) == ("image", "video")


def test_resize_scene_moves_intrinsics_and_depth_with_the_pixels():
    scene = make_scene("image", 4)
    small = resize_scene(scene, (16, 24))
    assert small.views.shape == (4, 16, 24, 3) and small.resolution == (16, 24)
    K = scene.source_K[0].astype(np.float64)
    # pixel centres at integer coordinates: u -> 0.5 (u + 0.5) - 0.5
    want = [[K[0, 0] / 2, 0, (K[0, 2] + 0.5) / 2 - 0.5], [0, K[1, 1] / 2, (K[1, 2] + 0.5) / 2 - 0.5], [0, 0, 1]]
    np.testing.assert_allclose(small.source_K[0], want, rtol=1e-6)
    np.testing.assert_array_equal(small.depth, scene.depth[:, 1::2, 1::2])  # nearest source pixel 2 i + 1
    np.testing.assert_array_equal(small.source_w2c, scene.source_w2c)
    np.testing.assert_array_equal(small.target_w2c, scene.target_w2c)
    assert resize_scene(scene, (H, W)) is scene


def test_scene_reference_pads_a_short_video_and_is_scene_folder(tmp_path):
    video = make_scene("video", frames=5)
    frames, geo = scene_reference(video, num_frames=9)
    np.testing.assert_array_equal(frames[:5], video.views)
    assert (frames[5:] == video.views[4]).all() and (geo.depth[5:] == video.depth[4]).all()
    write_scene(tmp_path / "v", video)
    assert is_scene_folder(tmp_path / "v") and not is_scene_folder(tmp_path / "v" / "input")
    assert check_scene_folder(tmp_path / "v")["views"] == 5


# camera lines from the 1.5 release's examples (multiview_example_00 source_tcw.txt and
# source_intrinsics.txt's first line, image_example_00 target_tcw.txt's first lines): real files
# our checks must accept (float32 text, rotations orthonormal to ~1e-7, identities with 1e-20 noise)
RELEASE_SOURCE_TCW = "".join([
    "1 -2.49568404e-20 8.91901356e-21 0 8.57804309e-21 1 9.23964137e-21 0 "
    "-3.9689289e-20 1.78416412e-20 1 -5.56797449e-19 0 0 0 1\n",
    "-0.213095084 0.192790627 -0.957821727 2.32255006 -0.141728908 0.963869691 0.225539669 -0.370830894 "
    "0.966697216 0.18381241 -0.178071931 2.50790286 0 0 0 1\n",
    "-0.742409348 -0.112085581 0.660503626 -1.4321847 0.162756726 0.926193416 0.340111762 -0.700765729 "
    "-0.64987576 0.360003561 -0.669372022 3.46000981 0 0 0 1\n",
    "0.797280252 -0.15165703 0.584246755 -1.38161397 0.13731955 0.988113523 0.0691012666 -0.0139760887 "
    "-0.587781787 0.0251354352 0.808628976 0.139540866 0 0 0 1\n",
])
RELEASE_K = "534.487305 0 416 0 534.246582 240 0 0 1\n"
RELEASE_TARGET_TCW = "".join([
    "0.93178755 -0.0471493788 -0.359929085 0.848658562 0.0527247861 0.998592913 0.00568239903 0.194300115 "
    "0.359154701 -0.0242719725 0.932962358 0.927227855 0 0 0 1\n",
    "0.93715626 -0.0462330431 -0.345833272 0.844530582 0.0509807095 0.998688877 0.00463942112 0.194217891 "
    "0.345165342 -0.0219786875 0.938284516 0.894059181 0 0 0 1\n",
    "0.942311525 -0.045282159 -0.331660271 0.839598775 0.0492523126 0.998780012 0.00357024092 0.194249809 "
    "0.331093967 -0.0196993146 0.943392158 0.861237228 0 0 0 1\n",
])


def test_release_camera_files_load(tmp_path):
    root = tmp_path / "multiview_example_00"
    (root / "input").mkdir(parents=True)
    (root / "depth").mkdir()
    meta = {"output_id": "multiview_example_00", "kind": "image", "views": 4, "frames": 3, "valid_frames": 3,
            "fps": 15.0, "resolution": [480, 832], "target_intrinsics": "estimated_source_view_00_fixed",
            "depth_encoding": "uint16_minmax_v1"}
    (root / "scene.json").write_text(json.dumps(meta, indent=2))
    q = np.full((480, 832), 20000, np.uint16)
    for i in range(4):
        Image.fromarray(np.full((480, 832, 3), 40 * i, np.uint8)).save(root / "input" / f"view_{i:02d}.png")
        Image.fromarray(q).save(root / "depth" / f"depth_{i:02d}.png")
    (root / "input" / "target_tcw.txt").write_text(RELEASE_TARGET_TCW)
    (root / "depth" / "source_tcw.txt").write_text(RELEASE_SOURCE_TCW)
    (root / "depth" / "source_intrinsics.txt").write_text(RELEASE_K * 4)
    (root / "depth" / "metadata.txt").write_text("0 53.3735733\n")  # image_example_00's range
    check_scene_folder(root)
    scene = load_scene(root)
    assert scene.geometry == "geometry-encoder" and scene.prompt == "" and scene.frames == 3
    np.testing.assert_allclose(scene.depth, 20000 / 65535 * 53.3735733, rtol=1e-6)
    np.testing.assert_allclose(scene.target_K, [[534.487305, 0, 416], [0, 534.246582, 240], [0, 0, 1]])
    assert abs(scene.source_w2c[1, 0, 3] - 2.32255006) < 1e-7


def test_scene_as_navigate_reference(tmp_path):
    """probe_scene / scene_clip: what render.load_reference and navigate's validate need of a scene
    given where a video is accepted; the scene's target_tcw.txt is a per-frame w2c file."""
    from star_jax.geometry import load_w2c_file
    from star_jax.io.scene_folder import probe_scene, scene_clip

    scene = make_scene("image", 1, frames=21, valid=19)
    write_scene(tmp_path / "s", scene)
    entry, probe = probe_scene(tmp_path / "s")
    assert entry.video == str(tmp_path / "s") and entry.caption == scene.prompt
    assert (probe.num_frames, probe.fps, probe.size_hw) == (21, 15.0, (H, W))
    clip, geo = scene_clip(load_scene(tmp_path / "s"), entry.video, (16, 32))
    assert clip.frames.shape == (21, 16, 32, 3) and geo.depth.shape == (21, 16, 32) and clip.fps == 15.0
    assert clip.num_distinct_frames == 1 and clip.provenance()["source_size_hw"] == [H, W]
    np.testing.assert_allclose(load_w2c_file(tmp_path / "s" / "input" / "target_tcw.txt"), scene.target_w2c,
                               atol=1e-7)
    video = make_scene("video", frames=5)
    write_scene(tmp_path / "v", video)
    clip, geo = scene_clip(load_scene(tmp_path / "v"), str(tmp_path / "v"))
    np.testing.assert_array_equal(clip.frames, video.views)
    assert list(clip.source_indices) == [0, 1, 2, 3, 4] and probe_scene(tmp_path / "v")[1].num_frames == 5
