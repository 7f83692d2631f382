"""The capacity study's part "uncapped": setting 1 near each capacity trained to the paper's stopping rule, with
seeds — its plan (grid, order, protocol), its capacity and success statistics, its partial results and its
quick run (killed, written as a partial result, then continued by the same command)."""

from __future__ import annotations

import dataclasses
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from case_studies import _cli
from case_studies.capacity.config import (DPFP, LINEAR, PARTS, UNCAPPED_BOUNDARY, UNCAPPED_GRID, UNCAPPED_PART,
                                          UNCAPPED_PART_QUICK, Model, Run, Study)
from case_studies._stats import t_interval
from case_studies.capacity.uncapped_part import capacities, cell_stats, frame, tables

ROOT = Path(__file__).resolve().parents[1]


def test_the_uncapped_part_is_every_grid_cell_times_three_seeds_under_the_papers_rule():
    assert PARTS["uncapped"] == (UNCAPPED_PART, UNCAPPED_PART_QUICK)
    train = UNCAPPED_PART.train
    assert (train.max_steps, train.target_loss, train.patience, train.eval_every, train.eval_sequences,
            train.batch_size, train.lr) == (100_000, 1e-3, 10, 100, 20, 32, 1e-3)
    json.dumps(UNCAPPED_PART.to_dict())
    names = [r.name for r in UNCAPPED_PART.runs]
    assert len(names) == len(set(names)) == 3 * sum(map(len, UNCAPPED_GRID.values())) == 87
    assert all(r.setting == 1 for r in UNCAPPED_PART.runs)
    for model, grid in UNCAPPED_GRID.items():
        assert all(b - a == 20 for a, b in zip(grid, grid[1:]))  # a 20-step grid
        assert grid[0] < UNCAPPED_BOUNDARY[model] < grid[-1]  # around the paper's capacity
        for seed in (1, 2, 3):
            assert {r.num_keys for r in UNCAPPED_PART.runs if r.model == model and r.seed == seed} == set(grid)
    assert UNCAPPED_GRID[LINEAR] == (40, 60, 80) and UNCAPPED_GRID[DPFP[2]] == tuple(range(240, 421, 20))
    # seed 1 over the whole grid first, then 2, then 3; each seed opens with the cells that decide a capacity
    seeds = [r.seed for r in UNCAPPED_PART.runs]
    assert seeds == sorted(seeds)
    first = [(r.model, r.num_keys) for r in UNCAPPED_PART.runs[:8]]
    assert first == [(LINEAR, 40), (LINEAR, 60), (DPFP[0], 120), (DPFP[0], 140), (DPFP[1], 260), (DPFP[1], 280),
                     (DPFP[2], 380), (DPFP[2], 400)]
    assert [r.name for r in UNCAPPED_PART.runs[29:31]] == ["s1-S40-elu1-sum-seed2", "s1-S60-elu1-sum-seed2"]


def _results(outcomes: dict, grid=(20, 40, 60, 80), seeds=(1, 2, 3), model=LINEAR) -> dict:
    """A results dict planning ``model`` on ``grid`` × ``seeds``; ``outcomes[(S, seed)]`` the final loss of the
    runs done (the rest pending)."""
    plan = [Run(1, S, model, seed) for seed in seeds for S in grid]
    runs = [{"name": r.name, "final_eval_loss": outcomes[(r.num_keys, r.seed)], "final_eval_acc": 0.9,
             "stop": "patience", "steps": 3000, "train_seconds": 10.0}
            for r in plan if (r.num_keys, r.seed) in outcomes]
    return {"study": Study(runs=tuple(plan)).to_dict(), "runs": runs}


def test_capacity_per_seed_is_the_largest_success_and_says_when_the_grid_has_not_decided_it():
    ok, bad = 0.0005, 0.05
    outcomes = {(20, 1): ok, (40, 1): ok, (60, 1): bad, (80, 1): bad,     # 40, fails at 60
                (20, 2): ok, (40, 2): bad, (60, 2): ok, (80, 2): bad,     # 60, with a hole at 40
                (20, 3): ok, (40, 3): ok}                                 # ≥ 40, 60 and 80 pending
    caps = capacities(frame(_results(outcomes))).set_index("seed")
    assert caps.loc[1, "value"] == 40 and caps.loc[1, "decided"] and caps.loc[1, "fails_at"] == 60
    assert caps.loc[2, "value"] == 60 and caps.loc[2, "holes"] == [40] and caps.loc[2, "fails_at"] == 80
    assert caps.loc[3, "value"] == 40 and not caps.loc[3, "decided"] and pd.isna(caps.loc[3, "fails_at"])
    text = tables(_results(outcomes))
    assert "| Linear | 40 (fails at 60) | 60 (fails at 80), but fails at 40 | ≥ 40 (larger S pending) |" in text
    assert "**10 of 12 planned runs done** — a partial result" in text
    assert "| 60 | 1/2 (of 3; 1 *pending*) | 0.0500 / 5.0e-04 / – |" in text and "| Linear S = 80 seed 3 | *pending* |" not in text
    assert "| elu1-sum S = 80 seed 3 | *pending* |" in text
    # off the grid at either end, and the mean over seeds only when every seed is decided on the grid
    edges = {(S, s): (ok if s == 1 else bad) for S in (20, 40, 60, 80) for s in (1, 2)}
    caps = capacities(frame(_results(edges, seeds=(1, 2)))).set_index("seed")
    assert caps.loc[1, "censored"] == "above" and caps.loc[2, "censored"] == "below"
    assert "≥ 80 (grid's largest S) | < 20 (fails at every S) | – |" in tables(_results(edges, seeds=(1, 2)))
    inside = {(S, s): (ok if S <= 20 * s else bad) for S in (20, 40, 60, 80) for s in (1, 2, 3)}
    mean, lo, hi = t_interval([20, 40, 60])
    assert mean == 40 and math.isclose(hi - mean, 4.302652729911275 * 20 / math.sqrt(3), rel_tol=1e-4)
    assert f"| {mean:.0f} [{lo:.0f}, {hi:.0f}] (3 of 3 seeds) |" in tables(_results(inside))


def test_cell_stats_count_successes_and_only_the_seeds_done():
    outcomes = {(20, 1): 0.001, (20, 2): 0.003, (20, 3): 0.02, (40, 1): 0.3}
    cells = cell_stats(frame(_results(outcomes))).set_index("S")
    assert cells.loc[20, "n"] == 3 and cells.loc[20, "success"] == 2 and math.isclose(cells.loc[20, "mean"], 0.008)
    assert cells.loc[20, "lo"] < 0.008 < cells.loc[20, "hi"]
    assert cells.loc[40, "n"] == 1 and math.isnan(cells.loc[40, "lo"]) and cells.loc[60, "n"] == 0


def test_a_run_outside_the_plan_is_refused():
    results = _results({(20, 1): 0.001})
    results["runs"].append(dict(results["runs"][0], name="s1-S500-elu1-sum-seed1"))
    with pytest.raises(ValueError, match="not in this study's plan"):
        frame(results)


def test_finished_entries_take_only_finished_runs_of_the_same_protocol(tmp_path):
    runs = [Run(1, S, Model("elu1"), 1) for S in (4, 6, 8)]

    def execute(run):
        return {"name": run.name, "S": run.num_keys}

    _cli.run_each(runs[:2], execute, lambda r, e: "", progress=False, out=tmp_path, context={"p": 1})
    assert [e["name"] for e in _cli.finished_entries(runs, tmp_path, {"p": 1})] == [runs[0].name, runs[1].name]
    assert _cli.finished_entries(runs, tmp_path, {"p": 2}) == []  # another protocol: not these runs
    assert (tmp_path / ".progress").is_dir()  # nothing removed


@pytest.mark.integration
def test_uncapped_quick_mode_killed_written_partially_then_continued(tmp_path):
    cmd = [sys.executable, "-m", "case_studies.capacity", "--part", "uncapped", "--quick", "--no-png", "--out",
           str(tmp_path)]
    progress = tmp_path / _cli.PROGRESS_DIR
    log = (tmp_path.parent / f"{tmp_path.name}-killed.log").open("w")
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    def finished_runs():  # not the temporary files of an entry being written (.<name>.<random>.tmp.json)
        return sorted(p.stem for p in progress.glob("*.json") if not p.name.startswith("."))

    while len(finished_runs()) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = finished_runs()
    log.close()
    assert 2 <= len(finished) < len(UNCAPPED_PART_QUICK.runs), \
        f"not killed after 2 to 7 runs ({proc.returncode}): " + Path(log.name).read_text()[-3000:]

    partial = subprocess.run(cmd + ["--partial"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert partial.returncode == 0, partial.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["partial"] and results["part"] == "uncapped"
    assert sorted(r["name"] for r in results["runs"]) == finished
    assert len(results["pending"]) == len(UNCAPPED_PART_QUICK.runs) - len(finished)
    assert "*pending*" in (tmp_path / "tables.md").read_text() and progress.is_dir()
    saved = {r["name"]: r for r in results["runs"]}

    start = time.perf_counter()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    seconds = time.perf_counter() - start
    assert again.returncode == 0, again.stderr[-3000:]
    assert sum("finished before; taken from" in line for line in (again.stdout + again.stderr).splitlines()) == len(finished)
    results = json.loads((tmp_path / "results.json").read_text())
    assert "partial" not in results and [r["name"] for r in results["runs"]] == [r.name for r in UNCAPPED_PART_QUICK.runs]
    assert all(r == saved[r["name"]] for r in results["runs"] if r["name"] in saved)
    assert results["figures"] == ["uncapped_loss_vs_S"] and (tmp_path / "uncapped_loss_vs_S.html").stat().st_size > 10_000
    text = (tmp_path / "tables.md").read_text()
    assert "**8 of 8 planned runs done**" in text and "## Capacity per seed" in text and not progress.exists()
    replot = subprocess.run(cmd[:3] + ["--part", "uncapped", "--replot", "--no-png", "--out", str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert replot.returncode == 0 and (tmp_path / "tables.md").read_text() == text
    assert seconds < 60, f"--part uncapped --quick took {seconds:.0f} s"


def test_the_cost_estimate_interpolates_seconds_per_step_in_S_and_uses_the_papers_steps():
    from case_studies.capacity import paper
    from case_studies.capacity.estimate import estimate, seconds_per_step

    main = [{"setting": 1, "model": "dpfp3-sum", "num_keys": S, "train_seconds": sec, "steps": 2000}
            for S, sec in ((240, 80.0), (360, 200.0))] + [{"setting": 2, "model": "dpfp3-sum", "num_keys": 300,
                                                            "train_seconds": 1e6, "steps": 1}]
    assert math.isclose(seconds_per_step(main, "dpfp3-sum", 300), 0.07)  # halfway between 0.04 and 0.1
    assert math.isclose(seconds_per_step(main, "dpfp3-sum", 420), 0.13)  # extended past 360
    est = estimate([Run(1, 380, DPFP[2], 2)], main)
    assert est.loc[0, "steps"] == paper.STEPS[1]["dpfp3-sum"][380] == 10_200
    assert math.isclose(est.loc[0, "seconds"], 10_200 * 0.11)
    with pytest.raises(ValueError, match="two setting-1 runs"):
        seconds_per_step(main[:1], "dpfp3-sum", 300)


@pytest.mark.parametrize("feature_map,redraw", [("dpfp", False), ("favor", True)])
def test_a_retriever_run_killed_mid_training_continues_from_its_last_evaluation_to_the_same_result(
        tmp_path, monkeypatch, feature_map, redraw):
    """Killed inside its training (between two evaluations), the same call with the same resume_dir loads the
    state of the last evaluation — weights, Adam's moments, the data and evaluation generators, the model's own
    feature draws, the patience count — and ends with the history and weights of a run never killed."""
    import torch

    from workbench.retrieval import training
    from workbench.retrieval.model import RetrieverConfig
    from workbench.tasks import Retrieval

    torch.set_num_threads(1)
    cfg = RetrieverConfig.paper(8, feature_map=feature_map, favor_features=8, favor_redraw=redraw, seed=4)
    task = Retrieval(num_keys=8, setting=1)
    train = training.RetrieverTrainConfig(max_steps=120, eval_every=20, eval_sequences=3, patience=2, seed=5)
    whole = training.train_retriever(cfg, task, train, progress=False)
    assert not list(tmp_path.iterdir())  # no resume_dir: nothing written

    real, calls = training.retrieval_loss, {"n": 0}

    def crash(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 47:  # step 47, after the evaluations at 20 and 40
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "retrieval_loss", crash)
    with pytest.raises(KeyboardInterrupt):
        training.train_retriever(cfg, task, train, progress=False, resume_dir=tmp_path)
    monkeypatch.undo()
    assert len(list(tmp_path.glob("train_state-*.pt"))) == 1
    calls["n"] = 0

    def count(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(training, "retrieval_loss", count)
    again = training.train_retriever(cfg, task, train, progress=False, resume_dir=tmp_path)
    strip = lambda hist: [{k: v for k, v in h.items() if k != "seconds"} for h in hist]  # noqa: E731
    assert strip(again.history) == strip(whole.history) and (again.stop, again.steps) == (whole.stop, whole.steps)
    assert calls["n"] == (whole.steps - 40) + (len(whole.history) - 2)  # steps and evaluations after step 40 only
    for a, b in zip(again.model.parameters(), whole.model.parameters()):
        assert torch.equal(a, b)
    other = dataclasses.replace(train, seed=6)  # another run in the same directory starts afresh
    fresh = training.train_retriever(cfg, task, other, progress=False, resume_dir=tmp_path)
    assert fresh.history[0]["step"] == 20 and fresh.history != whole.history
