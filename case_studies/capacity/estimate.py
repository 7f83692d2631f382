"""python -m case_studies.capacity.estimate [MAIN_RESULTS_JSON]

What the uncapped part (``config.UNCAPPED_PART``) should cost in single-thread CPU time, before running it: for
each planned run, the seconds per step of the main study's run of the same model (``train_seconds / steps`` in
``results/results.json``; linear in S between its grid points, extended linearly past the last two) times the
steps the paper's run at that S took (``paper.STEPS``, the last row of its log). Prints one row per model and
seed, then the total.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from . import paper
from .config import UNCAPPED_PART, Run

MAIN_RESULTS = Path(__file__).parent / "results" / "results.json"


def seconds_per_step(main_runs: Sequence[dict[str, Any]], model: str, S: int) -> float:
    """Seconds per training step (evaluations included) of ``model`` at ``S`` from the main study's setting-1
    runs: interpolated linearly in S, extended linearly beyond either end."""
    points = sorted((r["num_keys"], r["train_seconds"] / r["steps"]) for r in main_runs
                    if r["setting"] == 1 and r["model"] == model and r["steps"] > 0)
    if len(points) < 2:
        raise ValueError(f"need two setting-1 runs of {model} in the main results, found {len(points)}")
    xs, ys = np.array(points, dtype=float).T
    if S > xs[-1]:
        return float(ys[-1] + (ys[-1] - ys[-2]) / (xs[-1] - xs[-2]) * (S - xs[-1]))
    if S < xs[0]:
        return float(max(ys[0] + (ys[1] - ys[0]) / (xs[1] - xs[0]) * (S - xs[0]), 0.0))
    return float(np.interp(S, xs, ys))


def estimate(runs: Sequence[Run], main_runs: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per planned run: model, S, seed, the paper's steps, seconds per step, estimated seconds."""
    rows = []
    for run in runs:
        steps = paper.STEPS[run.setting][run.model.name][run.num_keys]
        sps = seconds_per_step(main_runs, run.model.name, run.num_keys)
        rows.append({"model": run.model.label, "S": run.num_keys, "seed": run.seed, "steps": steps,
                     "seconds_per_step": sps, "seconds": steps * sps})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else MAIN_RESULTS
    est = estimate(UNCAPPED_PART.runs, json.loads(path.read_text())["runs"])
    per = est.groupby(["model", "seed"], sort=False).agg(runs=("S", "size"), steps=("steps", "sum"),
                                                          seconds=("seconds", "sum"))
    print(f"estimated single-thread CPU time of the uncapped part (seconds/step from {path.name}, steps from the "
          f"paper's logs):")
    for (model, seed), r in per.iterrows():
        print(f"  {model:8s} seed {seed}: {int(r['runs']):2d} runs, {int(r['steps']):6d} steps, {r['seconds'] / 60:6.1f} min")
    print(f"  total: {len(est)} runs, {int(est['steps'].sum())} steps, {est['seconds'].sum() / 3600:.1f} h")


if __name__ == "__main__":
    main()
