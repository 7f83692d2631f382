"""The outlier study's parts "search", "control" and "seeds" (issue 18): the declared grid and rules, the matmul-input
trace checked against the model's own hooks, the statistics on known numbers, the quick runs end to end and
resuming a stopped control part; the seeds part's check of the seed-0 results it reuses."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import pytest
import torch

from case_studies.outliers import control_part, parts, search_part, seed_stats, seeds_part
from case_studies.outliers.__main__ import main
from case_studies.outliers.config import (CONTROL_ARMS, CONTROL_QUICK, FULL, PARTS, QUICK, SEARCH, SEARCH2,
                                          SEARCH2_QUICK, SEARCH3, SEARCH3_CORPUS, SEARCH3_QUICK, SEARCH_QUICK, SEEDS, SEEDS_QUICK, Candidate, ControlRun,
                                          ControlStudy, Protocol, RunConfig, SearchStudy, SeedsStudy, Study,
                                          control_lrs, control_stage1, control_stage2)
from workbench import ModelConfig
from workbench.analysis.outliers import kurtosis, matmul_input_table, trace_matmul_inputs
from workbench.analysis.outliers.quantize import activation_sites
from workbench.model import HookedFastWeightLM

ROOT = Path(__file__).resolve().parents[1]


def test_search_grid_is_declared_in_order_of_cost_and_round_trips():
    cost = [c.steps * c.n_layers * c.d_model ** 2 for c in SEARCH.runs]
    assert cost == sorted(cost) and len(SEARCH.runs) == 6
    assert all(c.weight_decay == 0 for c in SEARCH.runs)
    for study in (SEARCH, SEARCH_QUICK):
        assert SearchStudy.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    p = Candidate(128, 4, 3e-2, 2000).protocol(Protocol())
    assert (p.d_model, p.n_layers, p.n_heads, p.d_head, p.d_mlp) == (128, 4, 4, 32, 512)
    assert (p.train.lr, p.train.weight_decay, p.train.steps, p.train.save_every) == (3e-2, 0.0, 2000, 200)
    assert p.vocab_size == Protocol().vocab_size and p.train.batch_size == Protocol().train.batch_size
    with pytest.raises(ValueError, match="4 heads"):
        Candidate(66, 2, 1e-2, 1000)
    with pytest.raises(ValueError, match="lr"):
        Candidate(64, 2, 0.0, 1000)


def test_search2_changes_one_lever_of_the_first_searchs_best_model_per_candidate():
    best = Candidate(128, 4, 1e-2, 2000)
    assert best in SEARCH.runs
    changed = [{f for f in ("d_model", "lr", "steps", "weight_decay", "seq_len", "batch_size")
                if getattr(c, f) != getattr(best, f)} for c in SEARCH2.runs]
    assert changed == [{"seq_len", "batch_size"}, {"seq_len", "batch_size", "weight_decay"}, {"steps"},
                       {"d_model", "lr"}]
    for study in (SEARCH2, SEARCH2_QUICK):
        assert SearchStudy.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    p = SEARCH2.runs[0].protocol(Protocol())
    assert (p.seq_len, p.train.batch_size) == (512, 4)  # the same tokens per step as 128 × 16
    assert p.seq_len * p.train.batch_size == Protocol().seq_len * Protocol().train.batch_size
    assert SEARCH2.runs[0].name == "d128-L4-lr0.01-wd0-2000steps-T512x4"
    assert best.name == "d128-L4-lr0.01-wd0-2000steps"  # the first search's names are unchanged
    assert Candidate(64, 2, 1e-2, 1000, seq_len=256).name.endswith("-T256xbase")
    with pytest.raises(ValueError, match="batch_size"):
        Candidate(64, 2, 1e-2, 1000, batch_size=0)


def test_search3_is_the_searches_on_another_text_only():
    assert SEARCH3.protocol == dataclasses.replace(Protocol(), corpus=SEARCH3_CORPUS)
    assert Protocol().corpus == "python-topics" and Protocol().task().corpus == "python-topics"
    assert SEARCH3.protocol.task().corpus == SEARCH3_CORPUS == "docstrings:stdlib+torch"
    assert SEARCH3.runs == (SEARCH.runs[4], SEARCH2.runs[2], SEARCH2.runs[3])  # each an earlier candidate
    cost = [c.steps * c.n_layers * c.d_model ** 2 for c in SEARCH3.runs]
    assert cost == sorted(cost)
    for study in (SEARCH3, SEARCH3_QUICK):
        assert SearchStudy.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    # results written before the corpus was a protocol field read back as python-topics
    old = {k: v for k, v in Protocol().to_dict().items() if k != "corpus"}
    assert Protocol.from_dict(old) == Protocol()


def _full_entry(name, resid, matmul, ratio):
    e = _entry(name, resid, matmul, ratio, val_ppl=20.0, final_signal_propagation={"resid_post": 0.2},
               run_seconds=60.0)
    e["w8a8"] = {k: {"ppl_ratio": ratio} for k in search_part.QUANTS}
    e["matmul_inputs"] = [{"layer": 0, "site": "attn_in", "max_median_ratio": 4.0, "max_abs": 2.5},
                          {"layer": 1, "site": "o_in", "max_median_ratio": 7.5, "max_abs": 1.5},
                          {"layer": 1, "site": "mlp_hidden", "max_median_ratio": float("inf"), "max_abs": 30.0}]
    return e


def test_an_unfinished_search_says_what_is_left_and_chooses_nothing_yet():
    runs = [_full_entry("a", 3.0, 2.0, 1.01)]
    text = search_part.tables({"part": "search2", "runs": runs, "left": ["b", "c"]})
    assert text.startswith("## Second search") and "**Incomplete: 1 candidates run, 2 left** (b, c); the same command continues." in text
    assert "Chosen: not yet" in text
    # the MLP hidden layer (median 0 after the GELU: ratio inf) is left out of the max/median table
    assert "| a | 7.5 (o_in, layer 1) | 2.5 |" in text
    text = search_part.tables({"part": "search2", "runs": runs + [_full_entry("b", 12.0, 1.0, 1.2)], "left": ["c"]})
    assert "Chosen: **" in text and "the first candidate meeting the rule" in text


def test_control_stages_sweep_three_lrs_at_seed_0_then_fresh_seeds_seed_major():
    assert control_lrs(1e-2) == (0.00333, 0.01, 0.03)
    s1 = control_stage1(1e-2)
    assert len(s1) == 12 and {r.seed for r in s1} == {0} and s1[0].arm == CONTROL_ARMS[0]
    assert CONTROL_ARMS[0].name == "softmax-prenorm-adamw"
    chosen = {a.name: 0.01 * (i + 1) for i, a in enumerate(CONTROL_ARMS)}
    s2 = control_stage2(chosen)
    assert [r.seed for r in s2] == [1] * 4 + [2] * 4 + [3] * 4
    assert all(r.lr == chosen[r.arm.name] for r in s2)
    run = ControlRun("softmax", "outlier_protected", "soap", 0.03, 2)
    p = run.protocol(Protocol())
    assert (p.train.lr, p.train.seed, p.seed) == (0.03, 2, 2) and run.name == "softmax-op-soap-lr0.03-seed2"
    assert ControlStudy.from_dict(json.loads(json.dumps(CONTROL_QUICK.to_dict()))) == CONTROL_QUICK
    with pytest.raises(ValueError, match="optimizer"):
        ControlRun("softmax", "pre_norm", "sgd", 0.01, 0)
    with pytest.raises(ValueError, match="lr"):
        ControlRun("softmax", "pre_norm", "adamw", -1.0, 0)


def _entry(name, resid, matmul, ratio, **extra):
    return {"name": name, "candidate": Candidate(64, 2, 1e-2, 1000).to_dict(), "final_kurtosis": {"resid_post": resid},
            "final_matmul_kurtosis": {"mlp_in": matmul, "attn_in": 1.0}, "w8a8": {"per_tensor": {"ppl_ratio": ratio}},
            **extra}


def test_search_rule_needs_both_kurtosis_and_a_w8a8_cost_and_takes_the_first():
    assert not search_part.meets_rule(_entry("a", 50.0, 1.0, 1.05))  # outliers without a W8A8 cost
    assert not search_part.meets_rule(_entry("b", 1.0, 9.9, 1.5))  # a W8A8 cost without kurtosis ≥ 10
    assert search_part.meets_rule(_entry("c", 1.0, 10.0, 1.10))  # a matmul input counts
    assert search_part.meets_rule(_entry("d", 12.0, 1.0, 1.2))
    entries = [_entry("a", 50.0, 1.0, 1.05), _entry("c", 1.0, 10.0, 1.10), _entry("d", 12.0, 1.0, 1.2)]
    entries[2]["candidate"] = Candidate(128, 4, 1e-2, 1000).to_dict()
    chosen, why = search_part.select(entries)
    assert chosen == Candidate(64, 2, 1e-2, 1000) and why.startswith("c:")
    chosen, why = search_part.select([_entry("a", 50.0, 1.0, 1.05), {**_entry("b", 1.0, 1.0, 1.07),
                                      "candidate": Candidate(128, 4, 3e-2, 1000).to_dict()}])
    assert chosen == Candidate(128, 4, 3e-2, 1000) and "not a positive control" in why
    assert search_part.select([]) == (None, "no candidate has run")


@pytest.mark.parametrize("block", ["pre_norm", "outlier_protected"])
@pytest.mark.parametrize("mixer", ["softmax", "delta"])
def test_matmul_inputs_are_what_the_quantiser_rounds_and_match_the_models_hooks(block, mixer):
    cfg = ModelConfig(d_vocab=40, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=32, n_ctx=12, mixer=mixer,
                      block=block, seed=3)
    model = HookedFastWeightLM(cfg)
    tokens = torch.randint(0, 40, (3, 12), generator=torch.Generator().manual_seed(0))
    stats = trace_matmul_inputs(model, [tokens[:2], tokens[2:]], progress=False)
    assert set(stats) == {f"{n}:{w}" for n, w in activation_sites(model).items()}
    assert all(len(m._forward_hooks) + len(m._forward_pre_hooks) == 0 for m in model.modules())  # removed
    table = matmul_input_table(stats, cfg.n_layers).set_index(["layer", "site"])
    assert set(table.index) == {(i, s) for i in range(2) for s in ("attn_in", "o_in", "mlp_in", "mlp_hidden")} | {
        (2, "unembed_in")}
    _, cache = model.run_with_cache(tokens)
    flat = lambda x: x.reshape(-1, x[0, 0].numel())  # noqa: E731
    o_hook = "hook_o_in" if "blocks.1.attn.hook_o_in" in cache else "hook_z"
    want = {(1, "mlp_hidden"): cache["blocks.1.mlp.hook_post"], (0, "o_in"): cache[f"blocks.0.attn.{o_hook}"]}
    if block == "outlier_protected":  # no norm before the branches after the first block: they read the stream
        want[(1, "attn_in")] = cache["blocks.1.hook_resid_pre"]
        want[(1, "mlp_in")] = cache["blocks.1.hook_resid_mid"]
    else:
        want[(1, "attn_in")] = cache["blocks.1.ln1.hook_normalized"]  # the LayerNorm output, gains included
        want[(1, "mlp_in")] = cache["blocks.1.ln2.hook_normalized"]
    for key, act in want.items():
        assert table.loc[key, "kurtosis"] == pytest.approx(float(kurtosis(flat(act))), rel=1e-4), key
    assert (table.n_tokens == 36).all()


def _control_entry(block, optimizer, lr, seed, ppl, kurt, ratio):
    return {"name": f"x-{block}-{optimizer}-{lr}-{seed}", "arm": ControlRun("softmax", block, optimizer, lr, seed).arm.name,
            "control": ControlRun("softmax", block, optimizer, lr, seed).to_dict(), "run_seconds": 60.0,
            "val_ppl": ppl, "final_kurtosis": {"resid_post": kurt},
            "final_matmul_kurtosis": {"attn_in": kurt, "mlp_in": kurt, "mlp_hidden": 1.0},
            "final_signal_propagation": {"resid_post": 0.5},
            "w8a8": {k: {"ppl_ratio": ratio} for k in control_part.QUANTS}}


def test_control_statistics_on_known_numbers():
    runs = [_control_entry("pre_norm", "adamw", lr, 0, ppl, 5.0, 1.2) for lr, ppl in ((0.01, 30.0), (0.03, 20.0),
                                                                                     (0.1, math.nan))]
    runs += [_control_entry("outlier_protected", "adamw", lr, 0, ppl, 2.0, 1.0) for lr, ppl in ((0.01, 25.0),
                                                                                            (0.03, 26.0))]
    assert control_part.chosen_lrs(runs) == {"softmax-prenorm-adamw": 0.03, "softmax-op-adamw": 0.01}
    for seed, (kp, ko) in zip((1, 2, 3), ((10.0, 2.0), (14.0, 3.0), (12.0, 1.0))):
        runs.append(_control_entry("pre_norm", "adamw", 0.03, seed, 20.0 + seed, kp, 1.3))
        runs.append(_control_entry("outlier_protected", "adamw", 0.01, seed, 25.0, ko, 1.0))
    runs.append(_control_entry("pre_norm", "adamw", 0.01, 1, 99.0, 99.0, 9.9))  # not the chosen lr: left out
    st = control_part.arm_stats(runs, (1, 2, 3)).set_index("arm")
    row = st.loc["softmax-prenorm-adamw"]
    assert row["n"] == 3 and row["kurt_resid"] == pytest.approx(12.0)
    half = 4.302652729911275 * 2.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n, sd of (10, 14, 12) = 2
    assert (row["kurt_resid_lo"], row["kurt_resid_hi"]) == pytest.approx((12.0 - half, 12.0 + half), rel=1e-6)
    c = control_part.contrasts(runs, (1, 2, 3)).set_index(["contrast", "metric"])
    d = c.loc[("OP − pre-norm, AdamW", "kurt_resid")]
    assert d["n"] == 3 and d["mean"] == pytest.approx(-10.0) and d["p"] < 0.01
    assert c.loc[("OP − pre-norm, AdamW", "w8a8_tensor"), "mean"] == pytest.approx(-0.3)
    study = {"seeds": [1, 2, 3], "runs": [r["control"] for r in runs if r["control"]["seed"] == 0]}
    text = control_part.tables({"runs": runs, "study": study, "left": ["a", "b"]})
    assert "Incomplete: 12 runs finished, 2 left" in text and "0.03 (chosen)" in text
    assert "| Outlier Protected | AdamW | 0.01 | 1,2,3 |" in text
    study["runs"].append(ControlRun("softmax", "outlier_protected", "adamw", 0.1, 0).to_dict())  # one not run yet
    text = control_part.tables({"runs": runs, "study": study, "left": ["a"]})
    assert "0.03 (chosen)" in text and "0.01 (best so far)" in text


@pytest.fixture(scope="module")
def quick_parts(tmp_path_factory):
    out = tmp_path_factory.mktemp("outlier-parts")
    timing = {}
    for part in ("search", "search2", "search3", "control"):
        start = time.perf_counter()
        main(["--part", part, "--quick", "--no-png", "--out", str(out / part)])
        timing[part] = time.perf_counter() - start
    return out, timing


@pytest.mark.integration
def test_search_quick_runs_the_declared_rule_end_to_end(quick_parts):
    out, timing = quick_parts
    results = json.loads((out / "search" / "results.json").read_text())
    assert results["part"] == "search" and "--part search" in results["command"]
    assert SearchStudy.from_dict(results["study"]) == SEARCH_QUICK
    assert results["cpu_seconds"] < 30, f"--part search --quick used {results['cpu_seconds']:.0f} CPU-s"
    names = [r["name"] for r in results["runs"]]
    assert names == [c.name for c in SEARCH_QUICK.runs][:len(names)]
    chosen, why = search_part.select(results["runs"])
    assert results["chosen"] == chosen.to_dict() and results["chosen_why"] == why
    for r in results["runs"]:
        assert set(r["final_matmul_kurtosis"]) == {"attn_in", "o_in", "mlp_in", "mlp_hidden", "unembed_in"}
        assert set(r["w8a8"]) == set(search_part.QUANTS) and r["final_kurtosis"]["resid_post"] >= 1
    text = (out / "search" / "tables.md").read_text()
    assert text == search_part.tables(results) and f"Chosen: **{chosen.name}**" in text
    assert not (out / "search" / ".progress").exists()


@pytest.mark.integration
def test_search3_quick_trains_on_its_own_corpus(quick_parts):
    out, timing = quick_parts
    results = json.loads((out / "search3" / "results.json").read_text())
    assert results["part"] == "search3" and SearchStudy.from_dict(results["study"]) == SEARCH3_QUICK
    assert results["study"]["protocol"]["corpus"] == "python-docstrings"
    assert results["machine"]["python"] and results["machine"]["torch"]  # the versions the text came from
    text = (out / "search3" / "tables.md").read_text()
    assert text == search_part.tables(results) and text.startswith("## Third search")


@pytest.mark.integration
def test_search2_quick_runs_its_own_candidates_into_its_own_part(quick_parts):
    out, timing = quick_parts
    results = json.loads((out / "search2" / "results.json").read_text())
    assert results["part"] == "search2" and "--part search2" in results["command"]
    assert SearchStudy.from_dict(results["study"]) == SEARCH2_QUICK
    assert results["cpu_seconds"] < 30, f"--part search2 --quick used {results['cpu_seconds']:.0f} CPU-s"
    assert [r["candidate"]["seq_len"] for r in results["runs"]] == [64, None]
    text = (out / "search2" / "tables.md").read_text()
    assert text == search_part.tables(results) and text.startswith("## Second search")
    assert (out / "search2" / "search2_figure.html").exists()


@pytest.mark.integration
def test_control_quick_runs_both_stages_and_reports_seeds_and_paired_tests(quick_parts):
    out, timing = quick_parts
    results = json.loads((out / "control" / "results.json").read_text())
    assert ControlStudy.from_dict(results["study"]) == CONTROL_QUICK and results["left"] == []
    assert results["cpu_seconds"] < 45, f"--part control --quick used {results['cpu_seconds']:.0f} CPU-s"
    lrs = control_part.chosen_lrs(results["runs"])
    assert set(lrs) == {a.name for a in CONTROL_ARMS}
    assert [ControlRun.from_dict(r) for r in results["stage2"]] == list(control_stage2(lrs, seeds=(1, 2)))
    assert [r["name"] for r in results["runs"]] == ([r.name for r in CONTROL_QUICK.runs]
                                                   + [ControlRun.from_dict(r).name for r in results["stage2"]])
    text = (out / "control" / "tables.md").read_text()
    assert text == control_part.tables(results) and "All 16 runs finished" in text
    assert "| OP − pre-norm, AdamW | Kurt, largest matmul input | 2 |" in text


@pytest.mark.integration
def test_a_stopped_control_part_reports_what_it_has_and_resumes_without_rerunning(tmp_path, monkeypatch):
    real, calls = control_part.execute, []

    def stopping(run, *args, **kwargs):
        if len(calls) == 3:
            raise KeyboardInterrupt
        calls.append(run.name)
        return real(run, *args, **kwargs)

    monkeypatch.setattr(control_part, "execute", stopping)
    argv = ["--part", "control", "--quick", "--no-png", "--out", str(tmp_path)]
    with pytest.raises(KeyboardInterrupt):
        main(argv)
    partial = json.loads((tmp_path / "results.json").read_text())
    assert [r["name"] for r in partial["runs"]] == calls == [r.name for r in CONTROL_QUICK.runs[:3]]
    assert partial["left"][:5] == [r.name for r in CONTROL_QUICK.runs[3:]] and "Incomplete: 3 runs finished" in (
        tmp_path / "tables.md").read_text()
    calls.clear()
    monkeypatch.setattr(control_part, "execute", lambda run, *a, **k: (calls.append(run.name), real(run, *a, **k))[1])
    main(argv)
    done = json.loads((tmp_path / "results.json").read_text())
    assert done["runs"][:3] == partial["runs"]  # taken from out/.progress, not run again
    assert calls == [r["name"] for r in done["runs"][3:]] and len(done["runs"]) == 16
    assert not (tmp_path / ".progress").exists()


STUDY_DIR = ROOT / "case_studies" / "outliers"


def test_committed_search_is_the_declared_one_and_its_tables_are_in_the_readme():
    from case_studies.outliers.config import CONTROL_CANDIDATE

    results = json.loads((STUDY_DIR / "results" / "search" / "results.json").read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and SearchStudy.from_dict(results["study"]) == SEARCH
    assert [r["name"] for r in results["runs"]] == [c.name for c in SEARCH.runs][:len(results["runs"])]
    assert search_part.tables(results) in readme and results["command"] in readme
    assert f"{results['wall_seconds'] / 60:.1f} min" in readme
    chosen, why = search_part.select(results["runs"])
    assert CONTROL_CANDIDATE == chosen and why in readme  # the control runs at what the rule chose


@pytest.mark.parametrize("part, declared", [("search2", SEARCH2), ("search3", SEARCH3)])
def test_committed_later_searches_are_the_declared_ones_and_their_tables_are_in_the_readme(part, declared):
    path = STUDY_DIR / "results" / part / "results.json"
    if not path.is_file():
        pytest.skip(f"{part} has not been committed")
    results = json.loads(path.read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and results["part"] == part
    assert SearchStudy.from_dict(results["study"]) == declared
    names = [r["name"] for r in results["runs"]]
    assert names == [c.name for c in declared.runs][:len(names)]  # in the declared order
    assert results["left"] == [c.name for c in declared.runs][len(names):] or any(map(search_part.meets_rule,
                                                                                      results["runs"]))
    assert search_part.tables(results) in readme and results["command"] in readme
    if not results["left"]:
        assert f"{results['wall_seconds'] / 60:.1f} min" in readme


def test_committed_control_is_the_declared_one_and_its_tables_are_in_the_readme():
    from case_studies.outliers.config import CONTROL

    results = json.loads((STUDY_DIR / "results" / "control" / "results.json").read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and ControlStudy.from_dict(results["study"]) == CONTROL
    names = [r["name"] for r in results["runs"]]
    stage1 = [r.name for r in CONTROL.runs]
    assert names[:len(stage1)] == stage1[:len(names)]  # stage 1 in its declared order
    assert control_part.tables(results) in readme and results["command"] in readme
    for name in results["left"]:
        assert name in readme  # what is left is said


# ---- part "seeds"

def test_seeds_part_is_the_main_grid_at_seeds_1_and_2_seed_major_at_the_main_lr():
    assert SEEDS.protocol == FULL.protocol and SEEDS.main == FULL and SEEDS_QUICK.main == QUICK
    assert [(r.arm, r.seed) for r in SEEDS.runs] == [(a, s) for s in (1, 2) for a in FULL.runs]
    assert {r.lr for r in SEEDS.runs} == {FULL.protocol.train.lr} == {3e-3}
    run = SEEDS.runs[9]
    assert run.protocol(SEEDS.protocol) == dataclasses.replace(
        FULL.protocol, train=dataclasses.replace(FULL.protocol.train, seed=2))  # only the seed changes
    assert SeedsStudy.from_dict(json.loads(json.dumps(SEEDS.to_dict()))) == SEEDS
    assert PARTS["seeds"] == (SEEDS, SEEDS_QUICK) and parts.MODULES["seeds"] is seeds_part


def test_seed_0_is_read_from_the_committed_main_results_only_if_they_are_the_main_study():
    results = json.loads((STUDY_DIR / "results" / "results.json").read_text())
    entries = seeds_part.seed0_entries(SEEDS, results, "results.json")
    assert [e["name"] for e in entries] == [r.name for r in FULL.runs]
    assert all(e["control"] == ControlRun(e["run"]["mixer"], e["run"]["block"], e["run"]["optimizer"], 3e-3, 0).to_dict()
               for e in entries)
    assert entries[0]["val_ppl"] == results["runs"][0]["val_ppl"]
    other_lr = copy.deepcopy(results)
    other_lr["study"]["protocol"]["lr"] = 1e-3
    with pytest.raises(ValueError, match="another protocol.*lr"):
        seeds_part.seed0_entries(SEEDS, other_lr)
    other_seed = copy.deepcopy(results)
    other_seed["study"]["protocol"]["seed"] = 1
    with pytest.raises(ValueError, match="another protocol.*seed"):
        seeds_part.seed0_entries(SEEDS, other_seed)
    fewer = copy.deepcopy(results)
    fewer["study"]["runs"] = fewer["study"]["runs"][:-1]
    with pytest.raises(ValueError, match="the seeds part needs"):
        seeds_part.seed0_entries(SEEDS, fewer)
    unfinished = copy.deepcopy(results)
    unfinished["runs"] = unfinished["runs"][:-1]
    with pytest.raises(ValueError, match=r"lack the finished runs \['delta-op-soap'\]"):
        seeds_part.seed0_entries(SEEDS, unfinished)
    with pytest.raises(ValueError, match="another protocol"):  # the quick main results are not the full study's
        seeds_part.seed0_entries(SEEDS, {"study": QUICK.to_dict(), "runs": []})
    with pytest.raises(ValueError, match="no seed-0 results at .*run the main study first"):
        seeds_part.load_seed0(dataclasses.replace(SEEDS, seed0="no/such/results.json"))


def _seeds_entry(run: RunConfig, seed, ppl, kurt, ratio=1.0):
    return {"name": f"{run.name}-{seed}", "control": ControlRun(run.mixer, run.block, run.optimizer, 3e-3, seed).to_dict(),
            "run_seconds": 60.0, "val_ppl": ppl, "final_kurtosis": {"resid_post": kurt, "mlp_hidden": 2 * kurt},
            "w8a8": {k: {"ppl_ratio": ratio, "ppl_w8a8": ppl * ratio} for k in ("per_tensor", "per_token",
                                                                                 "per_tensor_a4")}}


def test_factor_contrasts_pair_arms_that_differ_in_one_factor_only():
    pairs = seed_stats.factor_contrasts(FULL.runs, "block", "outlier_protected", "pre_norm", "OP − pre-norm")
    assert pairs == (("OP − pre-norm, softmax, AdamW", "softmax-op-adamw", "softmax-prenorm-adamw"),
                     ("OP − pre-norm, softmax, SOAP", "softmax-op-soap", "softmax-prenorm-soap"),
                     ("OP − pre-norm, delta, AdamW", "delta-op-adamw", "delta-prenorm-adamw"),
                     ("OP − pre-norm, delta, SOAP", "delta-op-soap", "delta-prenorm-soap"))
    assert seed_stats.factor_contrasts(FULL.runs[:4], "mixer", "delta", "softmax", "x") == ()  # no delta arm
    with pytest.raises(ValueError, match="factor must be"):
        seed_stats.factor_contrasts(FULL.runs, "lr", 1, 2, "x")


def test_seeds_statistics_on_known_numbers():
    base = {r.name: 20.0 + i for i, r in enumerate(FULL.runs)}  # per arm ppl at seed 0
    runs = []
    for seed, shift in zip((0, 1, 2), (0.0, 2.0, 4.0)):
        for r in FULL.runs:
            kurt = 3.0 + seed if r.block == "pre_norm" else 1.0  # OP − pre-norm kurtosis: −2, −3, −4
            runs.append(_seeds_entry(r, seed, base[r.name] + shift, kurt, 1.0 + 0.01 * seed))
    st = seeds_part.arm_stats(runs).set_index("arm")
    assert list(st.index) == [r.name for r in FULL.runs] and set(st["n"]) == {3} and set(st["seeds"]) == {"0,1,2"}
    row = st.loc["softmax-prenorm-adamw"]
    half = 4.302652729911275 * 2.0 / math.sqrt(3)  # t(0.975, 2) · sd / √n, sd of (20, 22, 24) = 2
    assert (row["val_ppl"], row["val_ppl_lo"], row["val_ppl_hi"]) == pytest.approx((22.0, 22.0 - half, 22.0 + half))
    assert row["kurt_mlp_hidden"] == pytest.approx(8.0) and row["w8a8_tensor_ppl"] == pytest.approx(
        (20.0 + 22.0 * 1.01 + 24.0 * 1.02) / 3)
    c = seeds_part.contrasts(runs).set_index(["contrast", "metric"])
    assert len(seeds_part.pairs(runs)) == 12 and len(c) == 12 * len(seeds_part.CONTRAST_METRICS)
    assert set(c["n"]) == {3}
    d = c.loc[("OP − pre-norm, delta, SOAP", "kurt_resid")]
    assert d["mean"] == pytest.approx(-3.0) and d["p"] < 0.05  # paired: −2, −3, −4
    d = c.loc[("OP − pre-norm, softmax, AdamW", "val_ppl")]  # softmax-op-adamw is arm 2, prenorm-adamw arm 0
    assert (d["mean"], d["lo"], d["hi"], d["p"]) == (2.0, 2.0, 2.0, 0.0)  # the same +2 at every seed
    assert c.loc[("delta − softmax, pre-norm, AdamW", "val_ppl"), "mean"] == pytest.approx(4.0)
    text = seeds_part.tables({"runs": runs[:20], "study": SEEDS.to_dict(), "left": ["a", "b", "c", "d"]})
    assert "Incomplete: 12 fresh runs finished, 4 left** (a, b, c, d)" in text
    assert "| delta | Outlier Protected | SOAP | 2 | 0,1 |" in text  # an arm seed 2 has not reached yet: n = 2
    assert "| softmax | pre-norm | AdamW | 3 | 0,1,2 |" in text


@pytest.fixture(scope="module")
def quick_seeds(tmp_path_factory):
    out = tmp_path_factory.mktemp("outlier-seeds")
    main(["--quick", "--no-png", "--out", str(out / "main")])
    study = dataclasses.replace(SEEDS_QUICK, seed0=str(out / "main" / "results.json"))
    return out, study


@pytest.mark.integration
def test_seeds_quick_reuses_seed_0_and_runs_seeds_1_and_2(quick_seeds, monkeypatch):
    out, study = quick_seeds
    monkeypatch.setitem(PARTS, "seeds", (SEEDS, study))
    main(["--part", "seeds", "--quick", "--no-png", "--out", str(out / "seeds")])
    results = json.loads((out / "seeds" / "results.json").read_text())
    assert results["part"] == "seeds" and "--part seeds" in results["command"] and results["left"] == []
    assert SeedsStudy.from_dict(results["study"]) == study
    assert results["cpu_seconds"] < 30, f"--part seeds --quick used {results['cpu_seconds']:.0f} CPU-s"
    seed0 = json.loads((out / "main" / "results.json").read_text())["runs"]
    assert [r["val_ppl"] for r in results["runs"][:8]] == [r["val_ppl"] for r in seed0]  # read, not rerun
    assert [r["name"] for r in results["runs"][8:]] == [r.name for r in study.runs]
    assert set(results["runs"][8]["w8a8"]) == set(json.loads((out / "main" / "results.json").read_text())["runs"][0]["w8a8"])
    assert not (out / "main" / "checkpoints" / study.runs[0].name).exists()  # fresh runs go to their own folder
    text = (out / "seeds" / "tables.md").read_text()
    assert text == seeds_part.tables(results) and "All 16 fresh runs finished" in text
    assert "| OP − pre-norm, delta, SOAP | Kurt resid_post | 3 |" in text
    assert not (out / "seeds" / ".progress").exists()


@pytest.mark.integration
def test_seeds_part_stops_before_writing_anything_when_seed_0_is_not_the_main_study(tmp_path, monkeypatch):
    wrong = tmp_path / "results.json"
    wrong.write_text(json.dumps({"study": FULL.to_dict(), "runs": []}))
    monkeypatch.setitem(PARTS, "seeds", (SEEDS, dataclasses.replace(SEEDS_QUICK, seed0=str(wrong))))
    with pytest.raises(ValueError, match="another protocol"):
        main(["--part", "seeds", "--quick", "--no-png", "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_committed_seeds_are_the_declared_ones_on_the_committed_seed_0_and_their_tables_are_in_the_readme():
    results = json.loads((STUDY_DIR / "results" / "seeds" / "results.json").read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and SeedsStudy.from_dict(results["study"]) == SEEDS
    assert results["runs"][:8] == json.loads(json.dumps(seeds_part.load_seed0(SEEDS)))  # seed 0 as committed
    fresh = [r["name"] for r in results["runs"][8:]]
    assert fresh == [r.name for r in SEEDS.runs][:len(fresh)]  # seed-major, in the declared order
    assert fresh + results["left"] == [r.name for r in SEEDS.runs]
    assert seeds_part.tables(results) in readme and results["command"] in readme
