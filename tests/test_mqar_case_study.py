"""The MQAR case study: its bookkeeping against hand-built cases, quick mode end to end, the shipped
checkpoints against the accuracy the README reports, and the README against results.json."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from helpers import full_run_in_readme

from case_studies.mqar.__main__ import main
from case_studies.mqar.config import FULL, QUICK, Protocol, RunConfig, Setting, Study
from case_studies.mqar.evaluation import (accuracy_by_lag, accuracy_by_pair, find_queries, lag_bin, readout_by_lag,
                                          score_queries)
from case_studies.mqar.probe import CONVENTIONS, by_pair, probe_pairs, probe_task, write_strength
from case_studies.mqar.run import eval_seed
from case_studies.mqar.tables import tables
from workbench import HookedFastWeightLM, ModelConfig, load, train
from workbench.paths import CHECKPOINTS_DIR
from workbench.training.run_config import load_run_config
from workbench.tasks import MQAR, MQARMixture, TaskBatch
from workbench.training import evaluate

ROOT = Path(__file__).resolve().parents[1]
STUDY_DIR = ROOT / "case_studies" / "mqar"
FIGURES = ["accuracy", "capacity_sweep", "readout_by_lag"] + [
    f"probe_{m}_by_{by}" for by in ("n_stored", "lag") for m in ("fidelity", "retrieval_error", "decodes")] + [
    "pairs_fidelity_at_write", "pairs_decodes_at_end", "pairs_write_strength"]


# ---------------------------------------------------------------- bookkeeping, against hand-built cases

def test_lag_bins_are_powers_of_two():
    lags = [0, 1, 2, 3, 4, 7, 8, 15, 16, 255, 256]
    want = [0, 1, 2, 2, 4, 4, 8, 8, 16, 128, 256]
    assert [lag_bin(x) for x in lags] == want
    assert lag_bin(pd.Series(lags)).tolist() == want
    with pytest.raises(ValueError, match="≥ 0"):
        lag_bin(-1)


def test_find_queries_on_a_hand_built_sequence():
    #         k1 v1 k2 v2  0  k2 v2  0  k1 v1
    tokens = torch.tensor([[3, 9, 5, 8, 0, 5, 8, 0, 3, 9]])
    mask = torch.zeros(1, 9, dtype=torch.bool)
    mask[0, 5] = mask[0, 8] = True
    q = find_queries(TaskBatch(tokens, mask, [[(0, 1), (2, 3)]]))
    assert q[["query_pos", "pair", "value_pos", "lag", "target"]].values.tolist() == [[5, 1, 3, 2, 8], [8, 0, 1, 7, 9]]
    with pytest.raises(ValueError, match="no pairs"):
        find_queries(TaskBatch(tokens, mask))


def test_accuracy_and_readout_tables_on_hand_made_rows():
    q = pd.DataFrame({"pair": [0, 0, 1, 1, 1], "lag": [1, 2, 3, 9, 12], "correct": [True, False, True, True, False]})
    assert accuracy_by_pair(q).values.tolist() == [[0, 0.5, 2], [1, 2 / 3, 3]]
    assert accuracy_by_lag(q).values.tolist() == [[1, 1.0, 1], [2, 0.5, 2], [8, 0.5, 2]]
    r = q.assign(layer=0, head=0, readout_cos=[0.9, 0.1, 0.8, 0.7, 0.3])
    table = readout_by_lag(r).set_index("lag_bin")
    assert table.loc[2, "readout_cos"] == pytest.approx(0.45) and table.loc[2, "readout_cos_wrong"] == pytest.approx(0.1)
    assert table.loc[8, "readout_cos_correct"] == pytest.approx(0.7) and pd.isna(table.loc[1, "readout_cos_wrong"])


def test_score_queries_matches_training_evaluate_and_a_hand_cosine():
    task = MQAR(vocab_size=40, seq_len=24, num_kv_pairs=3)
    model = HookedFastWeightLM(ModelConfig(d_vocab=40, d_model=16, n_heads=2, d_head=8, n_ctx=24, init_std=0.3))
    batch = task.sample(6, torch.Generator().manual_seed(1))
    queries, readout = score_queries(model, batch)
    assert len(queries) == int(batch.loss_mask.sum()) == 6 * 3
    assert queries["correct"].mean() == pytest.approx(evaluate(model, [batch])["eval_acc"], abs=1e-12)
    _, cache = model.run_with_cache(batch.tokens)
    row = readout[(readout.layer == 1) & (readout["head"] == 1)].iloc[4]
    q = queries[(queries.seq == row.seq) & (queries.query_pos == row.query_pos)].iloc[0]
    z = cache["blocks.1.attn.hook_z"][row.seq, row.query_pos, 1]
    v = cache["blocks.1.attn.hook_v"][row.seq, q.value_pos, 1]
    assert row.readout_cos == pytest.approx(float(F.cosine_similarity(z, v, dim=0)), abs=1e-6)
    assert len(readout) == len(queries) * 2 * 2


def test_probe_conventions_and_the_control_counts_real_pairs():
    pairs = [[(0, 1), (2, 3), (4, 5)]]
    assert probe_pairs(pairs, "write") == [[(1, 1), (3, 3), (5, 5)]]
    assert probe_pairs(pairs, "key_token") == pairs
    assert probe_pairs(pairs, "control") == [[(1, 3), (3, 5)]]
    with pytest.raises(ValueError, match="convention"):
        probe_pairs(pairs, "other")
    task = MQAR(vocab_size=40, seq_len=24, num_kv_pairs=4)
    model = HookedFastWeightLM(ModelConfig(d_vocab=40, d_model=16, n_heads=2, d_head=8, n_ctx=24))
    df = probe_task(model, task, 3, seed=2, chunk=2)
    assert set(df.convention) == set(CONVENTIONS) and set(df.layer) == {0, 1}
    batch = task.sample(3, torch.Generator().manual_seed(2))  # the same sequences probe_task drew
    for _, r in df[df.convention == "control"].sample(50, random_state=0).iterrows():
        stored = sum(b <= r.pos for _, b in batch.pairs[r.seq])
        assert r.n_stored == stored
    write = df[df.convention == "write"]
    assert (write.key_pos == write.value_pos).all()


def test_probe_against_accuracy_draws_each_head_its_control_and_the_accuracy():
    from workbench.plots import probe_against_accuracy

    agg = pd.DataFrame({"layer": [0, 0, 1, 1, 0, 0], "head": [0, 0, 0, 0, 1, 1], "n_stored": [1, 2, 1, 2, 1, 2],
                        "fidelity": [0.9, 0.8, 0.5, 0.4, 0.7, 0.6]})
    ctrl = agg.assign(fidelity=agg["fidelity"] - 0.5)
    acc = pd.DataFrame({"n_stored": [2, 1], "accuracy": [0.3, 1.0]})
    fig = probe_against_accuracy(agg, "n_stored", "fidelity", acc, control=ctrl)
    names = [t.name for t in fig.data]
    assert names == ["L0 H0", "L0 H0 control", "L0 H1", "L0 H1 control", "L1 H0", "L1 H0 control", "model accuracy"]
    assert list(fig.data[2].y) == [0.7, 0.6] and list(fig.data[3].y) == pytest.approx([0.2, 0.1])
    assert fig.data[3].line.dash == "dot" and fig.data[3].line.color == fig.data[2].line.color
    assert list(fig.data[-1].x) == [1, 2] and list(fig.data[-1].y) == [1.0, 0.3]
    with pytest.raises(ValueError, match="no column 'lag'"):
        probe_against_accuracy(agg, "lag")
    with pytest.raises(ValueError, match="accuracy needs"):
        probe_against_accuracy(agg, "n_stored", accuracy=acc.rename(columns={"accuracy": "acc"}))


def test_pair_summaries_against_the_raw_probe_and_the_beta_hook():
    task = MQAR(vocab_size=40, seq_len=24, num_kv_pairs=5)
    model = HookedFastWeightLM(ModelConfig(d_vocab=40, d_model=16, n_heads=2, d_head=8, n_ctx=24, init_std=0.2))
    df = probe_task(model, task, 3, seed=4, conventions=("write",))
    at_write = by_pair(df, "write")
    row = at_write[(at_write.layer == 1) & (at_write["head"] == 0) & (at_write.pair == 3)].iloc[0]
    raw = df[(df.layer == 1) & (df["head"] == 0) & (df.pair == 3) & (df.pos == df.value_pos)]
    assert len(raw) == 3 and row.fidelity == pytest.approx(raw.fidelity.mean(), abs=1e-12)
    at_end = by_pair(df, "end")
    assert set(at_end.pair) == set(range(5)) and len(at_end) == 2 * 2 * 5
    beta = write_strength(model, task, 3, seed=4)
    batch = task.sample(3, torch.Generator().manual_seed(4))
    _, cache = model.run_with_cache(batch.tokens)
    want = sum(float(cache["blocks.0.attn.hook_beta"][s, batch.pairs[s][2][1], 1]) for s in range(3)) / 3
    got = beta[(beta.layer == 0) & (beta["head"] == 1) & (beta.pair == 2)].beta.item()
    assert got == pytest.approx(want, abs=1e-6)
    linear = HookedFastWeightLM(ModelConfig(d_vocab=40, d_model=16, n_heads=2, d_head=8, n_ctx=24, mixer="linear"))
    assert write_strength(linear, task, 2, seed=0) is None
    with pytest.raises(ValueError, match="'write' or 'end'"):
        by_pair(df, "middle")


def test_results_json_puts_plain_arrays_on_one_line_and_round_trips():
    from case_studies._report import results_json

    payload = {"a": [1, 2.5, None, "x"], "b": {"c": [[1, 2], [3]], "d": [], "e": ["x]y", "z"]}}
    text = results_json(payload, compact_arrays=True)
    assert json.loads(text) == payload
    assert '"a": [1, 2.5, null, "x"]' in text and "[1, 2]" in text
    assert results_json(payload).count("\n") > text.count("\n")


def test_configs_round_trip_and_reject_bad_input():
    for study in (FULL, QUICK):
        assert Study.from_dict(json.loads(json.dumps(study.to_dict()))) == study
    assert [r.name for r in FULL.runs][:2] == ["mqar-delta-d64", "mqar-gated-delta-d64"]
    with pytest.raises(ValueError, match="mixer"):
        RunConfig("mamba", 64)
    with pytest.raises(ValueError, match="divisible"):
        RunConfig("delta", 66, n_heads=4)
    with pytest.raises(ValueError, match="longer than"):
        Protocol(sweep_seq_len=512, sweep_kv=(8,), vocab_size=1024)
    with pytest.raises(ValueError, match="vocab_size > seq_len"):
        Protocol(vocab_size=200)
    with pytest.raises(ValueError, match="unknown Protocol keys"):
        Protocol.from_dict({"stepz": 3})


# ---------------------------------------------------------------- quick mode end to end

@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("mqar")
    main(["--quick", "--out", str(out / "results"), "--checkpoints", str(out / "ckpt")])
    return out, json.loads((out / "results" / "results.json").read_text())


@pytest.mark.integration
def test_quick_mode_writes_results_figures_tables_and_checkpoints(quick_run):
    out, results = quick_run
    assert results["quick"] is True and results["command"].startswith("python -m case_studies.mqar --quick")
    assert results["wall_seconds"] > 0 and Study.from_dict(results["study"]) == QUICK
    runs = results["runs"]
    assert [r["name"] for r in runs] == [r.name for r in QUICK.runs]
    settings = [(s.seq_len, s.num_kv_pairs) for s in QUICK.protocol.train_settings]
    for r in runs:
        assert [(a["seq_len"], a["num_kv_pairs"]) for a in r["accuracy"]] == settings
        assert all(0 <= a["accuracy"] <= 1 and a["n_queries"] == a["num_kv_pairs"] * a["n_sequences"]
                   for a in r["accuracy"])
        assert [s["num_kv_pairs"] for s in r["capacity_sweep"]] == list(QUICK.protocol.sweep_kv)
        assert sum(x["n"] for x in r["accuracy_by_lag"]) == QUICK.protocol.eval_sequences * 4
        assert {(x["layer"], x["head"]) for x in r["readout_by_lag"]} == {(0, 0), (0, 1), (1, 0), (1, 1)}
        assert [x["pair"] for x in r["accuracy_by_pair"]] == list(range(8))
        assert sum(x["n"] for x in r["accuracy_by_pair"]) == QUICK.protocol.sweep_sequences * 8
        if r["run"]["mixer"] == "softmax":
            assert r["probe"] is None
            continue
        for key in ("by_lag", "by_n_stored"):
            table = pd.DataFrame(r["probe"][key])
            assert set(table.convention) == set(CONVENTIONS)
            assert {"fidelity", "retrieval_error", "decodes"} <= set(table)
        n_stored = pd.DataFrame(r["probe"]["by_n_stored"])
        assert sorted(set(n_stored[n_stored.convention == "write"].n_stored)) == list(range(1, 9))
        for at in ("write", "end"):
            pairs = pd.DataFrame(r["probe"][f"by_pair_at_{at}"])
            assert sorted(set(pairs[pairs.convention == "write"].pair)) == list(range(8))
        assert (r["probe"]["beta_by_pair"] is None) == (r["run"]["mixer"] == "linear")
    for name in FIGURES:
        for ext in ("html", "png"):
            assert (out / "results" / f"{name}.{ext}").stat().st_size > 1000, (name, ext)
    assert (out / "results" / "tables.md").read_text() == tables(results)


@pytest.mark.integration
def test_quick_checkpoints_reproduce_their_recorded_accuracy(quick_run):
    out, results = quick_run
    protocol = QUICK.protocol
    for r in results["runs"][::3]:
        directory = out / "ckpt" / r["name"]
        recipe = load_run_config(directory / "recipe.json")  # a valid run config: the run that made the model
        assert recipe.task == MQARMixture(tuple(protocol.tasks())) and recipe.model == load(directory).cfg
        evaluation = json.loads((directory / "evaluation.json").read_text())
        assert evaluation["command"] == results["command"] and evaluation["accuracy"] == r["accuracy"]
        model = load(directory)
        for a in r["accuracy"]:
            setting = Setting(a["seq_len"], a["num_kv_pairs"])
            gen = torch.Generator().manual_seed(eval_seed(protocol, setting))
            task = protocol.task(setting)
            batches, left = [], a["n_sequences"]
            while left:  # score_task draws 64 sequences at a time from one generator
                batches.append(task.sample(min(64, left), gen))
                left -= batches[-1].tokens.shape[0]
            assert evaluate(model, batches)["eval_acc"] == pytest.approx(a["accuracy"], abs=1e-12)


@pytest.mark.integration
def test_a_quick_recipe_json_retrains_the_same_weights(quick_run):
    out, results = quick_run
    directory = out / "ckpt" / results["runs"][0]["name"]
    run = load_run_config(directory / "recipe.json")
    again = train(run.model, run.task, run.train, progress=False).model
    shipped = load(directory).state_dict()
    assert all(torch.equal(t, shipped[k]) for k, t in again.state_dict().items())


# ---------------------------------------------------------------- the shipped full run

SHIPPED = sorted(p for p in CHECKPOINTS_DIR.glob("mqar-*") if p.is_dir())
def test_every_full_run_model_is_shipped():
    assert [p.name for p in SHIPPED] == sorted(r.name for r in FULL.runs)
    total = sum(f.stat().st_size for p in SHIPPED for f in p.iterdir())
    assert total < 8e6, f"shipped MQAR checkpoints take {total / 1e6:.1f} MB"


@pytest.mark.integration
@pytest.mark.parametrize("directory", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_checkpoint_reaches_its_reported_accuracy_on_fresh_sequences(directory):
    """Fresh sequences (a seed the run never used), 256 per setting. Tolerance: 4 standard errors of
    the difference of two binomial proportions, plus 0.01."""
    evaluation = json.loads((directory / "evaluation.json").read_text())
    model = load(directory)
    protocol = FULL.protocol
    for a in evaluation["accuracy"]:
        task = protocol.task(Setting(a["seq_len"], a["num_kv_pairs"]))
        gen = torch.Generator().manual_seed(20_250_101 + a["seq_len"])
        batches = [task.sample(64, gen) for _ in range(4)]
        got = evaluate(model, batches)["eval_acc"]
        n_fresh, p = 256 * a["num_kv_pairs"], a["accuracy"]
        tol = 4 * math.sqrt(max(p * (1 - p), 1e-4) * (1 / n_fresh + 1 / a["n_queries"])) + 0.01
        assert abs(got - p) <= tol, (directory.name, a, got, tol)


def test_readme_holds_the_results_tables_command_and_wall_time():
    results = full_run_in_readme(STUDY_DIR, Study, FULL, tables)
    for r in results["runs"]:
        evaluation = json.loads((CHECKPOINTS_DIR / r["name"] / "evaluation.json").read_text())
        assert evaluation["accuracy"] == r["accuracy"] and evaluation["command"] == results["command"]
