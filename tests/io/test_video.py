"""Real-video ingest on the shared clip, error paths, and atomic writers."""

import os

import numpy as np
import pytest

from star_jax.io import files as io
from star_jax.io.video import VideoError, VideoSpec, crop_info, iter_video, load_video, snap_frame_count


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
    with pytest.raises(VideoError, match="empty.mp4"):
        load_video(empty)
    with pytest.raises(VideoError, match="multiples of 16"):
        VideoSpec(height=470, width=832)


def test_truncated_video_is_named(shared_data, tmp_path):
    data = open(video_path(shared_data), "rb").read()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: len(data) // 50])  # header only: moov atom at the end is missing
    with pytest.raises(VideoError, match="cut.mp4"):
        load_video(cut, VideoSpec(height=64, width=112))


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
