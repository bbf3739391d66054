"""The one-page report: a PNG of the set size whose panels hold something, with any subset of
metrics (fake camera / flow metrics with the names and details helpers A and B produce), failed
metrics named in the table, the metrics.json form accepted, and bad input refused before writing."""

import json
import os

import numpy as np
import pytest
from PIL import Image

from star_jax.errors import InputError
from star_jax.evaluation.ground_truth import ground_truth_metrics
from star_jax.evaluation.report import SIZE_IN, DPI, as_metrics, table_lines, write_report
from star_jax.evaluation.worldscore import Metric, aggregate

T, H, W = 8, 32, 48


@pytest.fixture(scope="module")
def clip():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:H, :W]
    truth = np.stack([np.stack([(4 * xx + 9 * i) % 256, (6 * yy) % 256, (xx + yy) % 256], -1)
                      for i in range(T)]).astype(np.uint8)
    frames = np.clip(truth + rng.normal(0, 15, truth.shape), 0, 255).astype(np.uint8)
    masks = np.ones((T, H, W), bool)
    masks[:, :, :12] = False
    renders = np.where(masks[..., None], truth, 0).astype(np.uint8)
    return frames, truth, renders, masks


def _camera_metrics():
    rng = np.random.default_rng(1)
    a = np.linspace(0, np.pi, T)
    commanded = np.stack([np.sin(a), 0.1 * a, 1 - np.cos(a)], -1)
    return [Metric("camera_control", {"rotation_deg": 2.5, "translation": 0.1}, 0.8, unit="deg / path units",
                   details={"commanded_positions": commanded.tolist(),
                            "recovered_positions": (commanded + rng.normal(0, 0.05, commanded.shape)).tolist(),
                            "per_frame_rotation_deg": rng.random(T).tolist(),
                            "per_frame_translation": (0.1 * rng.random(T)).tolist()}),
            Metric.failed("3d_consistency", "tracking lost at frame 5: 7 points tracked, need 20")]


def _flow_metrics():
    rng = np.random.default_rng(2)
    return [Metric("photometric_consistency", 0.5, 0.58, unit="px", details={"per_pair": rng.random(T - 1).tolist()}),
            Metric("motion_magnitude", 2.0, 0.41, unit="px", details={"per_pair_median": rng.random(T - 1).tolist()}),
            Metric("motion_smoothness", {"mse_worldscore": 20.0, "mse": 30.0, "ssim": 0.95}, 0.7,
                   details={"per_triplet": {"mse_worldscore": (30 * rng.random(T // 2 - 1)).tolist(),
                                            "ssim": (0.9 + 0.1 * rng.random(T // 2 - 1)).tolist()}})]


def _read(path):
    return np.asarray(Image.open(path).convert("RGB")).astype(np.float64)


def _coloured(img, box):
    """Pixels of strong colour (lines, not black / grey text) in a panel box."""
    x0, y0, x1, y1 = box
    patch = img[y0:y1, x0:x1]
    return int(np.count_nonzero(patch.max(-1) - patch.min(-1) > 80))


def test_full_report_has_the_size_and_no_blank_panel(tmp_path, clip):
    frames, truth, renders, masks = clip
    ms = ground_truth_metrics(frames, truth, masks, renders) + _camera_metrics() + _flow_metrics()
    path = tmp_path / "report.png"
    boxes = write_report(path, ms, frames, truth=truth, renders=renders, masks=masks, title="test")
    img = _read(path)
    assert img.shape == (int(SIZE_IN[1] * DPI), int(SIZE_IN[0] * DPI), 3)
    assert set(boxes) == {"top view", "side view", "table", "vs ground truth", "camera", "flow", "smoothness",
                          "revisit", "frames"}
    for name, (x0, y0, x1, y1) in boxes.items():
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0], name
        assert img[y0:y1, x0:x1].std() > 8.0, f"panel {name} looks blank"
    for name in ("top view", "side view", "vs ground truth", "camera", "flow", "smoothness", "frames"):
        assert _coloured(img, boxes[name]) > 150, f"panel {name} draws no curve / image"
    # the strip holds three rows of frames: magenta holes in the render row
    x0, y0, x1, y1 = boxes["frames"]
    strip = img[y0:y1, x0:x1]
    assert np.count_nonzero((strip[..., 0] > 240) & (strip[..., 1] < 15) & (strip[..., 2] > 240)) > 100
    assert sorted(os.listdir(tmp_path)) == ["report.png"]  # written atomically: no temporary left


def test_without_camera_metrics_the_trajectory_says_so(tmp_path, clip):
    frames = clip[0]
    with_cam = write_report(tmp_path / "a.png", _camera_metrics() + _flow_metrics(), frames)
    without = write_report(tmp_path / "b.png", _flow_metrics(), frames)
    a, b = _read(tmp_path / "a.png"), _read(tmp_path / "b.png")
    assert _coloured(a, with_cam["top view"]) > 5 * max(1, _coloured(b, without["top view"]))
    assert _coloured(b, without["flow"]) > 150  # the rest is drawn as before


def test_the_metrics_json_form_is_accepted_and_the_table_names_failures(tmp_path, clip):
    frames = clip[0]
    ms = _camera_metrics() + _flow_metrics()
    content = json.loads(json.dumps({"aggregate": aggregate(ms), "metrics": {m.name: m.to_json() for m in ms},
                                     "seconds": {"total": 1.0}, "inputs": {}}))
    back, agg = as_metrics(content)
    assert [m.name for m in back] == [m.name for m in ms] and agg == content["aggregate"]
    assert not back[1].ok and back[1].reason == ms[1].reason
    boxes = write_report(tmp_path / "r.png", content, frames)
    assert _read(tmp_path / "r.png")[slice(*boxes["camera"][1::2]), slice(*boxes["camera"][0::2])].std() > 8
    lines = table_lines(back, agg)
    row = next(line for line in lines if line.startswith("3d_consistency"))
    assert "FAILED: tracking lost at frame 5" in row
    assert next(line for line in lines if line.startswith("camera_control")).split("|")[0].split()[-1] == "80.0"
    assert any(line.startswith("AGGREGATE") and f"{agg['score']:.2f}" in line for line in lines)
    assert any("not measured: object_control" in line for line in lines)


def test_no_metrics_at_all_still_writes_a_page(tmp_path, clip):
    wide = np.tile(clip[0][:2], (1, 1, 40, 1))  # 2 frames of 32x1920: the strip shrinks them
    boxes = write_report(tmp_path / "r.png", [], wide)
    assert _coloured(_read(tmp_path / "r.png"), boxes["frames"]) > 100
    assert table_lines([], aggregate([]))[0] == "no metrics"


def test_bad_inputs_raise_before_anything_is_written(tmp_path, clip):
    frames, truth, _, masks = clip
    cases = [({"masks": masks * np.uint8(2)}, r"report: masks: expected bool \(or 0 / 1\) .* values \[0, 2\]"),
             ({"truth": truth[:, :16]}, r"report: truth: expected the frames' shape"),
             ({"metrics": "psnr"}, "report: metrics: expected a list of Metric"),
             ({"metrics": [{"raw": 1.0}]}, r"report: metrics\[0\]: expected a Metric or a dict with a 'name'"),
             ({"frames": frames[..., 0]}, r"report: frames: expected a clip \(T, H, W, 3\)")]
    for kwargs, match in cases:
        args = {"metrics": [], "frames": frames} | kwargs
        with pytest.raises(InputError, match=match):
            write_report(tmp_path / "r.png", **args)
    assert os.listdir(tmp_path) == []
