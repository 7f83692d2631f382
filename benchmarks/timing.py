"""Timing helpers for every benchmark.

``median_ms`` times one function; ``interleaved_ms`` times several round-robin (a, b, c, a, b, c, …) and
keeps each one's best run, so that load from other processes on a shared machine falls on all of them
alike and the ratios between them stay meaningful. ``interleaved_wall_cpu`` does the same and also keeps
each one's best CPU time of the calling thread (``time.thread_time``: with one torch thread, the work
itself, without the time other processes held the core — the steadier figure on a loaded machine).
"""

from __future__ import annotations

import statistics
import time
from typing import Callable


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def interleaved_ms(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 2) -> dict[str, float]:
    """Best wall time in ms of each function over ``repeats`` round-robin rounds (after ``warmup`` rounds)."""
    best = {name: float("inf") for name in fns}
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            if r >= warmup:
                best[name] = min(best[name], time.perf_counter() - t)
    return {name: s * 1e3 for name, s in best.items()}


def interleaved_wall_cpu(fns: dict[str, Callable[[], object]], repeats: int,
                         warmup: int = 2) -> dict[str, tuple[float, float]]:
    """Best wall time and best thread CPU time in ms of each function over ``repeats`` round-robin rounds."""
    wall = {name: float("inf") for name in fns}
    cpu = dict(wall)
    for r in range(warmup + repeats):
        for name, fn in fns.items():
            c, t = time.thread_time(), time.perf_counter()
            fn()
            t, c = time.perf_counter() - t, time.thread_time() - c
            if r >= warmup:
                wall[name], cpu[name] = min(wall[name], t), min(cpu[name], c)
    return {name: (wall[name] * 1e3, cpu[name] * 1e3) for name in fns}
