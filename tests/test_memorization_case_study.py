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
from case_studies.memorization.config import DEV_SEED, FULL, PREREGISTERED, QUICK, Protocol, RunConfig, Study, Variant
from case_studies.memorization.run import edit_row, filler, forget_rows, headline, offset_probe, recite, split_validation
from case_studies.memorization.tables import tables
from workbench import HookedFastWeightLM
from workbench.analysis.memorization import recitation_table

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "memorization"
FIGURES = ["tradeoff", "offsets", "seeds"]


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
    control = edit_row(("MLP ablation (zero)", "ablate_zero"), None, table.assign(nll=[1.0, 2.0, 3.0, 5.0]), [2, 3],
                       12.0, 10.0, 0.5, None)
    assert control["variant"] == "MLP ablation (zero)" and control["method"] == "ablate_zero"
    assert control["rho"] is None and control["nll_memorized"] == 4.0


def test_split_validation_halves_the_validation_windows():
    task = QUICK.protocol.task(1)
    stats, val = split_validation(task)
    a, b = torch.cat(stats), torch.cat(val)
    assert abs(len(a) - len(b)) <= 1 and torch.equal(torch.cat([a, b]), torch.cat(task.validation(16)))


@pytest.mark.integration
def test_recite_puts_the_prompt_after_validation_text_at_the_training_position():
    protocol = QUICK.protocol
    task = protocol.task(QUICK.runs[1].seed)
    model = HookedFastWeightLM(QUICK.runs[1].model_config(protocol, task.d_vocab))
    got = recite(model, task, 4, 4, "trained", nll=True)
    table = task.canary_table()
    assert got.canary.tolist() == table.canary.tolist() and got.prompt_position.tolist() == table.position.tolist()
    assert (got.prefix_len == 4).all()
    cans = task.canaries()
    for i in (0, len(table) - 1):  # by hand: filler of `position` tokens, then the canary's first 4 tokens
        p = int(table.position[i])
        seq = torch.cat([filler(task, i, p), cans[i]])[None]
        want = recitation_table(model, seq, [p + 4], 4).iloc[0]
        assert (got.strict[i], got.distance[i]) == (want.strict, want.distance)
        logits = model(seq)[0, p + 3:p + 7].double()
        assert got.nll[i] == pytest.approx(float(torch.nn.functional.cross_entropy(logits, seq[0, p + 4:p + 8])),
                                           abs=1e-5)
    assert torch.equal(filler(task, 3, 5), filler(task, 3, 9)[:5]) and len(filler(task, 3, 0)) == 0
    at_zero = recite(model, task, 4, 4, 0)
    assert (at_zero.prompt_position == 0).all()
    first = table.position == 0
    assert at_zero[first].distance.tolist() == got[first].distance.tolist()


@pytest.mark.integration
def test_offset_probe_places_the_prefix_at_zero_or_where_its_tokens_sat_in_training():
    protocol = QUICK.protocol
    task = protocol.task(1)
    model = HookedFastWeightLM(QUICK.runs[0].model_config(protocol, task.d_vocab))
    cans, table = task.canaries(), task.canary_table()
    for placement in ("zero", "trained"):
        got = offset_probe(model, task, [0, 3], 4, 4, placement)
        assert len(got) == 2 * len(table) and set(got.placement) == {placement}
        for i in (0, len(table) - 1):
            p = int(table.position[i])
            q = p + 3 if placement == "trained" else 0
            seq = torch.cat([filler(task, i, q), cans[i, 3:11]])[None]
            want = recitation_table(model, seq, [q + 4], 4).iloc[0]
            row = got[(got.canary == i) & (got.offset == 3)].iloc[0]
            assert (row.strict, row.distance) == (want.strict, want.distance)


def test_forget_rows_are_training_rows_holding_the_canary_with_its_tokens_marked():
    task = QUICK.protocol.task(2)
    table, cans = task.canary_table(), task.canaries()
    picked = [0, len(table) - 1]
    rows, mask = forget_rows(task, picked)
    for k, c in enumerate(picked):
        p = int(table.position[c])
        assert torch.equal(rows[k, p:p + task.canary_len], cans[c])
        assert mask[k].nonzero()[:, 0].tolist() == list(range(p, p + task.canary_len - 1))


def test_configs_round_trip_and_reject_bad_input():
    for study in (FULL, QUICK):
        assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert [r.name for r in FULL.runs] == [f"mem-{m}-s{s}" for s in (1, 2, 3) for m in ("delta", "softmax")]
    assert DEV_SEED not in {r.seed for r in FULL.runs}  # the development seed is never evaluated
    assert FULL.protocol.variants[0] == PREREGISTERED == Variant("kfac", ("mlp_in", "mlp_out"), (-1,), "heldout")
    assert FULL.protocol.ppl_budget == 1.2 and FULL.protocol.rhos == (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)
    assert FULL.protocol.task(1).n_rows == FULL.protocol.train.steps * FULL.protocol.train.batch_size
    assert not torch.equal(FULL.protocol.task(1).canaries(), FULL.protocol.task(2).canaries())
    cfg = FULL.runs[1].model_config(FULL.protocol, 1024)
    assert cfg.seed == FULL.runs[1].seed and FULL.runs[1].train_config(FULL.protocol).seed == FULL.runs[1].seed
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
    with pytest.raises(ValueError, match="ablations"):
        Protocol(ablations=("max",))
    with pytest.raises(ValueError, match="subnet_ratios"):
        Protocol(subnet_ratios=(1.0,))
    with pytest.raises(ValueError, match="seed"):
        RunConfig("delta", seed=-1)


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
        assert run["name"] == cfg.name and run["task"]["seed"] == cfg.seed
        canaries = pd.DataFrame(run["canaries"])
        assert canaries.realized.tolist() == canaries.repetitions.tolist()
        assert set(run["memorized"]) == set(canaries[canaries.recited].canary)
        sweep = pd.DataFrame(run["sweep"])
        none = sweep[sweep.method == "none"].iloc[0]
        assert none.ppl == pytest.approx(run["val_ppl"]) and none.top10_agreement == 1.0
        for r in protocol.repetitions:  # the unedited row is the main probe of the canaries
            assert none[f"strict@{r}"] == pytest.approx(canaries[canaries.repetitions == r].recited.mean())
        swept = sweep[sweep.method.isin(["kfac", "svd"])]
        assert len(swept) == len(protocol.variants) * len(protocol.rhos)
        assert list(dict.fromkeys(swept.variant)) == [v.name for v in protocol.variants]
        subnet = sweep[sweep.method == "balanced_subnet"]  # run only when something is memorized
        assert len(subnet) == (len(protocol.subnet_ratios) if run["memorized"] else 0)
        k = run["headline"][PREREGISTERED.name]
        randoms = sweep[sweep.method == "random"]
        assert len(randoms) == (protocol.random_draws if k is not None else 0) and (randoms.rho == k).all()
        assert sweep[sweep.method.str.startswith("ablate")].method.tolist() == [f"ablate_{a}" for a in
                                                                                protocol.ablations]
        assert set(run["headline"]) == {v.name for v in protocol.variants} | set(subnet.variant)
        assert ((sweep.top10_agreement > 0) & (sweep.top10_agreement <= 1)).all()
        layers = pd.DataFrame(run["edit_layers"])
        kfac = layers[layers.method == "kfac"]
        assert len(kfac) == 2 * len(protocol.rhos) and (kfac.mass_kept >= kfac.rho - 1e-9).all()
        assert set(layers.layer) == {1}  # every edit is of the last layer's MLP
        if k is not None:  # the random bases keep as many components as K-FAC at its headline
            ref = kfac[kfac.rho == k].set_index("param").kept
            for _, part in layers[layers.method == "random"].groupby("variant"):
                assert part.set_index("param").kept.to_dict() == ref.to_dict()
        pc = pd.DataFrame(run["per_canary"]) if run["per_canary"] else pd.DataFrame(columns=["canary"])
        assert set(pc.canary) <= set(run["memorized"])
        heldout = sum(len(b) for b in split_validation(protocol.task(cfg.seed))[0]) * protocol.seq_len
        assert run["kfac_tokens"] == {"heldout": heldout}
        offsets = pd.DataFrame(run["by_offset"])
        assert sorted(set(offsets.offset)) == list(protocol.offsets) and set(offsets.placement) == {"zero", "trained"}
        assert offsets.n.sum() == 2 * len(canaries) * len(protocol.offsets)
        zero = offsets[(offsets.offset == 0) & (offsets.position == 0)].set_index(["placement", "repetitions"])
        assert zero.loc["zero"].strict_acc.tolist() == zero.loc["trained"].strict_acc.tolist()  # the same prompt
        prompt = pd.DataFrame(run["by_prompt_position"])
        assert set(zip(prompt.position, prompt.prompt_position)) == {(p, 0) for p in protocol.positions} | {
            (p, p) for p in protocol.positions}
        assert set(pd.DataFrame(run["by_prefix_len"]).prefix_len) == set(protocol.prefix_lens)
    for name in FIGURES:
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
    results = full_run_in_readme(STUDY_DIR, Study, FULL, tables)
    assert len({r["run"]["seed"] for r in results["runs"]}) >= 3
    readme = (STUDY_DIR / "README.md").read_text()
    assert readme.index("## Pre-registration") < readme.index("## Results")  # the protocol before the results


def test_the_development_run_is_kept_apart():
    dev = json.loads((STUDY_DIR / "results" / "development" / "results.json").read_text())
    assert dev["study"]["protocol"]["seed"] == DEV_SEED and dev["quick"] is False  # written with the flat protocol
