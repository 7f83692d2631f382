"""One timing helper for every benchmark: the median of repeated runs after a warm-up."""

from __future__ import annotations

import statistics
import time


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3
