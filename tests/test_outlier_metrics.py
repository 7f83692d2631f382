"""Outlier metrics on constructed activations with answers worked out by hand, and the streaming
statistics against numpy over the whole stream held at once (never against the code under test)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from workbench.analysis.outliers import (OutlierStats, kurtosis, kurtosis_from_rms, massive_mask, max_median_ratio,
                                         median_abs, neuron_rms, signal_propagation, top_ratios)


def signs(n, d, seed=0):
    return torch.randint(0, 2, (n, d), generator=torch.Generator().manual_seed(seed)).double() * 2 - 1


def test_kurtosis_of_one_outlier_channel_matches_the_closed_form():
    # |X_tj| = 1 except channel 0 with |X_t0| = a: s = (a, 1, …, 1), Kurt = d(a⁴ + d − 1) / (a² + d − 1)²
    for d, a in [(4, 3.0), (64, 10.0), (7, 0.5)]:
        X = signs(50, d)
        X[:, 0] *= a
        want = d * (a ** 4 + d - 1) / (a ** 2 + d - 1) ** 2
        assert kurtosis(X).item() == pytest.approx(want, rel=1e-13)
    assert kurtosis(X.float()).dtype == torch.float64


def test_kurtosis_bounds_and_rms():
    X = signs(30, 16, seed=1) * 2.5
    assert kurtosis(X).item() == pytest.approx(1.0, abs=1e-14)  # every neuron equally large
    one = torch.zeros(30, 16, dtype=torch.float64)
    one[:, 5] = torch.linspace(-3, 3, 30, dtype=torch.float64)
    assert kurtosis(one).item() == pytest.approx(16.0, rel=1e-13)  # one neuron carries everything
    rnd = torch.randn(40, 9, generator=torch.Generator().manual_seed(3))
    s = np.sqrt((rnd.numpy().astype(np.float64) ** 2).mean(0))
    assert np.allclose(neuron_rms(rnd).numpy(), s, rtol=1e-13)
    assert kurtosis_from_rms(torch.tensor(s)).item() == pytest.approx((s ** 4).mean() / (s ** 2).mean() ** 2,
                                                                      rel=1e-12)


def test_median_and_max_median_ratio():
    X = torch.tensor([[1.0, -2.0, 3.0, 10.0],     # median |x| = 2.5 (even width: mean of 2 and 3), max 10
                      [-5.0, 1.0, 1.0, 0.5]])     # median 1.0, max 5
    assert median_abs(X).tolist() == [2.5, 1.0]
    assert max_median_ratio(X).item() == pytest.approx((10 / 2.5 + 5 / 1.0) / 2)
    odd = torch.tensor([[3.0, -1.0, 2.0]])
    assert median_abs(odd).item() == 2.0
    rnd = torch.randn(20, 10, generator=torch.Generator().manual_seed(4)).double()
    a = np.abs(rnd.numpy())
    assert max_median_ratio(rnd).item() == pytest.approx((a.max(1) / np.median(a, 1)).mean(), rel=1e-13)


def test_ratios_of_zero_medians():
    X = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 4.0], [1.0, 1.0, 2.0]])  # zero row; median 0 with a 4
    assert max_median_ratio(X[[0, 2]]).item() == pytest.approx((1.0 + 2.0) / 2)  # all-zero row: 0/0 := 1
    assert max_median_ratio(X).item() == float("inf")
    values, token, neuron = top_ratios(X, k=2)
    assert values[0].item() == float("inf") and (token[0].item(), neuron[0].item()) == (1, 2)
    assert values[1].item() == 2.0


def test_massive_activations_need_both_thresholds():
    X = torch.full((4, 2001), 0.1, dtype=torch.float64)
    X[0, 7] = 150.0  # > 100 and 1500× the median 0.1: massive
    X[1, 3] = -120.0  # negative counts by magnitude: massive
    X[2, 9] = 99.0  # below the absolute threshold
    X[3] = 1.0
    X[3, 11] = 150.0  # only 150× the median 1.0
    mask = massive_mask(X)
    assert mask.sum().item() == 2 and mask[0, 7] and mask[1, 3]
    assert massive_mask(X, abs_threshold=50, rel_threshold=100).sum().item() == 4


def test_top_ratios_against_a_brute_force_scan():
    X = torch.randn(12, 6, generator=torch.Generator().manual_seed(5)).double()
    X[4, 2] = 40.0
    r = np.abs(X.numpy()) / np.median(np.abs(X.numpy()), 1, keepdims=True)
    order = np.argsort(-r, axis=None)[:5]
    values, token, neuron = top_ratios(X, k=5)
    assert np.allclose(values.numpy(), r.flatten()[order], rtol=1e-14)
    assert token.tolist() == (order // 6).tolist() and neuron.tolist() == (order % 6).tolist()
    assert (token[0].item(), neuron[0].item()) == (4, 2)
    assert len(top_ratios(X[:1, :2], k=10)[0]) == 2


def test_signal_propagation_known_cases_and_gram_matrix():
    v = torch.tensor([1.0, 2.0, -2.0])
    assert signal_propagation(torch.stack([v, 3 * v, 0.5 * v])).item() == pytest.approx(1.0)  # collapse
    assert signal_propagation(torch.eye(5)).item() == pytest.approx(0.0, abs=1e-15)  # orthogonal
    assert signal_propagation(torch.stack([v, -v])).item() == pytest.approx(-1.0)
    X = torch.randn(9, 4, generator=torch.Generator().manual_seed(6)).double() + 1.0
    U = X.numpy() / np.linalg.norm(X.numpy(), axis=1, keepdims=True)
    G = U @ U.T
    want = (G.sum() - np.trace(G)) / (9 * 8)
    assert signal_propagation(X).item() == pytest.approx(want, rel=1e-13)
    with_zero = torch.cat([X, torch.zeros(1, 4, dtype=torch.float64)])  # a zero row: cosine 0 with all
    assert signal_propagation(with_zero).item() == pytest.approx(want * 72 / 90, rel=1e-13)


def test_metrics_reject_bad_input_with_the_fix():
    with pytest.raises(ValueError, match=r"\[tokens, width\].*reshape"):
        kurtosis(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="nan or inf"):
        kurtosis(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match="floating point"):
        kurtosis(torch.ones(2, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="empty"):
        kurtosis(torch.zeros(0, 3))
    with pytest.raises(ValueError, match="two tokens"):
        signal_propagation(torch.ones(1, 3))
    with pytest.raises(ValueError, match="positive int"):
        top_ratios(torch.ones(2, 2), k=0)


# ---------------------------------------------------------------- streaming statistics

def stream(n_batches=6, batch=3, pos=10, width=24, seed=7):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        X = torch.randn(batch, pos, width, generator=g)
        X[..., 3] *= 20.0  # an outlier feature
        X[:, 0, 11] = 5000.0  # a massive activation on the first token
        out.append(X)
    return out


def whole_stream_numpy(batches):
    """Every metric from all activations at once, in numpy."""
    X = torch.cat(batches).double().numpy()  # [sequences, pos, width]
    flat = X.reshape(-1, X.shape[-1])
    a = np.abs(flat)
    med = np.median(a, 1)
    s = np.sqrt((flat ** 2).mean(0))
    U = X / np.linalg.norm(X, axis=-1, keepdims=True)
    G = np.einsum("bpd,bqd->bpq", U, U)
    p = X.shape[1]
    ratio = a / med[:, None]
    return dict(kurt=(s ** 4).mean() / (s ** 2).mean() ** 2, mmr=(a.max(1) / med).mean(),
                massive=((a > 100) & (a > 1000 * med[:, None])), rms=s, mean=flat.mean(0), max_abs=a.max(0),
                sp=(G.sum((1, 2)) - np.trace(G, axis1=1, axis2=2)).sum() / (X.shape[0] * p * (p - 1)),
                top=np.sort(ratio, axis=None)[::-1])


def test_one_pass_equals_the_whole_stream_and_any_merge():
    batches = stream()
    want = whole_stream_numpy(batches)
    one = OutlierStats(24, top_k=5)
    for X in batches:
        one.update(X)
    r = one.result()
    assert r.n_tokens == 6 * 3 * 10
    assert r.kurtosis == pytest.approx(want["kurt"], rel=1e-12)
    assert r.max_median_ratio == pytest.approx(want["mmr"], rel=1e-12)
    assert r.n_massive == want["massive"].sum() == 18
    assert r.massive_token_fraction == pytest.approx(want["massive"].any(1).mean())
    assert r.signal_propagation == pytest.approx(want["sp"], rel=1e-12)
    assert np.allclose(r.top_ratio, want["top"][:5], rtol=1e-13)
    assert np.allclose(one.rms().numpy(), want["rms"], rtol=1e-13)
    top = one.top_entries()
    assert set(top.neuron) == {11} and set(top.pos) == {0} and (top.value == 5000.0).all()
    table = one.neurons()
    assert table.neuron.iloc[0] == 11 and table.neuron.iloc[1] == 3
    assert np.allclose(table.sort_values("neuron")["mean"], want["mean"], rtol=1e-12, atol=1e-15)
    assert np.allclose(table.sort_values("neuron")["max_abs"], want["max_abs"], rtol=0)
    assert table.n_massive.sum() == 18

    # split the stream three ways, merge in another order: same numbers
    parts = [OutlierStats(24, top_k=5) for _ in range(3)]
    for i, X in enumerate(batches):
        parts[i % 3].update(X)
    merged = parts[2].copy().merge(parts[0]).merge(parts[1])
    m = merged.result()
    for name in ("n_tokens", "n_massive", "massive_token_fraction"):
        assert getattr(m, name) == getattr(r, name)
    for name in ("kurtosis", "max_median_ratio", "signal_propagation", "max_abs"):
        assert getattr(m, name) == pytest.approx(getattr(r, name), rel=1e-13)
    assert np.allclose(m.top_ratio, r.top_ratio, rtol=1e-15)
    assert torch.allclose(merged.sum_sq, one.sum_sq, rtol=1e-13)
    assert parts[2].n_tokens == 2 * 30  # copy() left the part untouched


def test_streaming_matches_the_pure_metrics_on_one_block():
    X = stream(n_batches=1, batch=1)[0][0]  # [pos, width]: one sequence
    acc = OutlierStats(24).update(X)
    r = acc.result()
    assert r.kurtosis == pytest.approx(kurtosis(X).item(), rel=1e-13)
    assert r.max_median_ratio == pytest.approx(max_median_ratio(X).item(), rel=1e-13)
    assert r.signal_propagation == pytest.approx(signal_propagation(X).item(), rel=1e-13)
    assert r.n_massive == int(massive_mask(X).sum())
    assert np.allclose(r.top_ratio, top_ratios(X, 8)[0].numpy(), rtol=1e-15)


def test_stats_reject_mismatches():
    acc = OutlierStats(8)
    with pytest.raises(ValueError, match="update"):
        acc.result()
    with pytest.raises(ValueError, match="width 9"):
        acc.update(torch.zeros(1, 2, 9))
    with pytest.raises(ValueError, match=r"\[batch, pos, width\]"):
        acc.update(torch.zeros(8))
    with pytest.raises(ValueError, match="same settings"):
        acc.merge(OutlierStats(8, top_k=3))
    with pytest.raises(ValueError, match="positive int"):
        OutlierStats(0)
    assert math.isnan(OutlierStats(3).update(torch.ones(4, 1, 3)).result().signal_propagation)  # 1-token sequences
