"""The recurrent-FWP case study: config round trips, the probes and statistics against hand-built cases,
tables and figures on a small results dict, and the quick run end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from helpers import full_run_in_readme

from case_studies.recurrent_fwp import figures
from case_studies.recurrent_fwp.__main__ import main
from case_studies.recurrent_fwp.config import FULL, LONG, MIXERS_STUDIED, QUICK, TASKS, Protocol, RunConfig, Study
from case_studies.recurrent_fwp.evaluation import test_accuracy as score_test, wilson
from case_studies.recurrent_fwp.probe import (code_targets, decode_state, key_recurrence, listops_targets,
                                              recurrent_key_parts, ridge_probe, same_token_cosine)
from case_studies.recurrent_fwp.tables import accuracy_table, decoding_table, keys_table, tables
from workbench import HookedFastWeightLM
from workbench.tasks import CodeExecution, ListOps, task_from_dict
from workbench.training import evaluate

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "recurrent_fwp"


# ---------------------------------------------------------------- configs

def test_studies_round_trip_through_json():
    for study in (FULL, LONG, QUICK):
        assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    run = RunConfig("listops", "rec_delta", seed=2)
    assert RunConfig.from_dict(run.to_dict()) == run and run.name == "listops-rec-delta-s2"
    assert task_from_dict(FULL.protocol.code_execution.to_dict()) == FULL.protocol.code_execution


def test_full_study_has_every_mixer_on_both_tasks():
    assert {(r.task, r.mixer) for r in FULL.runs} == {(t, m) for t in TASKS for m in MIXERS_STUDIED}


@pytest.mark.parametrize("bad", [dict(task="sorting", mixer="delta"), dict(task="listops", mixer="lstm"),
                                 dict(task="listops", mixer="delta", d_model=30, n_heads=4),
                                 dict(task="listops", mixer="delta", seed=-1)])
def test_run_config_rejects_bad_values(bad):
    with pytest.raises(ValueError):
        RunConfig(**bad)


def test_protocol_rejects_bad_values():
    with pytest.raises(ValueError, match="probe_sequences"):
        Protocol(probe_sequences=2)
    with pytest.raises(ValueError, match="unknown task"):
        Protocol().task("sorting")


def test_model_configs_follow_the_paper_variants():
    p = FULL.protocol
    linear = RunConfig("code_execution", "linear").model_config(p).mixer
    assert linear.feature_map == "elu1" and linear.sum_norm
    assert RunConfig("code_execution", "delta").model_config(p).mixer.conv_size == 0
    cfg = RunConfig("listops", "softmax").model_config(p)
    assert cfg.d_vocab == p.listops.d_vocab and cfg.n_ctx == p.listops.seq_len


# ---------------------------------------------------------------- statistics and probes, hand-built

def test_wilson_interval_known_values():
    lo, hi = wilson(50, 100)
    assert lo == pytest.approx(0.4038, abs=1e-4) and hi == pytest.approx(0.5962, abs=1e-4)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == 1.0
    with pytest.raises(ValueError):
        wilson(3, 2)


def test_ridge_probe_decodes_a_linear_label_and_not_noise():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 8, generator=g)
    labels = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    fit = torch.arange(400) < 200
    assert ridge_probe(x, labels, fit)["accuracy"] > 0.9
    noise = ridge_probe(torch.randn(400, 8, generator=g), labels, fit)
    assert noise["accuracy"] < 0.65 and noise["n"] == 200


def test_code_targets_on_a_hand_built_program():
    task = CodeExecution(num_vars=2, seq_len=24)
    words = "x = 3 ; x ++ ; y = 1 ; print x ; 4 print y ; 1".split()
    ids = torch.tensor([[0] * (24 - len(words)) + [task.token_id(w) for w in words]])
    t = code_targets(task, ids)
    x, y = t["value of x"][0].tolist(), t["value of y"][0].tolist()
    start = 24 - len(words)
    assert x[start] == -1 and x[start + 3] == 3 - task.min_value and x[start + 6] == 4 - task.min_value
    assert y[start + 9] == -1 and y[start + 10] == 1 - task.min_value
    assert all(v == -1 for v in x[start + 11:])  # the queries are not probed


def test_listops_targets_on_a_hand_built_expression():
    task = ListOps(depth=2, min_length=4, max_length=12)
    words = "[MAX 2 [SM 3 9 ] 1 ]".split() + ["2"]
    ids = torch.tensor([[0] * (task.seq_len - len(words)) + [task.vocab.index(w) for w in words]])
    t = listops_targets(task, ids)
    s = task.seq_len - len(words)
    assert t["depth"][0, s:].tolist() == [1, 1, 2, 2, 2, 1, 1, 0, -1]
    assert t["running value"][0, s:].tolist() == [-1, 2, -1, 3, 2, 2, 2, -1, -1]


def test_recurrent_key_parts_recover_the_recurrent_logits():
    g = torch.Generator().manual_seed(0)
    k_pre, r = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    slow, rec = recurrent_key_parts(k_pre, torch.softmax(k_pre + r, -1))
    assert torch.allclose(rec, (r - r.mean(-1, keepdim=True)).double(), atol=1e-9)
    assert torch.allclose(slow, (k_pre - k_pre.mean(-1, keepdim=True)).double())


def test_recurrent_key_parts_match_the_rec_delta_mixers_own_recurrent_term():
    """On a real Recurrent Delta Net, the hook-only recovery equals c(f_t R_k) from the mixer's parameter."""
    p = QUICK.protocol
    run = RunConfig("listops", "rec_delta", d_model=16, n_heads=2, d_mlp=16)
    model = HookedFastWeightLM(run.model_config(p)).eval()
    tokens = p.listops.sample(4, torch.Generator().manual_seed(0)).tokens
    names = {f"blocks.1.attn.hook_{n}" for n in ("k", "k_pre", "feedback")}
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n in names)
    _, rec = recurrent_key_parts(cache["blocks.1.attn.hook_k_pre"], cache["blocks.1.attn.hook_k"])
    R_k = model.mixer(1).R_k  # [head, d_v, d_k]
    fr = torch.einsum("bphv,hvk->bphk", cache["blocks.1.attn.hook_feedback"].double(), R_k.double())
    assert torch.allclose(rec, fr - fr.mean(-1, keepdim=True), atol=1e-5)


def test_same_token_cosine_on_hand_built_keys():
    tokens = torch.tensor([[5, 6, 5, 0]])
    kinds = torch.tensor([[2, 3, 2, 0]])
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [1.0, 0.0]]).reshape(1, 4, 1, 2)
    out = same_token_cosine(keys, tokens, kinds)
    assert out["kind"].tolist() == [2] and out["same_token_cos"].iloc[0] == pytest.approx(math.sqrt(0.5))


def test_probes_and_test_accuracy_on_an_untrained_model():
    p = QUICK.protocol
    for run in (RunConfig("code_execution", "rec_delta", d_model=16, d_mlp=16),
                RunConfig("listops", "delta", d_model=16, d_mlp=16)):
        task = p.task(run.task)
        model = HookedFastWeightLM(run.model_config(p)).eval()
        tokens = task.sample(8, torch.Generator().manual_seed(0)).tokens
        dec = decode_state(model, task, tokens)
        assert set(dec["layer"]) == {0, 1} and ((dec["accuracy"] >= 0) & (dec["accuracy"] <= 1)).all()
        keys = key_recurrence(model, task, tokens)
        assert keys["recurrent_share"].notna().all() == (run.mixer == "rec_delta")
        test = score_test(model, task, 20, seed=5, batch_size=7)
        batches, gen, left = [], torch.Generator().manual_seed(5), 20
        while left:
            batches.append(task.sample(min(7, left), gen))
            left -= batches[-1].tokens.shape[0]
        assert test["answer_accuracy"] == pytest.approx(evaluate(model, batches)["eval_acc"], abs=1e-12)
        assert test["sequence_accuracy"] <= test["answer_accuracy"] + 1e-12 or run.task == "code_execution"


# ---------------------------------------------------------------- tables and figures on a small results dict

def _entry(task: str, mixer: str, acc: float) -> dict:
    rec = mixer == "rec_delta"
    return {"name": f"{task}-{mixer}", "run": RunConfig(task, mixer).to_dict(), "train_seconds": 12.0,
            "history": [{"step": 10, "eval_acc": acc / 2}, {"step": 20, "eval_acc": acc}],
            "test": {"n_sequences": 100, "seed": 1, "n_answers": 150, "answer_accuracy": acc,
                     "answer_ci95": list(wilson(int(150 * acc), 150)), "sequence_accuracy": acc / 2,
                     "sequence_ci95": list(wilson(int(50 * acc), 100))},
            "state_decoding": [{"layer": l, "target": "depth", "accuracy": 0.5 + 0.1 * l, "baseline": 0.4, "n": 9}
                               for l in (0, 1)],
            "keys": [{"layer": 0, "kind": "digit", "n_positions": 9, "recurrent_share": 0.3 if rec else None,
                      "cos_with_without": 0.9 if rec else None, "same_token_cos": 0.5,
                      "same_token_cos_without": 0.8 if rec else None}]}


def test_tables_and_figures_on_a_small_results_dict():
    runs = [_entry(t, m, 0.5) for t in TASKS for m in ("linear", "rec_delta")]
    results = {"command": "python -m case_studies.recurrent_fwp", "wall_seconds": 60.0, "cpu_seconds": 50.0,
               "runs": runs}
    acc = accuracy_table(results, "code_execution")
    assert "| Recurrent Delta Net | 0 | 50.0 [" in acc and "n/f" in acc
    assert "| 79.2 † |" in accuracy_table(results, "listops")  # the one ListOps depth-15 cell quoted (second-hand)
    lstm = accuracy_table({**results, "runs": [_entry("code_execution", "delta_lstm", 0.5)]}, "code_execution")
    assert "| n/p | n/p |" in lstm  # the Delta LSTM is not among the paper's models for these tasks
    assert "60.0" in decoding_table(results, "listops") and "0.300" in keys_table(results, "listops")
    assert "linear attention" not in keys_table(results, "listops")
    md = tables(results)
    assert md.count("### ") == 6 and "1.0 min" in md and "python -m case_studies.recurrent_fwp" in md
    for fig in (figures.accuracy_figure(runs), figures.training_figure(runs), figures.decoding_figure(runs, "listops"),
                figures.key_share_figure(runs)):
        assert len(fig.data) > 0
    with pytest.raises(ValueError):
        figures.accuracy_figure(runs, "token")


# ---------------------------------------------------------------- quick run end to end

@pytest.mark.integration
def test_quick_run_end_to_end(tmp_path):
    out, ckpt = tmp_path / "quick", tmp_path / "ckpt"
    main(["--quick", "--no-png", "--out", str(out), "--checkpoints", str(ckpt)])
    results = json.loads((out / "results.json").read_text())
    assert results["quick"] is True and results["command"].startswith("python -m case_studies.recurrent_fwp --quick")
    assert Study.from_dict(results["study"]) == QUICK and results["wall_seconds"] > 0
    assert [r["name"] for r in results["runs"]] == [r.name for r in QUICK.runs]
    for r in results["runs"]:
        t = r["test"]
        assert t["n_sequences"] == QUICK.protocol.test_sequences
        assert t["answer_ci95"][0] <= t["answer_accuracy"] <= t["answer_ci95"][1]
        assert {row["layer"] for row in r["state_decoding"]} == {0, 1}
        assert any(row["recurrent_share"] is not None for row in r["keys"]) == (r["run"]["mixer"] == "rec_delta")
    assert (out / "tables.md").read_text() == tables(results)
    for name in ("accuracy_sequence", "accuracy_answer", "training", "decoding_code_execution", "decoding_listops",
                 "key_recurrent_share"):
        assert (out / f"{name}.html").is_file()
    main(["--replot", "--no-png", "--out", str(out)])  # redraws from results.json alone
    main(["--rescore", "--no-png", "--out", str(out), "--checkpoints", str(ckpt)])  # same numbers from the checkpoints
    rescored = json.loads((out / "results.json").read_text())
    assert rescored["rescored"]["command"].startswith("python -m case_studies.recurrent_fwp --rescore")
    for before, after in zip(results["runs"], rescored["runs"]):
        assert after["test"]["answer_accuracy"] == before["test"]["answer_accuracy"]
        assert sum(k["n"] for k in after["test"]["by_kind"]) == after["test"]["n_answers"]
    assert "answer accuracy by kind of answer" in (out / "tables.md").read_text()
    with pytest.raises(SystemExit):
        main(["--only", "no-such-run", "--quick", "--out", str(out)])
    with pytest.raises(SystemExit):
        main(["--long", "--quick", "--out", str(out)])


# ---------------------------------------------------------------- the committed full run

def test_readme_holds_the_full_run():
    results = full_run_in_readme(STUDY_DIR, Study, FULL, tables)
    assert [r["name"] for r in results["runs"]] == [r.name for r in FULL.runs]
    assert (STUDY_DIR / "results" / "tables.md").read_text() == tables(results)
    for r in results["runs"]:
        assert r["test"]["n_sequences"] == FULL.protocol.test_sequences


def test_last_assignment_rule_on_a_hand_built_program():
    from case_studies.recurrent_fwp.baselines import baseline_accuracy, last_assignment
    words = "x = 3 ; y = 1 ; if y > 0 : x = 7 ; x ++ ; print x ; 8".split()
    assert last_assignment(words, len(words) - 2) == "7"
    rules = baseline_accuracy(CodeExecution(num_vars=3, seq_len=48), 64, seed=0)
    assert set(rules) == {"majority", "last assignment"} and 0 < rules["majority"] < rules["last assignment"] < 1
    rules = baseline_accuracy(ListOps(depth=2, min_length=8, max_length=20), 64, seed=0)
    assert set(rules) == {"majority", "majority per root operator"}
    assert rules["majority"] <= rules["majority per root operator"]


def test_readme_holds_the_long_supplement():
    results = json.loads((STUDY_DIR / "results" / "long" / "results.json").read_text())
    readme = (STUDY_DIR / "README.md").read_text()
    assert results["quick"] is False and Study.from_dict(results["study"]) == LONG
    assert results["command"] in readme and f"{results['wall_seconds'] / 60:.1f} min" in readme
    assert tables(results) in readme
    assert (STUDY_DIR / "results" / "long" / "tables.md").read_text() == tables(results)
