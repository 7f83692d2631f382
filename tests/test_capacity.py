"""The retrieval model of Schlag et al. 2021, its training, its memory probe and the ``capacity`` case study.

The model is checked against the paper's equations written out here as loops over positions in float64
(input concatenation, feature maps, sum rule / delta rule / the FWM rule, reads) — nothing of the model's own code.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from workbench.components.feature_maps import orthogonal_features
from workbench.retrieval.model import HookedRetriever, RetrieverConfig
from workbench.retrieval.probe import probe_memory, summarize_probe
from workbench.retrieval.training import RetrieverTrainConfig, evaluate_retriever, retrieval_loss, train_retriever
from workbench.tasks import Retrieval

ROOT = Path(__file__).resolve().parents[1]


def _phi(x: torch.Tensor, cfg: RetrieverConfig, model: HookedRetriever) -> torch.Tensor:
    """φ for one vector ``x [d_head]``, index by index."""
    if cfg.feature_map == "identity":
        return x
    if cfg.feature_map == "elu1":
        return torch.stack([xi + 1 if xi > 0 else torch.exp(xi) for xi in x])
    if cfg.feature_map == "dpfp":  # φ_{(j−1)·2d + i} = x'_i · x'_{(i − j) mod 2d},  x' = [relu(x), relu(−x)]
        xp = [max(float(xi), 0.0) for xi in x] + [max(-float(xi), 0.0) for xi in x]
        n = len(xp)
        return torch.tensor([xp[i] * xp[(i - j) % n] for j in range(1, cfg.dpfp_nu + 1) for i in range(n)],
                            dtype=torch.float64)
    # FAVOR+: exp(±ωᵀx̃ − ‖x̃‖²/2)/√(2m) with x̃ = x·d^-¼ and the model's fixed ω (the only thing borrowed);
    # the paper's redrawn variant: x̃ = x and the ω of this call (set by the test in model.test_projection)
    if cfg.favor_redraw:
        omega, xs = model.test_projection.double(), x
    else:
        omega, xs = model.phi.projection[0].double(), x * cfg.d_head ** -0.25  # [d_head, m]
    sq = float((xs * xs).sum()) / 2
    proj = [float((xs * omega[:, j]).sum()) for j in range(omega.shape[1])]
    m = len(proj)
    return torch.tensor([math.exp(p - sq) for p in proj] + [math.exp(-p - sq) for p in proj],
                        dtype=torch.float64) / math.sqrt(2 * m)


def _layer_norm(r: torch.Tensor) -> torch.Tensor:
    """(r − mean) / √(biased variance + 1e-5): torch's layer_norm without weights, as the paper's FWM read."""
    mean = sum(float(x) for x in r) / len(r)
    var = sum((float(x) - mean) ** 2 for x in r) / len(r)
    return (r - mean) / math.sqrt(var + 1e-5)


def _paper_loop(model: HookedRetriever, keys, values, queries, scales: list | None = None):
    """W (and ŷ) by the paper's equations, one sequence and one position at a time, in float64; ``scales``
    (fwm) collects each sequence's rescale factors c_t."""
    cfg = model.cfg
    S = cfg.num_keys
    E, WK, bK, WQ, bQ = (p.detach().double() for p in (model.W_E, model.W_K, model.b_K, model.W_Q, model.b_Q))
    memories, outputs = [], []
    for b in range(keys.shape[0]):
        cs = []
        d_key = cfg.d_key
        W = torch.zeros(d_key, S, dtype=torch.float64)
        z = torch.zeros(d_key, dtype=torch.float64)
        ks, vs = [], []
        for t in range(keys.shape[1]):
            v = torch.zeros(S, dtype=torch.float64)
            v[values[b, t]] = 1.0
            x = torch.cat([v, E[keys[b, t]]])  # [onehot(value) ‖ E[key]]
            k = _phi(x @ WK + bK, cfg, model)
            if cfg.update == "sum":
                W = W + torch.outer(k, v)
                z = z + k
            elif cfg.update == "fwm":
                # Schlag, Munkhdalai & Schmidhuber 2021's rule as the paper's baseline runs it: the old value
                # under k is replaced by the β-mix of new and old, then W is scaled back to Frobenius norm ≤ 1
                # (from the second write on); keys are φ(k), unnormalised
                beta = torch.sigmoid(x @ model.w_beta.detach().double() + model.b_beta.detach().double())
                v_old = W.T @ k
                W = W - torch.outer(k, v_old) + torch.outer(k, beta * v + (1 - beta) * v_old)
                c = max(1.0, float(torch.linalg.matrix_norm(W))) if t > 0 else 1.0
                W = W / c
                cs.append(c)
            else:
                k = k / (k.sum() + cfg.eps)
                beta = torch.sigmoid(x @ model.w_beta.detach().double() + model.b_beta.detach().double())
                v_old = W.T @ k
                W = W + beta * torch.outer(k, v - v_old)
            ks.append(k)
            vs.append(v)
        ys = []
        for q_id in queries[b]:
            q = _phi(E[q_id] @ WQ + bQ, cfg, model)
            if cfg.update == "sum":
                ys.append(W.T @ q / (z @ q + cfg.eps))
            elif cfg.update == "fwm":
                ys.append(_layer_norm(W.T @ q))
            else:
                ys.append(W.T @ (q / (q.sum() + cfg.eps)))
        if scales is not None:
            scales.append(cs)
        memories.append(torch.cat([W, z[:, None]], 1) if cfg.update == "sum" else W)
        outputs.append(torch.stack(ys))
    return torch.stack(memories), torch.stack(outputs)


CASES = [
    dict(feature_map="elu1", update="sum"),
    dict(feature_map="identity", update="sum"),
    dict(feature_map="dpfp", dpfp_nu=2, update="sum"),
    dict(feature_map="favor", favor_features=16, update="sum"),
    dict(feature_map="elu1", update="delta"),
    dict(feature_map="dpfp", dpfp_nu=1, update="delta"),
    dict(feature_map="dpfp", dpfp_nu=3, update="delta"),
    dict(feature_map="elu1", update="fwm"),
    dict(feature_map="dpfp", dpfp_nu=2, update="fwm"),
]


@pytest.mark.parametrize("backend", ["chunk", "reference"])
@pytest.mark.parametrize("kw", CASES, ids=lambda kw: f"{kw['feature_map']}{kw.get('dpfp_nu', '')}-{kw['update']}")
def test_memory_and_reads_match_the_papers_equations(kw, backend):
    S = 9
    cfg = RetrieverConfig(num_keys=S, d_embed=7, d_head=6, chunk_size=5, backend=backend, seed=3, **kw)
    model = HookedRetriever(cfg)
    batch = Retrieval(num_keys=S, setting=2).sample(3, torch.Generator().manual_seed(4), all_queries=True)
    W_loop, y_loop = _paper_loop(model, batch.keys, batch.values, batch.queries)
    y, cache = model.run_with_cache(batch.keys, batch.values, batch.queries)
    W = cache["hook_memory"]
    assert W.shape == (3, cfg.d_key, S + (cfg.update == "sum"))
    scale = W_loop.abs().max()
    assert float((W.double() - W_loop).abs().max() / scale) < 1e-5
    assert float((y.detach().double() - y_loop).abs().max() / y_loop.abs().max()) < 1e-5
    y_att = model(batch.keys, batch.values, batch.queries, form="attention")  # the dual form, same numbers
    assert float((y_att.detach().double() - y_loop).abs().max() / y_loop.abs().max()) < 1e-5


def test_softmax_matches_the_papers_equations_and_has_no_memory():
    S = 8
    model = HookedRetriever(RetrieverConfig(num_keys=S, d_embed=5, d_head=4, feature_map="softmax", seed=1))
    batch = Retrieval(num_keys=S, setting=1).sample(2, torch.Generator().manual_seed(0), all_queries=True)
    y = model(batch.keys, batch.values, batch.queries).double()
    E, WK, bK, WQ, bQ = (p.detach().double() for p in (model.W_E, model.W_K, model.b_K, model.W_Q, model.b_Q))
    for b in range(2):
        v = F.one_hot(batch.values[b], S).double()
        K = torch.cat([v, E[batch.keys[b]]], 1) @ WK + bK
        for j, q_id in enumerate(batch.queries[b]):
            a = torch.softmax(K @ (E[q_id] @ WQ + bQ) / 2.0, 0)  # √d_head = 2
            assert torch.allclose(y[b, j], a @ v, atol=1e-6)
    with pytest.raises(ValueError, match="no memory"):
        model(batch.keys, batch.values, batch.queries, form="memory")
    with pytest.raises(ValueError, match="no memory matrix to probe"):
        probe_memory(model, batch)


@pytest.mark.parametrize("update", ["sum", "delta", "fwm"])
def test_patching_the_memory_changes_what_every_query_reads(update):
    S = 6
    model = HookedRetriever(RetrieverConfig(num_keys=S, d_embed=5, d_head=4, update=update))
    batch = Retrieval(num_keys=S).sample(2, torch.Generator().manual_seed(0), all_queries=True)
    _, cache = model.run_with_cache(batch.keys, batch.values, batch.queries)
    swapped = model.run_with_hooks(batch.keys, batch.values, batch.queries,
                                   fwd_hooks=[("hook_memory", lambda W, hook: W.flip(0))])  # sequence 1's memory
    q = cache["hook_q"].double()
    W_other = cache["hook_memory"].flip(0).double()
    r = torch.einsum("bkv,bnk->bnv", W_other, q)
    expected = r[..., :-1] / (r[..., -1:] + 1e-6) if update == "sum" else r
    if update == "fwm":
        expected = torch.stack([torch.stack([_layer_norm(x) for x in row]) for row in r])
    assert torch.allclose(swapped.double(), expected, atol=1e-5 if update == "fwm" else 1e-6)


@pytest.mark.parametrize("update", ["sum", "delta"])
def test_delta_rule_overwrites_where_the_sum_rule_accumulates(update):
    """Key 2 written twice (values 0 then 3) with one write key k (the value part of W_K zeroed) and, for the
    delta rule, β = 1: after the second write W = k̂[(1 − ‖k̂‖²)e₀ + e₃]ᵀ, so a query reads
    (k̂·q̂)((1 − ‖k̂‖²)e₀ + e₃); the sum rule reads the average (e₀ + e₃)/2."""
    S = 4
    keys, values, queries = torch.tensor([[2, 2]]), torch.tensor([[0, 3]]), torch.tensor([[2]])
    model = HookedRetriever(RetrieverConfig(num_keys=S, d_embed=3, d_head=4, update=update, seed=7))
    with torch.no_grad():
        model.W_K[:S].zero_()
        if update == "delta":
            model.w_beta.zero_()
            model.b_beta.fill_(50.0)  # σ(50) = 1 in float32
    y = model(keys, values, queries)[0, 0].double()
    E, WK, bK, WQ, bQ = (p.detach().double() for p in (model.W_E, model.W_K, model.b_K, model.W_Q, model.b_Q))
    k = _phi(E[2] @ WK[S:] + bK, model.cfg, model)
    q = _phi(E[2] @ WQ + bQ, model.cfg, model)
    if update == "delta":
        kh, qh = k / k.sum(), q / q.sum()
        expected = float(kh @ qh) * torch.tensor([1 - float(kh @ kh), 0, 0, 1], dtype=torch.float64)
    else:
        expected = torch.tensor([0.5, 0, 0, 0.5], dtype=torch.float64)
    assert torch.allclose(y, expected, atol=1e-5)


def test_fwm_rescales_after_every_write_but_the_first_and_its_dual_form_has_the_same_gradients():
    """The FWM rule (update="fwm"): the rescale factors c_t at hook_scale are the loop's, 1 at the first write
    and > 1 somewhere after it; W ends with ‖W‖_F ≤ 1; the attention form (the gated delta rule's UT form with
    α = 1/c) gives the same ŷ and the same gradients; it trains in the memory form; the probe reads
    LayerNorm(Wᵀk_i) as the model reads LayerNorm(Wᵀq)."""
    S = 9
    model = HookedRetriever(RetrieverConfig(num_keys=S, d_embed=7, d_head=6, feature_map="dpfp", update="fwm", seed=3))
    batch = Retrieval(num_keys=S, setting=2).sample(3, torch.Generator().manual_seed(4), all_queries=True)
    scales: list = []
    W_loop, y_loop = _paper_loop(model, batch.keys, batch.values, batch.queries, scales)
    y, cache = model.run_with_cache(batch.keys, batch.values, batch.queries)
    c = cache["hook_scale"].double()
    assert torch.allclose(c, torch.tensor(scales, dtype=torch.float64), rtol=1e-5)
    assert bool((c[:, 0] == 1).all()) and float(c[:, 1:].max()) > 1.01
    assert float(cache["hook_memory"].flatten(1).norm(dim=-1).max()) <= 1 + 1e-5
    assert model.train_form == "memory"
    assert HookedRetriever(RetrieverConfig(num_keys=S, d_embed=7, update="delta")).train_form == "attention"
    grads = []
    for form in ("memory", "attention"):
        model.zero_grad()
        retrieval_loss(model(batch.keys, batch.values, batch.queries, form=form), batch.targets, batch.query_mask).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_mem, g_att in zip(*grads):
        assert float((g_mem - g_att).abs().max()) <= 1e-4 * float(g_mem.abs().max()) + 1e-7
    df = probe_memory(model, batch)
    E, WK, bK = (p.detach().double() for p in (model.W_E, model.W_K, model.b_K))
    for (b, j), row in zip(batch.query_mask.nonzero().tolist(), df.itertuples()):
        p = int(batch.target_pos[b, j])
        v = F.one_hot(batch.values[b, p], S).double()
        r = _layer_norm(W_loop[b].T @ _phi(torch.cat([v, E[batch.keys[b, p]]]) @ WK + bK, model.cfg, model))
        assert row.probe_decodes == (int(r.argmax()) == int(batch.targets[b, j]))
        assert row.fidelity == pytest.approx(float(F.cosine_similarity(r, F.one_hot(batch.targets[b, j], S).double(), 0)), abs=1e-4)


def test_input_errors_say_what_to_do():
    model = HookedRetriever(RetrieverConfig(num_keys=5, d_embed=3, d_head=4))
    k = torch.zeros(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match=r"ids in \[0, 5\)"):
        model(k, k + 5, k[:, :1])
    with pytest.raises(ValueError, match="long tensor"):
        model(k.float(), k, k[:, :1])
    with pytest.raises(ValueError, match="form must be"):
        model(k, k, k[:, :1], form="dual")
    with pytest.raises(ValueError, match="no memory to update"):
        RetrieverConfig(num_keys=5, d_embed=3, feature_map="softmax", update="delta")
    with pytest.raises(ValueError, match="feature_map must be one of"):
        RetrieverConfig(num_keys=5, d_embed=3, feature_map="relu")
    with pytest.raises(ValueError, match=r"RetrieverConfig.paper\(7"):
        train_retriever(RetrieverConfig.paper(5), Retrieval(num_keys=7), progress=False)
    cfg = RetrieverConfig.paper(20, feature_map="dpfp", dpfp_nu=3)
    assert cfg.d_embed == 44 and cfg.d_key == 384 and RetrieverConfig.from_dict(cfg.to_dict()) == cfg
    assert RetrieverConfig.paper(20, feature_map="favor", favor_features=512).d_key == 1024


def test_loss_is_half_squared_error_and_zero_prediction_scores_one_half():
    y = torch.zeros(2, 3, 5)
    t = torch.tensor([[0, 1, 2], [3, 4, 0]])
    assert float(retrieval_loss(y, t)) == 0.5
    y[0, 0, 0] = 1.0
    mask = torch.tensor([[True, False, False], [False, False, False]])
    assert float(retrieval_loss(y, t, mask)) == 0.0


def test_training_learns_a_small_memory_and_leaves_the_given_model_alone():
    S = 8
    task = Retrieval(num_keys=S, setting=1)
    model = HookedRetriever(RetrieverConfig.paper(S, feature_map="dpfp", dpfp_nu=1, seed=1))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    eval_batch = task.sample(20, torch.Generator().manual_seed(99), all_queries=True)
    untrained = evaluate_retriever(model, eval_batch)
    cfg = RetrieverTrainConfig(max_steps=600, eval_every=100, seed=2)
    result = train_retriever(model, task, cfg, progress=False)
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())
    trained = evaluate_retriever(result.model, eval_batch)
    assert untrained["eval_loss"] > 0.4 and trained["eval_loss"] < 0.05 and trained["eval_acc"] > 0.95
    assert result.history[-1]["step"] == result.steps and result.stop in ("target", "patience", "max_steps")
    steps = [h["step"] for h in result.history]
    assert steps == list(range(100, result.steps + 1, 100))
    if result.stop == "target":
        assert result.final["eval_loss"] <= cfg.target_loss
    again = train_retriever(model, task, cfg, progress=False)  # seeded: the same run again, bit for bit
    assert all(torch.equal(p, q) for p, q in zip(result.model.parameters(), again.model.parameters()))
    # the probe on the trained memory: every pair is stored and found
    summary = summarize_probe(probe_memory(result.model, eval_batch))
    assert summary["probe_decodes"] > 0.95 and summary["model_accuracy"] == pytest.approx(trained["eval_acc"])


def test_training_stops_after_patience_evaluations_without_a_new_best():
    task = Retrieval(num_keys=6, setting=2)
    cfg = RetrieverTrainConfig(max_steps=10_000, eval_every=5, patience=2, lr=1e-9, target_loss=0.0)
    result = train_retriever(RetrieverConfig.paper(6), task, cfg, progress=False)
    losses = [h["eval_loss"] for h in result.history]
    assert result.stop == "patience" and result.steps < 10_000
    best_at = losses.index(min(losses))
    assert len(losses) - 1 - best_at == 2 and all(x >= min(losses[:-2]) for x in losses[-2:])


def test_probe_reads_the_memory_with_each_answers_write_key():
    """probe_decodes/fidelity against reading the loop-built memory by hand."""
    S = 7
    model = HookedRetriever(RetrieverConfig(num_keys=S, d_embed=6, d_head=5, update="delta", feature_map="dpfp", seed=5))
    batch = Retrieval(num_keys=S, setting=2).sample(3, torch.Generator().manual_seed(8), all_queries=True)
    df = probe_memory(model, batch)
    W_loop, y_loop = _paper_loop(model, batch.keys, batch.values, batch.queries)
    E, WK, bK = (p.detach().double() for p in (model.W_E, model.W_K, model.b_K))
    rows = 0
    for b in range(3):
        for j in range(S):
            if not batch.query_mask[b, j]:
                continue
            p, target = int(batch.target_pos[b, j]), int(batch.targets[b, j])
            v = F.one_hot(batch.values[b, p], S).double()
            k = _phi(torch.cat([v, E[batch.keys[b, p]]]) @ WK + bK, model.cfg, model)
            k = k / (k.sum() + 1e-6)
            r = W_loop[b].T @ k
            row = df.iloc[rows]
            assert (row.seq, row.key, row.target, row.target_pos) == (b, int(batch.queries[b, j]), target, p)
            assert row.probe_decodes == (int(r.argmax()) == target)
            assert row.fidelity == pytest.approx(float(F.cosine_similarity(r, F.one_hot(torch.tensor(target), S).double(), 0)), abs=1e-5)
            assert row.model_correct == (int(y_loop[b, j].argmax()) == target)
            assert row.occurrences == batch.keys[b].tolist().count(int(batch.queries[b, j]))
            rows += 1
    assert rows == len(df) == int(batch.query_mask.sum())


@pytest.mark.integration
def test_case_study_quick_mode_writes_results_and_figures(tmp_path):
    """End to end in seconds; PNGs are checked where a Chromium exists for kaleido (else HTML only)."""
    png = any(shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome", "chrome"))
    start = time.perf_counter()
    cmd = [sys.executable, "-m", "case_studies.capacity", "--quick", "--out", str(tmp_path)] + ([] if png else ["--no-png"])
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    seconds = time.perf_counter() - start
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["command"].startswith("python -m case_studies.capacity") and "--quick" in results["command"]
    runs = results["runs"]
    assert {r["setting"] for r in runs} == {1, 2} and all(0 <= r["final_eval_loss"] for r in runs)
    assert any(r["update"] == "delta" for r in runs) and any(r["feature_map"] == "softmax" for r in runs)
    assert any(r["update"] == "fwm" for r in runs)
    probed = [r for r in runs if r["feature_map"] != "softmax"]
    assert probed and all(0 <= r["probe"]["probe_decodes"] <= 1 for r in probed)
    for name in results["figures"]:
        assert (tmp_path / f"{name}.html").stat().st_size > 10_000
        if png:
            assert (tmp_path / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(results["figures"]) == {"loss_vs_S", "learning_curves", "probe_vs_accuracy"}
    assert "Setting 1: final eval loss" in (tmp_path / "tables.md").read_text()
    assert seconds < 120, f"--quick took {seconds:.0f} s"


def test_study_configs_are_data_and_capacity_reads_the_grid():
    from case_studies.capacity.config import FULL, QUICK
    from case_studies.capacity.tables import capacity

    for study in (FULL, QUICK):
        names = [r.name for r in study.runs]
        assert len(names) == len(set(names))
        json.dumps(study.to_dict())  # JSON-serialisable as it stands
    assert FULL.train.max_steps == 2000 and FULL.train.batch_size == 32 and FULL.train.lr == 1e-3
    assert {r.model.label for r in FULL.runs if r.setting == 1} == {
        "Linear", "DPFP-1", "DPFP-2", "DPFP-3", "FAVOR+ (64)", "FAVOR+ (128)", "FAVOR+ (512)", "Softmax",
        "FAVOR+ (64, redrawn)", "FAVOR+ (128, redrawn)", "FAVOR+ (512, redrawn)"}
    setting2 = {(r.num_keys, r.model.feature_map, r.model.dpfp_nu, r.model.update) for r in FULL.runs if r.setting == 2}
    sums = {(S, fm, nu) for S, fm, nu, u in setting2 if u == "sum"}
    assert {(S, fm, nu) for S, fm, nu, u in setting2 if u == "fwm"} == sums == {
        (S, fm, nu) for S, fm, nu, u in setting2 if u == "delta"}
    assert capacity({20: 0.0009, 40: 0.0008, 60: 0.0246, 120: 0.2}) == "40 (fails at 60)"
    assert capacity({20: 0.02, 40: 0.03}) == "none (fails at 20)"
    assert capacity({20: 0.001, 40: 0.002}) == "≥ 40"


def test_merge_adds_runs_by_name_in_the_full_studys_order():
    from case_studies.capacity.config import FULL
    from case_studies.capacity.merge import merge

    names = [r.name for r in FULL.runs]
    base = {"command": "python -m case_studies.capacity", "wall_seconds": 1.0, "study": {}, "quick": False,
            "runs": [{"name": names[0], "x": 0}, {"name": names[-2], "x": 0}]}
    extra = {"command": "python -m case_studies.capacity --only ...", "wall_seconds": 2.0, "train_cpu_seconds": 1.5,
             "written": "now", "quick": False, "study": FULL.to_dict(),
             "runs": [{"name": names[-1], "x": 1}, {"name": names[-2], "x": 1}, {"name": names[1], "x": 1}]}
    merged = merge(base, [extra])
    assert [r["name"] for r in merged["runs"]] == [names[0], names[1], names[-2], names[-1]]
    assert [r["x"] for r in merged["runs"]] == [0, 1, 1, 1] and merged["command"] == base["command"]
    assert merged["added_runs"][0]["runs"] == [names[-1], names[-2], names[1]] and merged["study"] == FULL.to_dict()
    with pytest.raises(ValueError, match="not in config.FULL"):
        merge(base, [dict(extra, runs=[{"name": "s9-S1-x"}])])
    with pytest.raises(ValueError, match="protocol"):
        merge(base, [dict(extra, quick=True)])


@pytest.mark.parametrize("kw", [dict(update="sum"), dict(update="delta"), dict(update="fwm"), dict(feature_map="softmax")])
def test_every_hook_fires_with_its_documented_shape(kw):
    S, b, L, n = 6, 2, 12, 5
    cfg = RetrieverConfig(num_keys=S, d_embed=4, d_head=3, **{"feature_map": "dpfp", **kw})
    model = HookedRetriever(cfg)
    batch = Retrieval(num_keys=S, setting=2).sample(b, torch.Generator().manual_seed(0))
    queries = torch.arange(n).remainder(S).expand(b, n)
    d_key = cfg.d_key
    expect = {"hook_k": (b, L, d_key), "hook_v": (b, L, S), "hook_q": (b, n, d_key), "hook_out": (b, n, S)}
    if cfg.update in ("delta", "fwm"):
        expect["hook_beta"] = (b, L)
    if cfg.update == "fwm":
        expect["hook_scale"] = (b, L)
    forms = ["attention"] if cfg.feature_map == "softmax" else ["memory", "attention"]
    for form in forms:
        _, cache = model.run_with_cache(batch.keys, batch.values, queries, form=form)
        shapes = dict(expect, **({"hook_memory": (b, d_key, S + (cfg.update == "sum"))} if form == "memory"
                                 else {"hook_pattern": (b, n, L)}))
        assert {k: tuple(v.shape) for k, v in cache.items()} == shapes


def test_d_key_is_the_feature_map_modules():
    from workbench.components.feature_maps import feature_dim

    for fm, kw in (("elu1", {}), ("identity", {}), ("dpfp", {"dpfp_nu": 3}), ("favor", {"favor_features": 40})):
        cfg = RetrieverConfig.paper(10, feature_map=fm, **kw)
        assert cfg.d_key == feature_dim(fm, cfg.d_head, cfg.dpfp_nu, cfg.favor_features)
    assert feature_dim("dpfp", 64, 3) == 384 and feature_dim("favor", 64, m=512) == 1024
    assert RetrieverConfig.paper(10, feature_map="softmax").d_key == 64
    with pytest.raises(ValueError, match="feature map must be one of"):
        feature_dim("softmax", 64)


def test_orthogonal_features_are_orthogonal_within_blocks_with_gaussian_norms():
    W = orthogonal_features(8, 20, torch.Generator().manual_seed(0))
    assert W.shape == (8, 20)
    for block in (W[:, :8], W[:, 8:16], W[:, 16:]):
        gram = block.T @ block
        assert torch.allclose(gram, torch.diag(gram.diagonal()), atol=1e-5)  # orthogonal columns
    many = orthogonal_features(16, 16 * 400, torch.Generator().manual_seed(1)).norm(dim=0).pow(2)
    assert abs(float(many.mean()) - 16) < 0.5 and abs(float(many.var()) - 32) < 4  # chi²(16): mean 16, var 32


@pytest.mark.parametrize("update", ["sum", "delta"])
def test_paper_favor_draws_fresh_features_at_every_call(update):
    S = 7
    cfg = RetrieverConfig(num_keys=S, d_embed=5, d_head=4, feature_map="favor", favor_features=6, favor_redraw=True,
                          update=update, seed=2)
    model = HookedRetriever(cfg)
    batch = Retrieval(num_keys=S, setting=2).sample(2, torch.Generator().manual_seed(3), all_queries=True)
    replay = torch.Generator()
    replay.set_state(model.favor_generator.get_state())
    y1 = model(batch.keys, batch.values, batch.queries).detach()
    y2 = model(batch.keys, batch.values, batch.queries).detach()
    assert not torch.allclose(y1, y2)  # the features changed between calls
    model.test_projection = orthogonal_features(4, 6, replay)  # the first call's draw
    _, y_loop = _paper_loop(model, batch.keys, batch.values, batch.queries)
    assert float((y1.double() - y_loop).abs().max() / y_loop.abs().max()) < 1e-5
    assert RetrieverConfig.from_dict(cfg.to_dict()) == cfg and cfg.label == "FAVOR+ (6, redrawn)"
    with pytest.raises(ValueError, match="favor_redraw"):
        RetrieverConfig(num_keys=S, d_embed=5, feature_map="dpfp", favor_redraw=True)
