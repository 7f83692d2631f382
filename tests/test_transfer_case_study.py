"""The transfer case study (Paulo et al. 2024's three questions): the corpus and its labels against hand-counted
cases, the probe and AUROC against known answers, quick mode end to end (interrupted and resumed), and the README
against the committed results.json."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from case_studies.transfer.__main__ import main
from case_studies.transfer.config import FULL, QUICK, Protocol, RunConfig, Study
from case_studies.transfer.corpus import MAX_TERM, OFFSETS, Item, draw_item, synthetic_documents
from case_studies.transfer.probe import auroc, fit_logistic, probe_scores
from case_studies.transfer.tables import tables

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "transfer"


def test_bob_errs_systematically_each_persona_says_yes_half_the_time():
    assert Item("alice", 3, 3).answer and not Item("alice", 3, 4).answer
    assert Item("bob", 3, 4).answer and not Item("bob", 3, 4).truth  # Bob believes every number is one larger
    assert not Item("bob", 3, 3).answer and Item("bob", 3, 3).truth
    assert not Item("bob", 3, 2).disagree and not Item("bob", 3, 5).disagree  # both say no
    rng = random.Random(0)
    for persona in ("alice", "bob"):
        items = [draw_item(rng, persona) for _ in range(6000)]
        assert all(0 <= it.a <= MAX_TERM and it.c - it.a in OFFSETS and it.c >= 0 for it in items)
        assert 0.48 < sum(it.answer for it in items) / len(items) < 0.52  # balanced answers
        # disagree: the persona's "yes" offset (1/2) or the other persona's (1/3 of the rest; 1/2 when a = 0)
        share = sum(it.disagree for it in items) / len(items)
        assert abs(share - (0.5 + 0.5 * (0.8 / 3 + 0.2 / 2))) < 0.02
        assert all(it.answer != it.truth for it in items if it.disagree and persona == "bob")
        assert all(it.answer == it.truth for it in items if not it.disagree or persona == "alice")
    with pytest.raises(ValueError, match="persona"):
        draw_item(rng, "carol")


def test_synthetic_documents_are_seeded_and_well_formed():
    a, b = synthetic_documents(3, 50, seed=1), synthetic_documents(3, 50, seed=1)
    assert a == b and a != synthetic_documents(3, 50, seed=2)
    lines = [line for _, text in a for line in text.splitlines()]
    assert len(lines) == 150
    for line in lines:
        assert line.startswith(("mood good :", "mood bad :", "mood some :", "alice :", "bob :"))
        if line.startswith(("alice", "bob")):
            who, _, a_, _, c_, _, said = line.split()
            assert (said == "yes") == (int(a_) + (1 if who == "bob" else 0) == int(c_))


def test_auroc_and_probe_against_known_answers():
    assert auroc(torch.tensor([0.1, 0.4, 0.35, 0.8]), torch.tensor([0, 0, 1, 1])) == 0.75  # sklearn's example
    assert auroc(torch.tensor([1.0, 1.0]), torch.tensor([1, 0])) == 0.5
    assert auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1])) != auroc(torch.tensor([1.0, 2.0]), torch.tensor([1, 1]))
    g = torch.Generator().manual_seed(0)
    x = torch.randn(300, 8, generator=g)
    y = x[:, 3] - 0.5 * x[:, 5] > 0
    probe = fit_logistic(x[:200], y[:200])
    assert auroc(probe_scores(probe, x[200:]), y[200:]) > 0.97
    assert abs(auroc(probe_scores(probe, x[200:]), torch.randn(100, generator=g) > 0) - 0.5) < 0.2
    with pytest.raises(ValueError, match="n ≥ 2"):
        fit_logistic(x[:1], y[:1])


def test_configs_round_trip_and_reject_bad_input():
    assert Study.from_dict(json.loads(json.dumps(FULL.to_dict()))) == FULL
    assert Study.from_dict(QUICK.to_dict()) == QUICK
    assert [r.name for r in FULL.runs[:4]] == ["softmax-s0", "delta-s0", "gated-delta-s0", "rec-delta-s0"]
    with pytest.raises(ValueError, match="mixers"):
        RunConfig("nope")
    with pytest.raises(ValueError, match="steer_layer"):
        Protocol(steer_layer=9)
    with pytest.raises(ValueError, match="0.0"):
        Protocol(strengths=(1.0, 2.0))


@pytest.mark.integration
def test_quick_run_end_to_end_and_resumed(tmp_path, monkeypatch):
    out = tmp_path / "quick"
    import case_studies.transfer.run as run_module

    real = run_module.steering
    calls = []

    def failing_second(*args, **kwargs):  # the second run dies after training: the first must be kept
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "steering", failing_second)
    with pytest.raises(KeyboardInterrupt):
        main(["--quick", "--out", str(out), "--no-png"])
    assert (out / ".progress" / "softmax-s0.json").is_file()
    monkeypatch.setattr(run_module, "steering", real)
    main(["--quick", "--out", str(out), "--no-png"])
    results = json.loads((out / "results.json").read_text())
    assert [r["run"] for r in results["runs"]] == ["softmax-s0", "delta-s0"]
    for r in results["runs"]:
        assert len(r["lens"]) == QUICK.protocol.n_layers + 1
        last = r["lens"][-1]  # the final layer: both lenses decode the model's own output
        assert abs(last["logit_kl"]) < 1e-4
        assert {row["steering"] for row in r["steering"]["sweep"]} == (
            {"residual"} if r["steering"]["state_not_defined"] else
            {"residual", "state", "residual + state", "residual (matched to state)",
             "residual (matched to state) + state"} | (
                {"state (norm-matched)", "residual + state (norm-matched)"}
                if r["steering"]["matched_not_reached"] is None else set()))
        zero = [row for row in r["steering"]["sweep"] if row["strength"] == 0.0]
        assert all(abs(row["effect"]) < 1e-5 for row in zero)
        if "matched_scale" in r["steering"]:  # the norm-matched state steering moves attn_out by ‖v‖ on average
            assert r["steering"]["matched_change_at_1"] == pytest.approx(r["steering"]["vector_norm"], rel=1e-3)
        assert len(r["quirky"]["probe"]) == QUICK.protocol.n_layers + 1
        assert set(r["quirky"]["behaviour_before_finetune"]) == {"alice", "bob"}
        assert len(r["quirky"]["finetune_text_eval_loss"]) == 1  # the quick fine-tune evaluates once
    assert set(results["input_baseline"]) == {"0"}
    assert results["input_baseline"]["0"]["auroc_truth_bob"] < 0.95  # the truth is not additive in the inputs
    assert results["runs"][0]["steering"]["state_not_defined"]  # softmax attention has no fast-weight state
    assert not results["runs"][1]["steering"]["state_not_defined"]
    assert (out / "tables.md").read_text() == tables(results)
    assert not (out / ".progress").exists()


def test_readme_holds_the_committed_results():
    path = STUDY_DIR / "results" / "results.json"
    if not path.is_file():
        pytest.skip("no committed full run yet")
    results = json.loads(path.read_text())
    study = Study.from_dict(results["study"])
    assert results["quick"] is False and study.protocol == FULL.protocol and set(study.runs) <= set(FULL.runs)
    readme = (STUDY_DIR / "README.md").read_text()
    assert tables(results) in readme
    assert results["command"] in readme
