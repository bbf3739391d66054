"""Per-step metrics: one JSON line per step in `<workdir>/metrics.jsonl` (and TensorBoard events
in `<workdir>/tensorboard/` when `tensorboardX` or torch's TensorBoard writer is installed).

    writer = MetricsWriter(workdir, enabled=jax.process_index() == 0)
    writer.truncate_after(restored_step)       # a resumed run rewrites the steps it redoes
    writer.write(step_record(step, metrics, seconds, ...))

A record: step, loss, grad_norm, lr, the task's aux, step_time_s, examples_per_s,
tflops_per_s (analytic, all devices), tflops_per_s_per_device, mfu (per device, vs the peak
table in `star_jax.models.flops`; null where the device is not in it, e.g. CPUs).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Mapping

from star_jax.io.files import atomic_path

METRICS_FILE = "metrics.jsonl"


def step_record(step: int, metrics: Mapping[str, Any], seconds: float, examples: int, flops: float,
                num_devices: int, peak_tflops_per_device: float | None) -> dict:
    """The JSON record of one step. `flops`: analytic FLOPs of the whole step (all devices)."""
    rec = {"step": int(step), **{k: float(v) for k, v in metrics.items()}}
    tflops = flops / seconds / 1e12 if seconds > 0 else math.nan
    per_device = tflops / num_devices
    rec.update(step_time_s=seconds, examples_per_s=examples / seconds if seconds > 0 else math.nan,
               tflops_per_s=tflops, tflops_per_s_per_device=per_device,
               mfu=per_device / peak_tflops_per_device if peak_tflops_per_device else None)
    return rec


def read_metrics(workdir: str) -> list[dict]:
    """The records of `<workdir>/metrics.jsonl` ([] when there is none)."""
    path = os.path.join(workdir, METRICS_FILE)
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _tensorboard(logdir: str):
    try:
        from tensorboardX import SummaryWriter
    except ImportError:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter(logdir)


class MetricsWriter:
    """Appends records to metrics.jsonl (flushed every line, so a killed run keeps its log)."""

    def __init__(self, workdir: str, enabled: bool = True, tensorboard: bool = True):
        self.enabled = enabled
        self.path = os.path.join(workdir, METRICS_FILE)
        self._file = None
        self._tb = None
        if enabled:
            os.makedirs(workdir, exist_ok=True)
            self._file = open(self.path, "a", encoding="utf-8")
            if tensorboard:
                self._tb = _tensorboard(os.path.join(workdir, "tensorboard"))

    @property
    def tensorboard(self) -> bool:
        return self._tb is not None

    def truncate_after(self, step: int) -> None:
        """Drops the records of steps > `step` (written after the checkpoint a run resumes from)."""
        if not self.enabled:
            return
        self._file.close()
        keep = [r for r in read_metrics(os.path.dirname(self.path)) if r.get("step", 0) <= step]
        with atomic_path(self.path) as tmp, open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r) + "\n")
        self._file = open(self.path, "a", encoding="utf-8")

    def write(self, record: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)) and math.isfinite(v):
                    self._tb.add_scalar(k, v, record["step"])

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
