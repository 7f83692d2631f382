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
    assert all(p[0].protocol.train == train for name, p in PARTS.items()
               if name not in ("long", "vocab_long"))  # quick ones cap lower
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
    vocab_long = PARTS["vocab_long"][0]  # the vocab part with a longer cap and long's patience
    assert vocab_long.protocol.train == dataclasses.replace(train, steps=6000, patience=15)
    assert dataclasses.replace(vocab_long.protocol, train=train) == PARTS["vocab"][0].protocol
    assert [(r.mixer, r.lr) for r in vocab_long.runs] == [("softmax", BEST_LR["softmax"]), ("delta", BEST_LR["delta"])]
    assert set(vocab_long.runs) <= set(PARTS["vocab"][0].runs)


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


@pytest.mark.integration
def test_only_runs_keep_the_runs_an_earlier_only_run_wrote(tmp_path):
    """``--only`` twice into one folder: the second run's results.json holds both runs, in the part's order,
    the first byte for byte, and says which command made it; a third run of the first again replaces it."""
    study = PARTS["vocab"][1]
    first, second = study.runs[1].name, study.runs[0].name

    def only(*names):
        subprocess.run([sys.executable, "-m", "case_studies.mqar", "--part", "vocab", "--quick", "--no-png",
                        "--out", str(tmp_path), "--only", *names], cwd=ROOT, check=True, capture_output=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
        return json.loads((tmp_path / "results.json").read_text())

    a = only(first)
    assert [r["name"] for r in a["runs"]] == [first] and "earlier" not in a
    b = only(second)
    assert [r["name"] for r in b["runs"]] == [second, first]  # the part's order
    assert b["runs"][1] == a["runs"][0]
    assert PartStudy.from_dict(b["study"]).runs == study.runs[:2]
    assert b["earlier"] == [{"command": a["command"], "wall_seconds": a["wall_seconds"],
                             "cpu_seconds": a["cpu_seconds"], "written": a["written"], "runs": [first]}]
    assert (tmp_path / "tables.md").read_text() == part_tables(b)
    c = only(first)  # the first again: it replaces its earlier entry; the second is kept, from b's command
    assert [r["name"] for r in c["runs"]] == [second, first]
    assert c["runs"][0] == b["runs"][0] and [e["runs"] for e in c["earlier"]] == [[second]]
    assert c["earlier"][0]["command"] == b["command"]


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
    for earlier in results.get("earlier", []):  # runs kept from an earlier --only command
        assert earlier["command"] in readme and f"{earlier['wall_seconds'] / 60:.1f} min" in readme


def test_best_lr_is_the_committed_sweeps():
    path = STUDY_DIR / "results" / "sweep" / "results.json"
    if not path.is_file():
        pytest.skip("the sweep has not been committed")
    best = best_lr(json.loads(path.read_text())["runs"])
    assert {m: best[(m, 64)] for m, _ in best} == BEST_LR


def test_the_seeds_part_is_seeds_1_and_2_of_the_headline_cells():
    from case_studies.mqar.part_seeds import seed0_cells
    from case_studies.mqar.seed_tables import _cell

    seeds = PARTS["seeds"][0]
    assert seeds.protocol == parts.PROTOCOL and not seeds.capacity_sweep
    assert all(r.seed in (1, 2) and r.d_model == 64 and r.lr == BEST_LR[r.mixer] for r in seeds.runs)
    stage_a = [(r.mixer, r.conv_size) for r in seeds.runs[:8]]
    assert stage_a == [(m, None) for m in parts.SWEEP_MIXERS for _ in (1, 2)] and stage_a[0][0] == "softmax"
    cells = {_cell(r)[:2] for r in seeds.runs}
    two_by_two = {_cell(r)[:2] for r in PARTS["conv2x2"][0].runs}
    assert two_by_two <= cells  # the 2 × 2's four cells: two are sweep cells, two are stage B
    assert {(r.mixer, r.conv_size) for r in seeds.runs[8:]} == {("delta", 0), ("linear", 4)}
    assert two_by_two - {_cell(r)[:2] for r in seeds.runs[:8]} == {("delta", 0), ("linear", 4)}
    assert [c.seed for c in seed0_cells(seeds)] == [0] * 6 and seed0_cells(PARTS["seeds"][1]) == []


def _source(study, entries, quick=False):
    return {"quick": quick, "part": "src", "study": study.to_dict(), "runs": entries}


def test_seed0_reuse_takes_only_the_same_run_under_the_same_protocol():
    import dataclasses

    from case_studies.mqar.part_seeds import seed0_entries

    study = PartStudy(parts.PROTOCOL, (PartRun("delta", 64, 1e-3, seed=1), PartRun("linear", 64, 1e-3, seed=1)))
    delta0, linear0 = PartRun("delta", 64, 1e-3), PartRun("linear", 64, 1e-3)

    def entry(run, **change):
        return {"name": run.name, "run": run.to_dict(), "mixer_config": run.model_config(study.protocol).to_dict()["mixer"],
                "mean_accuracy": 0.5, **change}

    good = _source(PartStudy(parts.PROTOCOL, (delta0, linear0)), [entry(delta0), entry(linear0)])
    got = seed0_entries(study, {"a": good})
    assert [(e["name"], e["reused_from"]) for e in got] == [(delta0.name, "a"), (linear0.name, "a")]
    other = dataclasses.replace(parts.PROTOCOL, train=dataclasses.replace(parts.PROTOCOL.train, steps=2000))
    with pytest.raises(ValueError, match="protocol.train"):
        seed0_entries(study, {"a": _source(PartStudy(other, (delta0, linear0)), good["runs"])})
    with pytest.raises(ValueError, match="--quick"):
        seed0_entries(study, {"a": _source(PartStudy(parts.PROTOCOL, (delta0, linear0)), good["runs"], quick=True)})
    with pytest.raises(ValueError, match="in none of the results"):  # seed 0 with another conv is another run
        conv0 = PartRun("delta", 64, 1e-3, conv_size=0)
        seed0_entries(study, {"a": _source(PartStudy(parts.PROTOCOL, (conv0, linear0)), [entry(conv0), entry(linear0)])})
    with pytest.raises(ValueError, match="trained the mixer"):
        drifted = [entry(delta0, mixer_config={"kind": "delta", "conv_size": 0}), entry(linear0)]
        seed0_entries(study, {"a": _source(PartStudy(parts.PROTOCOL, (delta0, linear0)), drifted)})


def test_the_committed_seed0_runs_pass_the_reuse_check():
    from case_studies.mqar.part_seeds import load_sources, seed0_entries

    if not all((STUDY_DIR / "results" / p / "results.json").is_file() for p in ("sweep", "conv2x2")):
        pytest.skip("the sweep and the conv 2 × 2 have not been committed")
    got = seed0_entries(PARTS["seeds"][0], load_sources("seeds"))
    assert [e["reused_from"] for e in got] == ["sweep"] * 4 + ["conv2x2"] * 2
    assert all(e["run"]["seed"] == 0 for e in got)


def test_seeds_tables_by_hand():
    from case_studies.mqar.seed_tables import cells, seed_contrasts, seed_frame

    study = PartStudy(parts.PROTOCOL, tuple(PartRun(m, 64, 1e-3, seed=s, conv_size=c)
                                            for m, c in (("delta", None), ("linear", None), ("delta", 0))
                                            for s in (1, 2)))
    acc = {("delta", None): [0.99, 0.97, 0.95], ("linear", None): [0.35, 0.30, 0.40], ("delta", 0): [0.3, 0.4, 0.5]}

    def entry(m, c, s, reused=False):
        run = PartRun(m, 64, 1e-3, seed=s, conv_size=c)
        e = {**_entry(m, 1e-3, s, [acc[(m, c)][s]]), "name": run.name, "run": run.to_dict()}
        return {**e, "reused_from": "sweep"} if reused else e

    results = {"part": "seeds", "study": study.to_dict(), "reused": [entry(m, c, 0, True) for m, c in acc],
               "runs": [entry(m, c, s) for m, c in acc for s in (1, 2) if (m, c, s) != ("delta", 0, 2)]}
    df = seed_frame(results)
    assert cells(results) == [("delta", 4, 1e-3), ("linear", 0, 1e-3), ("delta", 0, 1e-3)]  # defaults resolved
    con = {(c["a"][:2], c["b"][:2]): c for c in seed_contrasts(df, cells(results))}
    dl = con[(("delta", 4), ("linear", 0))]
    assert dl["seeds"] == [0, 1, 2] and dl["diffs"] == pytest.approx([0.64, 0.67, 0.55])
    assert dl["mean"] == pytest.approx(0.62) and dl["n"] == 3
    half = 4.302652729911275 * np.std([0.64, 0.67, 0.55], ddof=1) / math.sqrt(3)
    assert dl["lo"] == pytest.approx(0.62 - half, abs=1e-6) and dl["hi"] == pytest.approx(0.62 + half, abs=1e-6)
    conv = con[(("delta", 4), ("delta", 0))]
    assert conv["seeds"] == [0, 1] and conv["n"] == 2  # seed 2 of DeltaNet without conv did not run
    assert (("delta", 4), ("softmax", None)) not in con  # no softmax cell in this part
    text = part_tables(results)
    mean, lo, hi = t_interval(np.array([0.99, 0.97, 0.95]))
    assert f"| 3 | {mean:.3f} [{lo:.3f}, {hi:.3f}] | sweep |" in text
    assert "Not run yet (1 of 6): mqar-delta-d64-conv0-lr1.00e-03-seed2." in text
