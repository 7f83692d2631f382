"""The MQAR study's parts (issue 18): their runs as data, the statistics under their tables, each part's quick
run (results, tables, figures), a part resumed after a SIGKILL, and the committed parts tied to the README."""

from __future__ import annotations

import dataclasses

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from case_studies.mqar import parts
from case_studies.mqar.config import RunConfig
from case_studies._stats import t_interval
from case_studies.mqar.part_tables import best_lr, conv_effects, frame, part_tables
from case_studies.mqar.parts import BEST_LR, LRS, PARTS, PartRun, PartStudy

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "mqar"


def test_part_runs_round_trip_name_themselves_and_reject_bad_input():
    run = PartRun("delta", 64, 2.15e-3, seed=1, conv_size=0)
    assert run.name == "mqar-delta-d64-conv0-lr2.15e-03-seed1"
    assert PartRun.from_dict(run.to_dict()) == run
    assert run.model_config(parts.PROTOCOL).mixer.conv_size == 0
    assert run.train_config(parts.PROTOCOL).lr == 2.15e-3 and run.train_config(parts.PROTOCOL).seed == 1
    assert PartRun("delta", 64, 1e-3).model_config(parts.PROTOCOL).mixer.conv_size == 4  # the main study's
    assert PartRun("linear", 64, 1e-3, conv_size=4).model_config(parts.PROTOCOL).mixer.conv_size == 4
    for bad in (dict(mixer="nope"), dict(lr=0.0), dict(lr=-1e-3), dict(mixer="softmax", conv_size=4),
                dict(conv_size=-1), dict(seed=-1), dict(d_model=63)):
        with pytest.raises(ValueError):
            PartRun(**{"mixer": "delta", "d_model": 64, "lr": 1e-3, **bad})
    study = PARTS["pairs"][0]
    assert PartStudy.from_dict(json.loads(json.dumps(study.to_dict()))) == study


def test_the_main_study_keeps_linear_attention_without_a_convolution():
    # linear attention's short conv is an option that defaults to none: the main study's runs are unchanged
    assert RunConfig("linear", 64).mixer_config().conv_size == 0
    assert "conv_size" not in RunConfig("linear", 64).mixer_config().to_dict()
    assert RunConfig("delta", 64).mixer_config().conv_size == 4


def test_the_parts_are_what_the_readme_says():
    sweep = PARTS["sweep"][0]
    assert {(r.mixer, r.d_model, r.lr) for r in sweep.runs} == {(m, 64, lr) for m in parts.SWEEP_MIXERS for lr in LRS}
    assert np.allclose(LRS, np.logspace(-4, -2, 4)[1:], rtol=1e-2)  # Zoology's grid without 1e-4
    train = sweep.protocol.train
    assert (train.stop_acc, train.patience, train.min_delta, train.steps, train.eval_every) == (0.99, 5, 0.005, 3000, 200)
    assert all(p[0].protocol.train == train for name, p in PARTS.items() if name != "long")  # quick ones cap lower
    long = PARTS["long"][0]  # the sweep's rule with a longer cap and patience, at the sweep's best rates
    assert long.protocol.train == dataclasses.replace(train, steps=20000, patience=15)
    assert dataclasses.replace(long.protocol, train=train) == sweep.protocol
    assert [(r.mixer, r.d_model, r.lr, r.seed) for r in long.runs] == [("softmax", 64, BEST_LR["softmax"], 0),
                                                                       ("linear", 64, BEST_LR["linear"], 0)]
    conv = PARTS["conv2x2"][0]
    assert {(r.mixer, r.conv_size) for r in conv.runs} == {(m, c) for m in ("delta", "linear") for c in (4, 0)}
    assert all(r.lr == BEST_LR[r.mixer] for name in ("conv2x2", "pairs", "vocab") for r in PARTS[name][0].runs)
    pairs = PARTS["pairs"][0]
    assert max(s.num_kv_pairs for s in pairs.protocol.train_settings) == 64 and pairs.capacity_sweep
    assert {r.d_model for r in pairs.runs} == {64, 128}
    assert PARTS["vocab"][0].protocol.vocab_size == 8192


def _entry(mixer, lr, seed, accs, conv=None, d=64):
    return {"name": f"{mixer}-{lr}-{seed}-{conv}", "run": {"mixer": mixer, "d_model": d, "lr": lr, "seed": seed},
            "mixer_config": {} if conv is None else {"conv_size": conv}, "d_head": d // 2, "stop": "target",
            "steps": 200, "final_eval_acc": 1.0, "mean_accuracy": sum(accs) / len(accs),
            "accuracy": [{"seq_len": 64 * 2 ** i, "num_kv_pairs": 4 * 2 ** i, "accuracy": a} for i, a in enumerate(accs)]}


def test_best_lr_averages_over_seeds_and_breaks_ties_to_the_smaller_rate():
    runs = [_entry("delta", 1e-3, 0, [0.9, 0.9]), _entry("delta", 1e-3, 1, [0.5, 0.5]),  # mean 0.7
            _entry("delta", 1e-2, 0, [0.8, 0.8]),  # 0.8
            _entry("softmax", 1e-3, 0, [0.5, 0.5]), _entry("softmax", 1e-2, 0, [0.25, 0.75])]  # tie at 0.5
    assert best_lr(runs) == {("delta", 64): 1e-2, ("softmax", 64): 1e-3}
    assert frame(runs)["acc 128/8"].tolist() == [0.9, 0.5, 0.8, 0.5, 0.75]
    # a run's own conv_size wins over its mixer config, which omits linear attention's default 0
    no_conv = {**_entry("linear", 1e-3, 0, [0.5]), "run": {"mixer": "linear", "d_model": 64, "lr": 1e-3, "seed": 0,
                                                           "conv_size": 0}}
    assert frame([no_conv])["conv"].tolist() == [0]


def test_t_interval_and_conv_effects_by_hand():
    mean, lo, hi = t_interval(np.array([0.2, 0.4, 0.6]))
    half = 4.302652729911275 * 0.2 / math.sqrt(3)  # t_{0.975, 2} · sd / √n
    assert mean == pytest.approx(0.4) and lo == pytest.approx(0.4 - half, abs=1e-6) and hi == pytest.approx(0.4 + half, abs=1e-6)
    assert math.isnan(t_interval(np.array([0.3]))[1])
    runs = []
    for seed, (d_on, d_off, l_on, l_off) in enumerate([(1.0, 0.9, 0.5, 0.1), (0.98, 0.9, 0.6, 0.1), (1.0, 0.8, 0.4, 0.0)]):
        runs += [_entry("delta", 1e-3, seed, [d_on], 4), _entry("delta", 1e-3, seed, [d_off], 0),
                 _entry("linear", 1e-3, seed, [l_on], 4), _entry("linear", 1e-3, seed, [l_off], 0)]
    eff = conv_effects(frame(runs)).set_index("contrast")
    assert eff.loc["DeltaNet: conv − none", "mean"] == pytest.approx((0.1 + 0.08 + 0.2) / 3)
    assert eff.loc["linear attention: conv − none", "mean"] == pytest.approx((0.4 + 0.5 + 0.4) / 3)
    inter = eff.loc["interaction: DeltaNet − linear attention conv effect"]
    assert inter["mean"] == pytest.approx((0.1 + 0.08 + 0.2 - 0.4 - 0.5 - 0.4) / 3) and inter["n"] == 3
    assert inter["p"] < 0.05  # differences −0.3, −0.42, −0.2: consistently negative


def _run_quick(part: str, out: Path) -> tuple[dict, float]:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "case_studies.mqar", "--part", part, "--quick", "--no-png", "--out", str(out)],
                   cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    return json.loads((out / "results.json").read_text()), time.perf_counter() - start


@pytest.mark.integration
@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_quick_mode_writes_results_tables_and_figures(part, tmp_path):
    results, seconds = _run_quick(part, tmp_path)
    study = PARTS[part][1]
    assert results["part"] == part and results["quick"] is True and PartStudy.from_dict(results["study"]) == study
    assert [r["name"] for r in results["runs"]] == [r.name for r in study.runs]
    for r in results["runs"]:
        assert r["stop"] in ("target", "plateau", "max_steps") and r["steps"] == r["history"][-1]["step"]
        assert r["steps"] <= study.protocol.train.steps
        assert all(a["lo"] <= a["accuracy"] <= a["hi"] for a in r["accuracy"])
        assert (r["capacity_sweep"] is not None) == study.capacity_sweep
    assert (tmp_path / "tables.md").read_text() == part_tables(results)
    assert (tmp_path / "learning_curves.html").is_file()
    assert "command" in results and results["wall_seconds"] > 0
    assert seconds < 60, f"--part {part} --quick took {seconds:.0f} s"  # ~7 CPU-s; the rest is imports on a busy machine


@pytest.mark.integration
def test_a_part_killed_mid_run_finishes_with_the_same_results(tmp_path):
    from test_resume import _sigkill_when, _without_timings

    whole, _ = _run_quick("conv2x2", tmp_path / "whole")
    cmd = [sys.executable, "-m", "case_studies.mqar", "--part", "conv2x2", "--quick", "--no-png", "--out",
           str(tmp_path / "killed")]
    progress = tmp_path / "killed" / ".progress"
    _sigkill_when(cmd, lambda: progress.is_dir() and len(list(progress.glob("*.json"))) >= 2)
    assert not (tmp_path / "killed" / "results.json").exists()
    killed, _ = _run_quick("conv2x2", tmp_path / "killed")
    assert _without_timings(whole["runs"]) == _without_timings(killed["runs"])
    assert not progress.exists()


COMMITTED = sorted(p.name for p in (STUDY_DIR / "results").iterdir() if (p / "results.json").is_file()) \
    if (STUDY_DIR / "results").is_dir() else []


@pytest.mark.parametrize("part", COMMITTED)
def test_committed_parts_are_full_runs_tied_to_the_readme(part):
    results = json.loads((STUDY_DIR / "results" / part / "results.json").read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and results["part"] == part
    study = PartStudy.from_dict(results["study"])
    full = PARTS[part][0]
    assert study.protocol == full.protocol and set(study.runs) <= set(full.runs)  # a subset only with --only
    assert part_tables(results) in readme
    assert results["command"] in readme
    assert f"{results['wall_seconds'] / 60:.1f} min" in readme


def test_best_lr_is_the_committed_sweeps():
    path = STUDY_DIR / "results" / "sweep" / "results.json"
    if not path.is_file():
        pytest.skip("the sweep has not been committed")
    best = best_lr(json.loads(path.read_text())["runs"])
    assert {m: best[(m, 64)] for m, _ in best} == BEST_LR
