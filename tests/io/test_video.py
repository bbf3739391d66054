"""Real-video ingest on the shared clip, error paths, and atomic writers."""

import os

import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.video import (
    VideoError,
    VideoProbe,
    VideoSpec,
    crop_info,
    iter_video,
    load_video,
    probe_video,
    snap_frame_count,
)


def video_path(shared_data):
    return os.path.join(shared_data, "reference_videos", "coffee_martini.mp4")


def test_snap_frame_count():
    assert [snap_frame_count(n) for n in (1, 4, 5, 8, 9, 149, 150)] == [1, 1, 5, 5, 9, 149, 149]


def test_coffee_martini_ingest(shared_data):
    clip = load_video(video_path(shared_data), VideoSpec(height=480, width=832, fps=15))
    T, H, W, C = clip.frames.shape
    assert (H, W, C) == (480, 832, 3) and clip.frames.dtype == np.uint8
    assert (T - 1) % 4 == 0 and T == 149  # 300 frames at 30 fps -> 150 at 15 fps -> 4k+1
    assert clip.source_size == (760, 1352) and clip.source_fps == 30
    np.testing.assert_array_equal(clip.source_indices, np.arange(0, 2 * T, 2))
    # the crop keeps the full height: scale 480/760, horizontal centre crop
    assert clip.crop.offset[1] == 0 and clip.crop.offset[0] == (round(1352 * 480 / 760) - 832) // 2
    # content check: the resized first frame equals a direct PIL resize + crop of the decoded frame
    from PIL import Image

    _, frames = iter_video(video_path(shared_data))
    _, raw0 = next(frames)
    rw = round(1352 * 480 / 760)
    direct = np.asarray(Image.fromarray(raw0).resize((rw, 480), Image.Resampling.LANCZOS))
    ox = (rw - 832) // 2
    np.testing.assert_array_equal(clip.frames[0], direct[:, ox : ox + 832])
    assert clip.frames.std() > 20  # a real image, not a blank


def test_fps_upsampling_and_max_frames(shared_data):
    clip = load_video(video_path(shared_data), VideoSpec(height=64, width=112, fps=45, max_frames=10))
    assert clip.frames.shape[0] == 9  # 10 capped, snapped to 4k+1
    np.testing.assert_array_equal(clip.source_indices, [0, 1, 1, 2, 3, 3, 4, 5, 5])
    np.testing.assert_array_equal(clip.frames[1], clip.frames[2])


def test_bad_inputs_raise_named_errors(tmp_path):
    with pytest.raises(VideoError, match="no such video file"):
        load_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"definitely not a video" * 100)
    with pytest.raises(VideoError, match="junk.mp4"):
        load_video(junk)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(VideoError, match=r"empty.mp4: video file is empty \(0 bytes\)"):
        load_video(empty)
    with pytest.raises(VideoError, match="multiples of 16"):
        VideoSpec(height=470, width=832)
    with pytest.raises(VideoError, match="expected a video file, found a folder"):
        load_video(tmp_path)
    for bad in (junk, empty, tmp_path / "missing.mp4", tmp_path):  # the cheap probe says the same
        with pytest.raises(VideoError, match=os.path.basename(bad)):
            probe_video(bad)


def test_truncated_video_is_named(shared_data, tmp_path):
    data = open(video_path(shared_data), "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 50])  # header only: moov atom at the end is missing
    with pytest.raises(VideoError, match="cut.mp4"):
        load_video(cut, VideoSpec(height=64, width=112))


def test_damaged_frame_in_the_middle_is_named(tmp_path):
    """Bytes overwritten mid-file: the decoder conceals the damage and used to return a glitched clip."""
    frames = np.random.default_rng(0).integers(0, 255, size=(30, 64, 96, 3), dtype=np.uint8)
    io.write_mp4(tmp_path / "ok.mp4", frames, fps=15)
    data = bytearray((tmp_path / "ok.mp4").read_bytes())
    data[len(data) // 3 : len(data) // 3 + 2000] = np.random.default_rng(1).integers(0, 255, 2000, np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(bytes(data))
    assert load_video(tmp_path / "ok.mp4", VideoSpec(height=64, width=96, fps=None)).source_num_frames == 30
    with pytest.raises(VideoError, match=r"bad.mp4: frame \d+ is damaged \(the decoder flagged corrupt data\)"):
        load_video(tmp_path / "bad.mp4", VideoSpec(height=64, width=96, fps=None))


def test_mp4_round_trip_and_atomic_failure(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, size=(1, 32, 48, 3), dtype=np.uint8)
    frames = np.repeat(base, 9, axis=0)
    frames[:, :, :8] = np.arange(9, dtype=np.uint8)[:, None, None, None] * 25  # a moving bar
    path = tmp_path / "out.mp4"
    io.write_mp4(path, frames, fps=15)
    clip = load_video(path, VideoSpec(height=32, width=48, fps=None))
    assert clip.frames.shape == (9, 32, 48, 3) and clip.fps == 15
    # lossy codec: the flat bar's level per frame survives
    np.testing.assert_allclose(clip.frames[:, 8:24, 2:6].mean(axis=(1, 2, 3)), np.arange(9) * 25, atol=4)
    with pytest.raises(ValueError, match="even"):
        io.write_mp4(tmp_path / "odd.mp4", frames[:, :31], fps=15)
    assert sorted(os.listdir(tmp_path)) == ["out.mp4"]  # nothing half-written left behind
    assert (os.stat(path).st_mode & 0o777) == 0o666 & ~_umask()


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


def test_atomic_path_removes_temp_on_error(tmp_path):
    target = tmp_path / "x.json"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            open(tmp, "w").write("partial")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_crop_info_cover():
    info = crop_info((760, 1352), (480, 832))
    assert info.scale[1] == pytest.approx(480 / 760)
    info = crop_info((100, 100), (32, 64))  # wider target: width decides, rows cropped
    assert info.scale == (0.64, 0.64) and info.offset == (0, 16)


def _clip(path, n=12, hw=(48, 80), fps=15):
    t = np.arange(n)[:, None, None, None]
    y, x = np.mgrid[: hw[0], : hw[1]]
    frames = (x[None, :, :, None] * 3 + y[None, :, :, None] * 2 + t * 9 + np.array([0, 80, 160])) % 256
    io.write_mp4(path, frames.astype(np.uint8), fps)
    return str(path)


@pytest.mark.parametrize("field, value, msg", [
    ("fps", float("nan"), r"VideoSpec.fps: expected a positive finite frame rate or None, found nan"),
    ("fps", 0.0, r"VideoSpec.fps: .* found 0.0"),
    ("fps", float("inf"), r"VideoSpec.fps: .* found inf"),
    ("max_frames", 0, r"VideoSpec.max_frames: expected None or >= 1, found 0"),
    ("frame_multiple", 0, r"VideoSpec.frame_multiple: expected >= 1, found 0"),
    ("start_time", -1.0, r"VideoSpec.start_time: expected a finite number of seconds >= 0, found -1.0"),
    ("start_time", float("nan"), r"VideoSpec.start_time: .* found nan"),
    ("min_source_side", -1, r"VideoSpec.min_source_side: expected None or >= 0, found -1"),
])
def test_video_spec_refuses_bad_fields(field, value, msg):
    with pytest.raises(VideoError, match=msg):
        VideoSpec(**{field: value})


def test_tiny_source_is_refused_not_upscaled(tmp_path):
    """A 2x2 video used to be upscaled 240x into a 480x832 clip with exit code 0."""
    tiny = _clip(tmp_path / "tiny.mp4", n=5, hw=(2, 2))
    msg = r"tiny.mp4: source frames are 2x2 \(HxW\); a 480x832 target needs a shorter side of at least 64 px"
    with pytest.raises(VideoError, match=msg):
        load_video(tiny, VideoSpec(height=480, width=832))
    with pytest.raises(VideoError, match=msg):
        probe_video(tiny, VideoSpec(height=480, width=832))
    assert probe_video(tiny) == VideoProbe(5, 15.0, (2, 2))  # without a spec the probe only reads
    # the default floor: min(64, a quarter of the target's shorter side), configurable, 0 = off
    assert VideoSpec(height=480, width=832).min_side == 64 and VideoSpec(height=32, width=64).min_side == 8
    assert VideoSpec(height=32, width=64, min_source_side=3).min_side == 3
    with pytest.raises(VideoError, match="needs a shorter side of at least 8 px"):
        load_video(tiny, VideoSpec(height=32, width=64))
    clip = load_video(tiny, VideoSpec(height=32, width=64, min_source_side=0))
    assert clip.frames.shape == (5, 32, 64, 3) and clip.source_size == (2, 2)
    # a source exactly at the floor passes
    small = _clip(tmp_path / "small.mp4", n=5, hw=(8, 12))
    assert load_video(small, VideoSpec(height=32, width=64)).frames.shape == (5, 32, 64, 3)


def test_probe_reads_header_and_first_frame_only(tmp_path):
    path = _clip(tmp_path / "c.mp4", n=12)
    probe = probe_video(path, VideoSpec(height=32, width=64))
    assert probe == VideoProbe(num_frames=12, fps=15.0, size_hw=(48, 80))
    n, fps, size = probe  # unpacks as (frames, fps, size)
    clip = load_video(path, VideoSpec(height=32, width=64, fps=None))
    assert (clip.source_num_frames, clip.source_fps, clip.source_size) == (n, fps, size)
    with pytest.raises(VideoError, match=r"c.mp4: start_time 1 s is past the end of the video \(12 frames at 15 fps = 0.8 s\)"):
        probe_video(path, VideoSpec(height=32, width=64, start_time=1.0))
    with pytest.raises(VideoError, match=r"c.mp4: start_time 1 s is past the end of the video \(12 frames at 15 fps = 0.8 s\)"):
        load_video(path, VideoSpec(height=32, width=64, start_time=1.0))


def test_zero_frame_video_is_named(tmp_path):
    import av

    path = str(tmp_path / "zero.avi")
    with av.open(path, "w") as c:  # a valid container and stream that hold no frame
        s = c.add_stream("mjpeg", rate=15)
        s.width, s.height, s.pix_fmt = 32, 32, "yuvj420p"
        c.start_encoding()
    assert os.path.getsize(path) > 0
    for f in (probe_video, load_video):
        with pytest.raises(VideoError, match=r"zero.avi: expected at least one decodable frame, found none"):
            f(path)


@pytest.mark.parametrize("rate", [None, 0])
def test_stream_without_frame_rate_is_named(tmp_path, monkeypatch, rate):
    """A stream whose header has no usable rate (0 or missing) is refused before decoding."""
    import types
    from fractions import Fraction

    import av

    closed = []
    stream = types.SimpleNamespace(average_rate=None if rate is None else Fraction(rate),
                                   guessed_rate=None, base_rate=None, frames=0)
    fake = types.SimpleNamespace(streams=types.SimpleNamespace(video=[stream]), close=lambda: closed.append(1))
    monkeypatch.setattr(av, "open", lambda p: fake)
    path = tmp_path / "norate.mp4"
    path.write_bytes(b"x")
    with pytest.raises(VideoError, match=r"norate.mp4: expected a positive frame rate in the video stream, found"):
        probe_video(path)
    assert closed == [1]


def test_provenance_records_the_source(tmp_path):
    path = _clip(tmp_path / "p.mp4", n=12, hw=(48, 80), fps=15)
    clip = load_video(path, VideoSpec(height=32, width=64, fps=30))  # 2x upsampled: each frame twice
    assert clip.frames.shape[0] == 21 and clip.num_distinct_frames == 11  # 23 output frames snapped to 21
    np.testing.assert_array_equal(clip.source_indices[:5], [0, 1, 1, 2, 2])
    assert clip.provenance() == {
        "source": path, "source_size_hw": [48, 80], "source_fps": 15.0, "source_num_frames": 12,
        "frames": 21, "size_hw": [32, 64], "fps": 30.0, "distinct_reference_frames": 11,
        "source_first_frame": 0, "source_last_frame": 10,
    }
    import json

    json.dumps(clip.provenance())  # JSON-ready
    # stopped early by max_frames: the count comes from the header, not from the frames read
    early = load_video(path, VideoSpec(height=32, width=64, fps=None, max_frames=5))
    assert early.frames.shape[0] == 5 and early.source_num_frames == 12
    late = load_video(path, VideoSpec(height=32, width=64, fps=None, start_time=0.4))
    np.testing.assert_array_equal(late.source_indices, [6, 7, 8, 9, 10])
    assert late.provenance()["source_first_frame"] == 6 and late.source_num_frames == 12
