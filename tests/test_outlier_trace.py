"""Outlier tracing through HookedFastWeightLM: streaming statistics against the full cache and numpy,
fast-weight spectra against model.fast_weights and numpy SVDs, the residual decomposition against the
residual stream itself."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.outliers import kurtosis, max_median_ratio, signal_propagation
from workbench.analysis.outliers.decompose import contribution_summary, decompose_residual
from workbench.analysis.outliers.states import state_statistics
from workbench.analysis.outliers.trace import SITE_HOOKS, hot_channels, outlier_table, top_neurons, trace_outliers

G = torch.Generator().manual_seed(11)
BATCHES = [torch.randint(0, 31, (2, 20), generator=G) for _ in range(3)]


def make(**kw) -> HookedFastWeightLM:
    base = dict(d_vocab=31, d_model=24, n_heads=2, d_head=6, d_mlp=40, chunk_size=8, init_std=0.3, n_layers=2)
    return HookedFastWeightLM(ModelConfig.from_dict(dict(**{**base, **kw})))


def full_cache(model, names):
    caches = [model.run_with_cache(t, names_filter=lambda n: n in names)[1] for t in BATCHES]
    return {n: torch.cat([c[n] for c in caches]) for n in names}


@pytest.mark.parametrize("kw", [dict(mixer="delta"), dict(mixer="softmax", mlp="swiglu"),
                                dict(mixer="linear", feature_map="dpfp", dpfp_nu=1)], ids=["delta", "softmax", "dpfp"])
def test_trace_equals_metrics_on_the_whole_cache(kw):
    model = make(**kw)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = trace_outliers(model, BATCHES, sites=tuple(SITE_HOOKS), progress=False)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not any(hp._forward_hooks for hp in model.hook_dict.values())
    cache = full_cache(model, set(stats))
    table = outlier_table(stats).set_index("hook")
    expected = {f"blocks.{i}.{h}" for i in range(2) for h in ("hook_resid_pre", "hook_resid_mid", "hook_resid_post",
                                                                "hook_attn_out", "hook_mlp_out", "mlp.hook_post",
                                                                "attn.hook_q", "attn.hook_k", "attn.hook_v",
                                                                "attn.hook_z")}
    expected |= {f"blocks.{i}.attn.hook_delta" for i in range(2)} if kw["mixer"] == "delta" else set()
    assert set(stats) == expected
    for name, act in cache.items():
        X = act.reshape(act.shape[0], act.shape[1], -1)  # [batch, pos, width]
        flat = X.reshape(-1, X.shape[-1])
        row = table.loc[name]
        assert row.n_tokens == 6 * 20
        assert row["kurtosis"] == pytest.approx(kurtosis(flat).item(), rel=1e-10)
        assert row.max_median_ratio == pytest.approx(max_median_ratio(flat).item(), rel=1e-10)
        sp = np.mean([signal_propagation(x).item() for x in X])  # equal-length sequences: mean of means
        assert row.signal_propagation == pytest.approx(sp, rel=1e-9, abs=1e-12)
        assert row.max_abs == pytest.approx(flat.abs().max().item(), rel=1e-6)
    # per-head sites: neuron n is (head n // d, channel n % d)
    k = cache["blocks.1.attn.hook_k"].double()  # [batch, pos, head, d_k]
    tops = top_neurons(stats, model.cfg, n=3).query("hook == 'blocks.1.attn.hook_k'")
    rms = k.pow(2).mean((0, 1)).sqrt()
    for _, r in tops.iterrows():
        assert r.rms == pytest.approx(rms[r["head"], r["channel"]].item(), rel=1e-10)
    assert tops.rms.iloc[0] == pytest.approx(rms.max().item(), rel=1e-10)
    hot = hot_channels(stats, model.cfg, sites=("k",), n=2).query("layer == 1")
    want = (rms / rms.median(-1, keepdim=True).values if rms.shape[-1] % 2 else
            rms / torch.quantile(rms, 0.5, dim=-1, keepdim=True))
    assert len(hot) == 2 * 2
    for _, r in hot.iterrows():
        assert r.head_ratio == pytest.approx(want[r["head"], r["channel"]].item(), rel=1e-10)
    firsts = hot.groupby("head").channel.first()
    assert [firsts[h] for h in range(2)] == want.argmax(-1).tolist()  # hottest channel of each head first


def test_trace_refuses_bad_requests():
    model = make(mixer="softmax", mlp="none")
    with pytest.raises(ValueError, match="unknown sites"):
        trace_outliers(model, BATCHES, sites=("resid",))
    with pytest.raises(ValueError, match="none of the sites"):
        trace_outliers(model, BATCHES, sites=("delta", "mlp_hidden"))
    with pytest.raises(ValueError, match=r"layer 5 is not in \[0, 1\]"):
        trace_outliers(model, BATCHES, layers=[5])
    stats = trace_outliers(model, BATCHES[:1], sites=("resid_post",), progress=False)
    with pytest.raises(ValueError, match="trace them first"):
        hot_channels(stats, model.cfg)


def effective_rank_numpy(W):
    s = np.linalg.svd(W, compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return np.exp(-(p * np.log(p)).sum()), s


@pytest.mark.parametrize("kw", [dict(mixer="gated_delta"), dict(mixer="linear", feature_map="elu1", sum_norm=True)],
                         ids=["gated_delta", "linear_sumnorm"])
def test_state_statistics_against_fast_weights_and_numpy(kw):
    model = make(**kw)
    positions = [0, 7, 8, 19]
    df = state_statistics(model, BATCHES[:2], positions=positions, n_singular=3, progress=False)
    assert len(df) == 2 * len(positions) * 2 and set(df.n_sequences) == {4}
    for layer in (0, 1):
        W = torch.cat([model.fast_weights(t, layer, positions) for t in BATCHES[:2]]).double().numpy()
        W = W[..., :model.cfg.d_head]  # drop the sum-normaliser column
        for pi, pos in enumerate(positions):
            for h in range(2):
                row = df.query(f"layer == {layer} and head == {h} and pos == {pos}").iloc[0]
                mats = W[:, pi, h]
                ranks, sv = zip(*[effective_rank_numpy(m) for m in mats])
                assert row.frobenius == pytest.approx(np.linalg.norm(mats, axis=(1, 2)).mean(), rel=1e-5)
                assert row.effective_rank == pytest.approx(np.mean(ranks), rel=1e-4)
                assert row.sigma_1 == pytest.approx(np.mean([s[0] for s in sv]), rel=1e-5)
                assert row.sigma_3 == pytest.approx(np.mean([s[2] for s in sv]), rel=1e-4, abs=1e-9)
    at0 = df.query("pos == 0")  # W_0 = k_0 u_0ᵀ has rank one
    assert np.allclose(at0.effective_rank, 1.0, atol=1e-4)


def test_state_statistics_refuse_softmax_and_bad_positions():
    with pytest.raises(ValueError, match="no fast-weight layer"):
        state_statistics(make(mixer="softmax"), BATCHES, progress=False)
    with pytest.raises(ValueError, match="outside the sequence"):
        state_statistics(make(mixer="delta"), BATCHES, positions=[20], progress=False)


@pytest.mark.parametrize("kw", [dict(mixer="gated_delta", output_gate=True, norm="rmsnorm"),
                                dict(mixer="softmax"), dict(mixer="linear", feature_map="elu1", positional="none"),
                                dict(mixer="delta", mlp="none"), dict(mixer="softmax", block="outlier_protected")],
                         ids=["gated_delta_gate", "softmax", "linear_nopos", "delta_nomlp", "softmax_op"])
def test_residual_decomposition_sums_to_the_residual(kw):
    model = make(**kw)
    tokens = BATCHES[0]
    _, cache = model.run_with_cache(tokens)
    sites = ("resid_pre", "resid_mid", "resid_post") if model.cfg.mlp != "none" else ("resid_pre", "resid_post")
    for layer in (0, 1):
        for site in sites:
            df = decompose_residual(model, tokens, neuron=5, layer=layer, site=site)
            total = df.groupby(["batch", "pos"]).value.sum().unstack().to_numpy()
            want = cache[f"blocks.{layer}.hook_{site}"][..., 5].double().numpy()
            assert np.allclose(total, want, atol=1e-5, rtol=1e-5), (layer, site)
    df = decompose_residual(model, tokens, neuron=5, layer=-1)
    heads = df[df.kind == "head"]
    assert set(zip(heads.layer, heads["head"])) == {(0, 0), (0, 1), (1, 0), (1, 1)}
    # per-head shares add up to the mixer output that the block adds
    attn = df[df.layer == 1].query("kind in ['head', 'attn_bias']").groupby(["batch", "pos"]).value.sum()
    assert np.allclose(attn.unstack().to_numpy(), cache["blocks.1.hook_attn_out"][..., 5].double().numpy(),
                       atol=1e-6)
    assert all(not b.attn._forward_pre_hooks for b in model.blocks)
    summary = contribution_summary(df)
    assert summary.share_abs.sum() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="residual-stream dimension"):
        decompose_residual(model, tokens, neuron=24)


def test_trace_over_training_reads_every_checkpoint(tmp_path):
    from workbench import load
    from workbench.analysis.outliers.over_training import run_checkpoints, trace_over_training
    from workbench.tasks import MQAR
    from workbench.training import TrainConfig, train

    task = MQAR(vocab_size=31, seq_len=20, num_kv_pairs=2)
    cfg = make(mixer="delta", n_layers=1, init_std=0.02)
    train(cfg, task, TrainConfig(steps=6, batch_size=4, save_every=3, eval_every=3, out_dir=str(tmp_path)),
          progress=False)
    found = run_checkpoints(tmp_path)
    assert list(found) == [3, 6] and found[6].name == "step_6"
    df = trace_over_training(tmp_path, BATCHES[:2], sites=("resid_post", "k"), progress=False)
    assert sorted(set(df.step)) == [3, 6] and len(df) == 2 * 2
    for step in (3, 6):
        want = outlier_table(trace_outliers(load(found[step]), BATCHES[:2], sites=("resid_post", "k"), progress=False))
        got = df[df.step == step].drop(columns="step").reset_index(drop=True)
        assert np.allclose(got["kurtosis"], want["kurtosis"], rtol=1e-12)
    assert not np.allclose(df[df.step == 3]["kurtosis"], df[df.step == 6]["kurtosis"])  # the weights did change
    with pytest.raises(ValueError, match="no step_N"):
        run_checkpoints(tmp_path / "step_3")
