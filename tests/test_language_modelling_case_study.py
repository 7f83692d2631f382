"""The language-modelling case study (case_studies/language_modelling): configs, the models it compares,
its tables and figures on hand-made results, merging parts, and the --quick run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import plotly.graph_objects as go
import pytest

from case_studies.language_modelling import merge as merge_mod
from case_studies.language_modelling import paper as P
from case_studies.language_modelling import tables as T
from case_studies.language_modelling.__main__ import main
from case_studies.language_modelling.config import FULL, MODELS, QUICK, SEEDS, Protocol, RunConfig, Study
from case_studies.language_modelling.figures import learning_curves, paper_figure, perplexity_figure
from helpers import full_run_in_readme

STUDY_DIR = Path(__file__).resolve().parents[1] / "case_studies" / "language_modelling"

EXPECTED = ["softmax",
            *(f"{rule}-{f}" for rule in ("sum", "delta") for f in ("elu1", "elu1-norm", "dpfp1", "dpfp2", "dpfp3",
                                                                    "favor")),
            "rec-delta", "srwm"]


def test_every_model_of_the_issue_is_run_with_three_seeds_on_one_token_budget():
    assert list(MODELS) == EXPECTED  # 1 + 6 × 2 + 2 = 15
    assert {(r.model, r.seed) for r in FULL.runs} == {(m, s) for m in EXPECTED for s in SEEDS} and len(SEEDS) >= 3
    p = FULL.protocol
    budgets = {(r.train_config(p).steps, r.train_config(p).batch_size, r.model_config(p, 256).n_ctx) for r in FULL.runs}
    assert budgets == {(p.train.steps, p.train.batch_size, p.seq_len)}
    assert p.tokens_per_run == p.train.steps * p.train.batch_size * p.seq_len
    mixers = {m: RunConfig(m).model_config(p, 256).layer_mixers[0] for m in MODELS}
    assert [mixers[m].kind for m in ("softmax", "sum-dpfp2", "delta-dpfp2", "rec-delta", "srwm")] == [
        "softmax", "linear", "delta", "rec_delta", "srwm"]
    assert (mixers["sum-elu1"].feature_map, mixers["sum-elu1"].sum_norm) == ("elu1", False)
    assert (mixers["sum-elu1-norm"].feature_map, mixers["sum-elu1-norm"].sum_norm) == ("elu1", True)
    assert [mixers[f"sum-dpfp{nu}"].dpfp_nu for nu in (1, 2, 3)] == [1, 2, 3]
    assert [mixers[f"delta-dpfp{nu}"].dpfp_nu for nu in (1, 2, 3)] == [1, 2, 3]
    assert mixers["sum-favor"].feature_map == "favor" and mixers["delta-favor"].phi == "favor"
    assert (mixers["delta-elu1"].qk_norm, mixers["delta-elu1-norm"].qk_norm) == ("l2", "sum")
    assert all(mixers[f"delta-{f}"].conv_size == 0 for f in ("elu1", "dpfp1", "favor"))
    seeds = {r.seed: r.model_config(p, 256).seed for r in FULL.runs}
    assert seeds == {s: s for s in SEEDS} and {r.train_config(p).seed for r in FULL.runs} == set(SEEDS)


def test_configs_round_trip_and_reject_bad_input():
    for study in (FULL, QUICK):
        assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert RunConfig.from_dict(RunConfig("delta-dpfp3", 2).to_dict()).name == "delta-dpfp3-s2"
    with pytest.raises(ValueError, match="RunConfig.model must be one of"):
        RunConfig("delta-relu")
    with pytest.raises(ValueError, match="distinct run names"):
        Study(Protocol(), (RunConfig("softmax"), RunConfig("softmax")))
    with pytest.raises(ValueError, match="out_dir must be None"):
        Protocol(train={**FULL.protocol.train.to_dict(), "out_dir": "x"})


def entry(model: str, seed: int, ppl: float) -> dict:
    rule, fmap = next(((r, model[len(r) + 1:]) for r in ("sum", "delta") if model.startswith(r + "-")), (model, "-"))
    return {"name": f"{model}-s{seed}", "run": {"model": model, "seed": seed}, "rule": rule, "feature_map": fmap,
            "label": model, "params": 1000, "tokens": 10, "train_seconds": 2.0, "val_loss": math.log(ppl),
            "val_ppl": ppl, "val_bpb": math.log2(ppl), "val_tokens": 99, "diverged": not math.isfinite(ppl),
            "train_loss": [3.0, 2.0], "eval_loss_by_step": {"1": 3.0, "2": 2.5 + seed}}


RUNS = ([entry("softmax", s, p) for s, p in enumerate((10.0, 12.0, 14.0))]
        + [entry("sum-elu1-norm", s, p) for s, p in enumerate((20.0, 21.0, 22.0))]
        + [entry("delta-elu1-norm", s, p) for s, p in enumerate((15.0, 25.0, 16.0))]
        + [entry("rec-delta", s, p) for s, p in enumerate((30.0, float("nan"), 32.0))])


def test_summary_mean_std_and_divergence_on_hand_made_runs():
    s = T.summary(RUNS).set_index("model")
    assert list(s.index) == ["softmax", "sum-elu1-norm", "delta-elu1-norm", "rec-delta"]  # MODELS order
    assert s.loc["softmax", "ppl_mean"] == pytest.approx(12.0) and s.loc["softmax", "ppl_std"] == pytest.approx(2.0)
    assert s.loc["delta-elu1-norm", "ppl_std"] == pytest.approx(math.sqrt(((15 - 56 / 3) ** 2 + (25 - 56 / 3) ** 2
                                                                         + (16 - 56 / 3) ** 2) / 2))
    assert (s.loc["rec-delta", "diverged"], s.loc["rec-delta", "ppl_mean"]) == (1, pytest.approx(31.0))
    assert s.loc["softmax", "bpb_mean"] == pytest.approx(sum(math.log2(p) for p in (10, 12, 14)) / 3)
    table = T.model_table(RUNS)
    assert "| softmax | softmax | 3 | 12.000 ± 2.000 |" in table and "3 (1 diverged)" in table
    assert "34.1" in table  # the paper's Transformer beside ours


def test_pairwise_verdicts_and_spearman():
    holds = T.pairwise(RUNS, "softmax", "sum-elu1-norm")
    assert holds["diffs"] == [10.0, 9.0, 8.0] and holds["mean"] == pytest.approx(9.0) and holds["verdict"] == "holds"
    assert T.pairwise(RUNS, "sum-elu1-norm", "softmax")["verdict"] == "reversed"
    spread = T.pairwise(RUNS, "delta-elu1-norm", "sum-elu1-norm")  # seed 1 goes the other way
    assert spread["diffs"] == [5.0, -4.0, 6.0] and spread["verdict"] == "within the seed spread"
    assert T.pairwise(RUNS, "rec-delta", "softmax")["seeds"] == [0, 2]  # the diverged seed is left out
    assert T.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert T.spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    text = T.tables({"runs": RUNS, "study": QUICK.to_dict()})
    assert "delta rule beats the sum rule with elu1-norm" in text and "Spearman ρ = " in text and "Not found" in text


def test_figures_on_hand_made_runs():
    fig = perplexity_figure(RUNS)
    assert isinstance(fig, go.Figure)
    means = {x: y for t in fig.data if t.type == "bar" for x, y in zip(t.x, t.y)}
    assert means["softmax"] == pytest.approx(12.0)
    dots = [t for t in fig.data if t.name == "one seed"][0]
    assert len(dots.x) == 11  # 12 runs, one diverged
    assert {t.name for t in learning_curves(RUNS).data} == {"softmax", "sum-elu1-norm", "delta-elu1-norm", "rec-delta"}
    traces = {t.name: len(t.x) for t in paper_figure(RUNS).data}
    assert traces == {"Schlag et al. 2021, Table 2, WikiText-103 small": 3,  # softmax, sum-/delta-elu1-norm
                      "Schlag et al. 2021, Table 5, WikiText-103 small": 1,  # of RUNS' models only softmax
                      "Schlag et al. 2021, Table 2, WikiText-103 medium": 3,
                      "Irie et al. 2021, WikiText-103 small (second-hand)": 4}


def test_paper_tables_sources_and_claim_evidence():
    for key, table in P.TABLES.items():
        assert table["hand"] in ("first", "second") and table["source"] and table["metric"] in ("valid", "test")
        assert all(m in MODELS for m, _ in P.rows_with_models(key))
        if table["hand"] == "first":  # read in the paper itself: both columns, ranked by valid
            assert table["metric"] == "valid" and "ar5iv" in table["source"]
            assert all(r["valid"] is not None and r["test"] is not None for r in table["rows"])
        else:
            assert "second-hand" in table["source"]
    assert [tag for tag, _ in P.for_model("delta-elu1-norm")] == ["S2", "I†"]
    assert [tag for tag, _ in P.for_model("delta-elu1-norm", "medium")] == ["S2m"]
    assert P.score(P.for_model("sum-dpfp1")[0][1]) == 37.7  # valid where the table has it
    assert P.score(P.for_model("rec-delta")[0][1]) == 35.2  # else test
    # both in one table: one entry per table; in no table: first-hand small rows of different tables
    assert P.claim_evidence("delta-favor", "sum-favor") == ["S2: 36.1 vs 39.0 (holds)", "S5: 36.0 vs 38.0 (holds)",
                                                            "S2m: 30.0 vs 32.2 (holds)"]
    assert P.claim_evidence("sum-dpfp1", "sum-elu1-norm") == ["S5 37.7 vs S2 37.1 (reversed)"]
    assert P.claim_evidence("rec-delta", "delta-elu1-norm") == ["I†: 35.2 vs 35.2 (tie)"]
    assert P.claim_evidence("sum-dpfp2", "sum-elu1-norm") == []
    assert "S5 37.7 vs S2 37.1 (reversed)" in T.claims_table([entry(m, s, 10.0 + s) for m in ("sum-dpfp1", "sum-elu1-norm")
                                                              for s in (0, 1)])


def test_merge_orders_parts_and_refuses_quick_runs(tmp_path):
    from case_studies.language_modelling.run import execute  # noqa: F401  (the module the parts ran)

    def part(names, written="2026-11-30 10:00:00", wall=60.0):
        runs = [dict(entry(n.rsplit("-s", 1)[0], int(n.rsplit("-s", 1)[1]), 5.0), name=n, train_cpu_seconds=1.5)
                for n in names]
        return {"quick": False, "study": json.loads(json.dumps(FULL.to_dict())), "runs": runs, "command": "c",
                "wall_seconds": wall, "written": written, "source": "s"}

    parts = [part(["srwm-s0", "softmax-s1"]), part(["softmax-s0"], "2026-11-30 10:30:00", 600.0)]
    merged = merge_mod.merge(parts)
    assert [r["name"] for r in merged["runs"]] == ["softmax-s0", "srwm-s0", "softmax-s1"]
    assert len(merged["parts"]) == 2 and merged["train_cpu_seconds"] == 4.5
    assert merge_mod.span_seconds(parts) == 30 * 60 + 60  # from 09:59 to 10:30
    with pytest.raises(ValueError, match="not made with the full study's protocol"):
        merge_mod.merge([dict(part(["softmax-s0"]), quick=True)])
    with pytest.raises(ValueError, match="not in config.FULL"):
        merge_mod.merge([part(["softmax-s7"])])


def test_part_selection_and_bad_parts(capsys):
    from case_studies.language_modelling.__main__ import select_part

    class AP:
        def error(self, msg):
            raise SystemExit(msg)

    names = [r.name for r in select_part(AP(), FULL, "2/3").runs]
    assert names == [r.name for r in FULL.runs[1::3]]
    assert sorted(sum(([r.name for r in select_part(AP(), FULL, f"{i}/2").runs] for i in (1, 2)), [])) == sorted(
        r.name for r in FULL.runs)
    for bad in ("0/2", "3/2", "x"):
        with pytest.raises(SystemExit):
            select_part(AP(), FULL, bad)


@pytest.mark.integration
def test_quick_run_end_to_end(tmp_path):
    out = tmp_path / "lm"
    main(["--quick", "--out", str(out), "--no-png"])
    results = json.loads((out / "results.json").read_text())
    assert len(results["runs"]) == len(QUICK.runs) == 2 * len(MODELS)
    assert {r["run"]["model"] for r in results["runs"]} == set(MODELS)
    assert all(math.isfinite(r["val_ppl"]) and r["tokens"] == QUICK.protocol.tokens_per_run for r in results["runs"])
    assert results["command"].startswith("python -m case_studies.language_modelling") and results["wall_seconds"] > 0
    assert (out / "tables.md").read_text() == T.tables(results)
    assert {p.name for p in out.glob("*.html")} == {"perplexity_by_model.html", "ours_vs_paper.html",
                                                    "learning_curves.html"}
    assert len(json.loads((out / "partial" / "results.json").read_text())["runs"]) == len(QUICK.runs)
    main(["--replot", "--out", str(out), "--no-png"])  # redraws from results.json alone


def test_readme_holds_the_results_tables_command_and_wall_time():
    results = full_run_in_readme(STUDY_DIR, Study, FULL, T.tables)
    assert len(results["runs"]) == len(FULL.runs)
