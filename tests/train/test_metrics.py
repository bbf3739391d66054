"""Metrics records: the analytic throughput fields, truncation on resume, and TensorBoard events
that read back (when tensorboardX is installed)."""

import glob
import struct

import pytest

from star_jax.train.metrics import MetricsWriter, read_metrics, step_record


def test_record_throughput_fields():
    r = step_record(3, {"loss": 0.5, "grad_norm": 2.0}, seconds=0.5, examples=8, flops=4e12, num_devices=2,
                    peak_tflops_per_device=4.0)
    assert r["step"] == 3 and r["examples_per_s"] == 16.0
    assert r["tflops_per_s"] == 8.0 and r["tflops_per_s_per_device"] == 4.0 and r["mfu"] == 1.0
    assert step_record(1, {"loss": 1.0}, 1.0, 1, 1e12, 1, None)["mfu"] is None


def test_truncate_after_keeps_earlier_steps(tmp_path):
    w = MetricsWriter(str(tmp_path), tensorboard=False)
    for k in range(1, 6):
        w.write({"step": k, "loss": float(k)})
    w.truncate_after(3)
    w.write({"step": 4, "loss": 40.0})
    w.close()
    assert [(r["step"], r["loss"]) for r in read_metrics(str(tmp_path))] == [(1, 1.0), (2, 2.0), (3, 3.0), (4, 40.0)]


def read_scalars(path):
    """(tag, step, value) of the scalar summaries in a TFRecord event file."""
    from tensorboardX.proto import event_pb2

    out = []
    with open(path, "rb") as f:
        data = f.read()
    i = 0
    while i < len(data):
        (length,) = struct.unpack("<Q", data[i:i + 8])
        event = event_pb2.Event.FromString(data[i + 12:i + 12 + length])
        out += [(v.tag, event.step, v.simple_value) for v in event.summary.value]
        i += 12 + length + 4
    return out


def test_tensorboard_events_read_back(tmp_path):
    pytest.importorskip("tensorboardX")
    w = MetricsWriter(str(tmp_path))
    assert w.tensorboard
    for k in (1, 2):
        w.write({"step": k, "loss": 1.0 / k, "mfu": None, "lr": float("nan")})
    w.close()
    (events,) = glob.glob(str(tmp_path / "tensorboard" / "events.*"))
    assert read_scalars(events) == [("loss", 1, 1.0), ("loss", 2, 0.5)]  # None and NaN are left out
