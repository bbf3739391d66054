"""Shared benchmark helpers."""

from __future__ import annotations

import time


def best_time(fn, repeats: int) -> float:
    """Best wall time (s) of `repeats` calls of `fn` after one warm-up call (compilation)."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
