"""Statistics over seeds shared by the parts "control" and "seeds": one row per run, per-arm means with a 95 % t
interval, and paired t contrasts between arms over the seeds both ran.

A results entry here has ``control`` (a :class:`~.config.ControlRun` as a dict: mixer, block, optimizer, lr,
seed) and ``run_seconds``; a metric is a column name → (label, how it is read from an entry). Arms are named
``<mixer>-<block>-<optimizer>`` (:attr:`~.config.RunConfig.name`); pure functions of the entries.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from .._stats import paired_t, t_interval
from .config import ControlRun, RunConfig

Metrics = Mapping[str, tuple[str, Callable[[dict], float]]]


def frame(runs: list[dict[str, Any]], metrics: Metrics) -> pd.DataFrame:
    """One row per run: arm, mixer, block, optimizer, lr, seed, run_seconds and every metric (NaN if absent)."""
    rows = []
    for e in runs:
        c = ControlRun.from_dict(e["control"])
        row = {"arm": c.arm.name, "mixer": c.mixer, "block": c.block, "optimizer": c.optimizer, "lr": c.lr,
               "seed": c.seed, "run_seconds": e["run_seconds"]}
        for key, (_, read) in metrics.items():
            try:
                value = float(read(e))
            except (KeyError, ValueError):
                value = math.nan
            row[key] = value
        rows.append(row)
    columns = ["arm", "mixer", "block", "optimizer", "lr", "seed", "run_seconds", *metrics]
    return pd.DataFrame(rows, columns=columns)


def arm_stats(df: pd.DataFrame, metrics: Iterable[str], order: Sequence[str] = ()) -> pd.DataFrame:
    """Per arm of ``df`` (arms in ``order`` first, then the rest sorted): n, seeds, and per metric mean, lo, hi
    over its rows (the caller keeps the rows it means: one lr, the seeds it counts)."""
    metrics = list(metrics)
    rows = []
    present = set(df.arm)
    for arm in [a for a in order if a in present] + sorted(present - set(order)):
        g = df[df.arm == arm]
        row = {"arm": arm, "mixer": g.mixer.iloc[0], "block": g.block.iloc[0], "optimizer": g.optimizer.iloc[0],
               "lr": float(g.lr.iloc[0]), "n": len(g), "seeds": ",".join(str(s) for s in sorted(g.seed))}
        for key in metrics:
            row[key], row[key + "_lo"], row[key + "_hi"] = t_interval(g[key].to_numpy())
        rows.append(row)
    return pd.DataFrame(rows)


def factor_contrasts(arms: Sequence[RunConfig], factor: str, a: str, b: str, label: str) -> tuple[tuple[str, str, str], ...]:
    """(label, arm a, arm b) for every pair of ``arms`` equal but for ``factor`` (``"mixer"``, ``"block"`` or
    ``"optimizer"``), which is ``a`` in the first and ``b`` in the second; the label names the other factors'
    values, e.g. ``"OP − pre-norm, softmax, AdamW"`` for ``label="OP − pre-norm"``."""
    if factor not in ("mixer", "block", "optimizer"):
        raise ValueError(f"factor must be 'mixer', 'block' or 'optimizer', got {factor!r}")
    by_name = {r.name: r for r in arms}
    out = []
    for r in arms:
        if getattr(r, factor) != b:
            continue
        other = RunConfig(**{**r.to_dict(), factor: a})
        if other.name in by_name:
            rest = ", ".join(_LABELS.get(getattr(r, f), getattr(r, f)) for f in ("mixer", "block", "optimizer")
                             if f != factor)
            out.append((f"{label}, {rest}", other.name, r.name))
    return tuple(out)


_LABELS = {"pre_norm": "pre-norm", "outlier_protected": "OP", "adamw": "AdamW", "soap": "SOAP"}


def contrasts(df: pd.DataFrame, pairs: Sequence[tuple[str, str, str]], metrics: Sequence[str]) -> pd.DataFrame:
    """Paired t of a − b (per seed, over the seeds of ``df`` both arms have) for each (label, a, b) of ``pairs``
    and each metric: contrast, metric, n, mean, lo, hi, p; rows only where n ≥ 2."""
    rows = []
    for label, a, b in pairs:
        ga, gb = df[df.arm == a].set_index("seed"), df[df.arm == b].set_index("seed")
        shared = sorted(set(ga.index) & set(gb.index))
        if len(shared) < 2:
            continue
        for m in metrics:
            rows.append({"contrast": label, "a": a, "b": b, "metric": m,
                         **paired_t(ga.loc[shared, m].to_numpy(), gb.loc[shared, m].to_numpy())})
    return pd.DataFrame(rows)


def cell(row: Mapping[str, Any], key: str, fmt: str) -> str:
    """``mean [lo, hi]`` (just the mean where the interval is NaN)."""
    mean, lo, hi = row[key], row[key + "_lo"], row[key + "_hi"]
    if math.isnan(lo):
        return format(mean, fmt)
    return f"{format(mean, fmt)} [{format(lo, fmt)}, {format(hi, fmt)}]"


__all__ = ["frame", "arm_stats", "factor_contrasts", "contrasts", "cell"]
