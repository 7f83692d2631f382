"""The memorization case study: bookkeeping on hand-built cases, the --quick run end to end, and the
shipped full run against its README."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import torch

from helpers import full_run_in_readme

from case_studies.memorization.__main__ import main
from case_studies.memorization.config import FULL, QUICK, Protocol, RunConfig, Study, Variant
from case_studies.memorization.run import edit_row, filler, headline, recite, split_validation
from case_studies.memorization.tables import tables
from workbench import HookedFastWeightLM
from workbench.analysis.memorization import recitation_table

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "memorization"
FIGURES = ["tradeoff", "rho_sweep", "by_repetition", "offsets", "prompt_position", "prefix_length"]


def test_headline_is_the_smallest_rho_within_the_perplexity_budget():
    sweep = [{"variant": "unedited", "method": "none", "rho": 1.0, "ppl_ratio": 1.0}]
    sweep += [{"variant": "a", "method": "kfac", "rho": r, "ppl_ratio": x} for r, x in ((0.9, 1.05), (0.8, 1.19),
                                                                                       (0.7, 1.4))]
    sweep += [{"variant": "b", "method": "svd", "rho": r, "ppl_ratio": x} for r, x in ((0.9, 1.3), (0.8, 2.0))]
    assert headline(sweep, 1.2) == {"a": 0.8, "b": None}
    assert headline(sweep, 1.5) == {"a": 0.7, "b": 0.9}


def test_edit_row_scores_the_memorized_set_by_repetition_and_position():
    table = pd.DataFrame({"canary": [0, 1, 2, 3], "repetitions": [4, 4, 64, 64], "position": [0, 8, 0, 8],
                          "strict": [False, False, True, False], "loose": [True, False, True, True],
                          "norm_distance": [0.25, 1.0, 0.0, 0.125]})
    v = Variant("kfac", ("mlp_in",), (-1,), stats="heldout")
    row = edit_row(v, 0.8, table, memorized=[2, 3], ppl=12.0, base_ppl=10.0, agreement=0.9, report=None)
    assert row["variant"] == "K-FAC mlp_in (last layer), heldout stats" and row["method"] == "kfac"
    assert row["ppl_ratio"] == pytest.approx(1.2) and row["n_memorized"] == 2
    assert row["strict_memorized"] == 0.5 and row["loose_memorized"] == 1.0
    assert row["distance_memorized"] == pytest.approx(0.0625)
    assert row["strict@4"] == 0.0 and row["strict@64"] == 0.5 and row["loose@4"] == 0.5
    assert row["strict@pos0"] == 0.5 and row["strict@pos8"] == 0.0
    none = edit_row(None, 1.0, table, [], 1.0, 1.0, 1.0, None)
    assert none["variant"] == "unedited" and none["method"] == "none" and none["strict_memorized"] is None


def test_split_validation_halves_the_validation_windows():
    task = QUICK.protocol.task()
    stats, val = split_validation(task)
    a, b = torch.cat(stats), torch.cat(val)
    assert abs(len(a) - len(b)) <= 1 and torch.equal(torch.cat([a, b]), torch.cat(task.validation(16)))


@pytest.mark.integration
def test_recite_puts_the_prompt_after_validation_text_at_the_training_position():
    protocol = QUICK.protocol
    task = protocol.task()
    model = HookedFastWeightLM(QUICK.runs[1].model_config(protocol, task.d_vocab))
    got = recite(model, task, 4, 4, "trained")
    table = task.canary_table()
    assert got.canary.tolist() == table.canary.tolist() and got.prompt_position.tolist() == table.position.tolist()
    assert (got.prefix_len == 4).all()
    cans = task.canaries()
    for i in (0, len(table) - 1):  # by hand: filler of `position` tokens, then the canary's first 4 tokens
        p = int(table.position[i])
        seq = torch.cat([filler(task, i, p), cans[i]])[None]
        want = recitation_table(model, seq, [p + 4], 4).iloc[0]
        assert (got.strict[i], got.distance[i]) == (want.strict, want.distance)
    assert torch.equal(filler(task, 3, 5), filler(task, 3, 9)[:5]) and len(filler(task, 3, 0)) == 0
    at_zero = recite(model, task, 4, 4, 0)
    assert (at_zero.prompt_position == 0).all()
    first = table.position == 0
    assert at_zero[first].distance.tolist() == got[first].distance.tolist()


def test_configs_round_trip_and_reject_bad_input():
    for study in (FULL, QUICK):
        assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert [r.name for r in FULL.runs] == ["mem-delta", "mem-softmax"]
    assert FULL.protocol.task().n_rows == FULL.protocol.train.steps * FULL.protocol.train.batch_size
    with pytest.raises(ValueError, match="mixer"):
        RunConfig("mamba")
    with pytest.raises(ValueError, match="fit in canary_len"):
        Protocol(prefix_len=20, suffix_len=16)
    with pytest.raises(ValueError, match="offset"):
        Protocol(offsets=(0, 20))
    with pytest.raises(ValueError, match="kinds"):
        Variant("kfac", ("mlp_up",), stats="train")
    with pytest.raises(ValueError, match="stats"):
        Variant("svd", stats="train")
    with pytest.raises(ValueError, match="stats"):
        Variant("kfac")
    with pytest.raises(ValueError, match="distinct"):
        Protocol(variants=(Variant("svd"), Variant("svd")))
    with pytest.raises(ValueError, match="rhos"):
        Protocol(rhos=(1.0,))
    with pytest.raises(ValueError, match="unknown Protocol keys"):
        Protocol.from_dict({"stepz": 3})


# ---------------------------------------------------------------- quick mode end to end

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("memorization") / "results"
    main(["--quick", "--out", str(out)])
    return out, json.loads((out / "results.json").read_text())


@pytest.mark.integration
def test_quick_mode_writes_results_figures_and_tables(quick_run):
    out, results = quick_run
    assert results["quick"] is True and results["command"].startswith("python -m case_studies.memorization --quick")
    assert results["wall_seconds"] > 0 and Study.from_dict(results["study"]) == QUICK
    protocol = QUICK.protocol
    for run, cfg in zip(results["runs"], QUICK.runs):
        assert run["name"] == cfg.name
        canaries = pd.DataFrame(run["canaries"])
        assert canaries.realized.tolist() == canaries.repetitions.tolist()
        assert set(run["memorized"]) == set(canaries[canaries.recited].canary)
        sweep = pd.DataFrame(run["sweep"])
        none = sweep[sweep.method == "none"].iloc[0]
        assert none.ppl == pytest.approx(run["val_ppl"]) and none.top10_agreement == 1.0
        for r in protocol.repetitions:  # the unedited row is the main probe of the canaries
            assert none[f"strict@{r}"] == pytest.approx(canaries[canaries.repetitions == r].recited.mean())
        assert len(sweep) == 1 + len(protocol.variants) * len(protocol.rhos)
        assert list(dict.fromkeys(sweep.variant[1:])) == [v.name for v in protocol.variants]
        assert sorted(set(sweep[sweep.method == "kfac"].rho)) == sorted(protocol.rhos)
        assert set(run["headline"]) == {v.name for v in protocol.variants}
        assert ((sweep.top10_agreement > 0) & (sweep.top10_agreement <= 1)).all()
        layers = pd.DataFrame(run["edit_layers"])
        n_sites = {"all layers": 4, "last layer": 2}  # 2 layers × (W_in, W_out)
        assert len(layers) == len(protocol.rhos) * sum(n_sites[v.sites_name.split("(")[1][:-1]]
                                                       for v in protocol.variants)
        assert (layers[layers.method == "kfac"].mass_kept >= layers[layers.method == "kfac"].rho - 1e-9).all()
        assert set(layers[layers.variant.str.contains("last layer")].layer) == {1}
        heldout = sum(len(b) for b in split_validation(protocol.task())[0]) * protocol.seq_len
        assert run["kfac_tokens"] == {"heldout": heldout,
                                      "train": protocol.kfac_batches * protocol.train.batch_size * protocol.seq_len}
        offsets = pd.DataFrame(run["by_offset"])
        assert sorted(set(offsets.offset)) == list(protocol.offsets) and offsets.n.sum() == len(canaries) * len(
            protocol.offsets)
        prompt = pd.DataFrame(run["by_prompt_position"])
        assert set(zip(prompt.position, prompt.prompt_position)) == {(p, 0) for p in protocol.positions} | {
            (p, p) for p in protocol.positions}
        assert set(pd.DataFrame(run["by_prefix_len"]).prefix_len) == set(protocol.prefix_lens)
        assert set(run["spectra"]) == {"heldout", "train"}
        assert set(run["spectra"]["heldout"]) == {"blocks.1.mlp.W_in", "blocks.1.mlp.W_out"}
        for rows in run["spectra"]["train"].values():
            spectrum = pd.DataFrame(rows)
            assert spectrum.cumulative.iloc[-1] == pytest.approx(1.0) and spectrum.curvature.is_monotonic_decreasing
    for name in FIGURES + [f"spectrum_{r['name']}_{s}" for r in results["runs"] for s in ("heldout", "train")]:
        for ext in ("html", "png"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
    assert (out / "tables.md").read_text() == tables(results)


@pytest.mark.integration
def test_replot_redraws_from_results_json(quick_run, tmp_path):
    out, results = quick_run
    (tmp_path / "results.json").write_text((out / "results.json").read_text())
    main(["--quick", "--replot", "--no-png", "--out", str(tmp_path)])
    assert (tmp_path / "tables.md").read_text() == tables(results)
    assert (tmp_path / "tradeoff.html").stat().st_size > 1000


# ---------------------------------------------------------------- the shipped full run

def test_readme_holds_the_results_tables_command_and_wall_time():
    full_run_in_readme(STUDY_DIR, Study, FULL, tables)
