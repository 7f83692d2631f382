"""K-FAC factors against brute force: per-token inputs from the cache, per-token output gradients from a
perturbation added at one token at a time, outer products summed in Python loops; the captured pairs
against the ordinary parameter gradient; streaming = split + merge; the model is left untouched."""

from __future__ import annotations

import json

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.kfac import (KFACConfig, KFACFactors, batch_generator, capture_linear, collect_kfac,
                                     linear_sites, sample_labels)

VARIANTS = {
    "softmax": dict(mixer="softmax"),
    "linear_dpfp": dict(mixer="linear", feature_map="dpfp", sum_norm=True),
    "delta_swiglu": dict(mixer="delta", mlp="swiglu"),
    "gated_delta_gate_nonorm": dict(mixer="gated_delta", output_gate=True, norm="none", allow_neg_eigval=True),
}


def tiny(variant: str, dtype=torch.float64, **kw) -> HookedFastWeightLM:
    cfg = ModelConfig.from_dict(dict(d_vocab=11, d_model=6, n_layers=2, n_heads=2, d_head=3, d_mlp=5, chunk_size=4,
                      backend="reference", init_std=0.3, seed=1, **{**VARIANTS[variant], **kw}))
    return HookedFastWeightLM(cfg).to(dtype)


def tokens_for(i: int, vocab: int = 11, shape=(2, 5)) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(100 + i))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_pairs_reproduce_the_parameter_gradient(variant):
    """Σ_t a_t g_tᵀ over the captured pairs is ∂L/∂W (gold labels, L = summed NLL), for every site."""
    model = tiny(variant)
    tokens = tokens_for(0)
    pairs = capture_linear(model, tokens, labels="gold")
    assert all(p.grad is None for p in model.parameters())  # capture leaves .grad alone
    logp = torch.log_softmax(model(tokens), -1)  # float64 throughout
    loss = -logp[:, :-1].gather(-1, tokens[:, 1:, None]).sum()
    loss.backward()
    cfg = model.cfg
    for site in linear_sites(model):
        a, g = pairs[site.param]
        grad = model.get_parameter(site.param).grad
        if site.layout == "head_in_out":
            expected = torch.einsum("tm,thd->hmd", a, g.view(-1, cfg.n_heads, cfg.d_head))
        elif site.layout == "head_out":
            expected = torch.einsum("thd,tm->hdm", a.view(-1, cfg.n_heads, cfg.d_head), g)
        else:
            expected = a.T @ g
        torch.testing.assert_close(expected, grad, rtol=1e-10, atol=1e-12, msg=site.param)


def brute_force_factors(model, site, batches, labels, seed):
    """Python loops: a_t from run_with_cache, g_t = ∂L/∂e at a zero perturbation e added to token t only."""
    A = torch.zeros(site.d_in, site.d_in, dtype=torch.float64)
    G = torch.zeros(site.d_out, site.d_out, dtype=torch.float64)
    n = 0
    for i, tokens in enumerate(batches):
        _, cache = model.run_with_cache(tokens)
        a_all = cache[site.input_hook].reshape(tokens.shape[0], tokens.shape[1], -1)
        logits = model(tokens).detach()
        if labels == "sampled":
            target = sample_labels(logits, batch_generator(seed, i))
        for b in range(tokens.shape[0]):
            for t in range(tokens.shape[1]):
                e = torch.zeros(site.d_out, dtype=torch.float64, requires_grad=True)

                def add(x, hook, b=b, t=t, e=e):
                    x = x.clone()
                    x.view(x.shape[0], x.shape[1], -1)[b, t] += e
                    return x

                out = model.run_with_hooks(tokens, fwd_hooks=[(site.output_hook, add)])
                logp = torch.log_softmax(out, -1)
                if labels == "sampled":
                    loss = -sum(logp[bb, tt, target[bb, tt]] for bb in range(tokens.shape[0])
                                for tt in range(tokens.shape[1]))
                else:
                    loss = -sum(logp[bb, tt, tokens[bb, tt + 1]] for bb in range(tokens.shape[0])
                                for tt in range(tokens.shape[1] - 1))
                (g,) = torch.autograd.grad(loss, e)
                A += torch.outer(a_all[b, t], a_all[b, t])
                G += torch.outer(g, g)
                n += 1
    return A / n, G / n


@pytest.mark.parametrize("labels", ["sampled", "gold"])
@pytest.mark.parametrize("variant,param", [("delta_swiglu", "blocks.0.mlp.W_gate"),
                                           ("delta_swiglu", "blocks.0.attn.W_K"),
                                           ("gated_delta_gate_nonorm", "blocks.1.attn.W_O"),
                                           ("softmax", "blocks.0.attn.W_V")])
def test_factors_equal_brute_force(variant, param, labels):
    model = tiny(variant)
    batches = [tokens_for(0), tokens_for(1)]
    stats = collect_kfac(model, batches, KFACConfig(sites=(param,), labels=labels, seed=5), progress=False)
    A, G = stats[param].result()
    site = next(s for s in linear_sites(model) if s.param == param)
    A_ref, G_ref = brute_force_factors(model, site, batches, labels, seed=5)
    assert stats[param].n_tokens == 20
    torch.testing.assert_close(A, A_ref, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(G, G_ref, rtol=1e-10, atol=1e-14)
    assert G.abs().max() > 0 and A.abs().max() > 0


def test_sampled_labels_follow_the_model_distribution():
    logits = torch.tensor([[[0.0, 1.0, 2.0]]]).log_softmax(-1).expand(1, 20000, 3)  # p ∝ (1, e, e²)
    labels = sample_labels(logits, torch.Generator().manual_seed(0))
    freq = torch.bincount(labels.flatten(), minlength=3).double() / labels.numel()
    p = torch.tensor([1.0, 2.718281828, 7.389056099]); p /= p.sum()
    assert (freq - p).abs().max() < 0.01  # ±3 standard errors at n = 20 000
    again = sample_labels(logits, torch.Generator().manual_seed(0))
    assert torch.equal(labels, again)


def test_stream_split_and_merge_equal_one_pass():
    model = tiny("delta_swiglu", dtype=torch.float32)
    batches = [tokens_for(i) for i in range(5)]
    whole = collect_kfac(model, batches, progress=False)
    parts = [collect_kfac(model, batches, rank=r, world_size=3, progress=False) for r in range(3)]
    for name, s in whole.items():
        merged = parts[2][name].copy().merge(parts[0][name]).merge(parts[1][name])
        assert merged.n_tokens == s.n_tokens == 50
        for x, y in zip(merged.result(), s.result()):
            torch.testing.assert_close(x, y, rtol=1e-12, atol=1e-15)
    # update = the same sums
    a, g = torch.randn(7, 3, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    f = KFACFactors(3, 2).update(a[:4], g[:4]).update(a[4:], g[4:])
    torch.testing.assert_close(f.result()[0], sum(torch.outer(r, r) for r in a) / 7)
    torch.testing.assert_close(f.result()[1], sum(torch.outer(r, r) for r in g) / 7)
    back = KFACFactors.from_dict(json.loads(json.dumps(f.to_dict())))
    assert torch.equal(back.A_sum, f.A_sum) and torch.equal(back.G_sum, f.G_sum) and back.n_tokens == 7


def test_model_untouched_and_no_hooks_left():
    model = tiny("gated_delta_gate_nonorm", dtype=torch.float32)
    for p in model.parameters():
        p.requires_grad_(False)  # a frozen model works too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = collect_kfac(model, [tokens_for(0)], KFACConfig(labels="sampled"), progress=False)
    assert all(s.G_sum.abs().sum() > 0 for s in stats.values())
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(not p.requires_grad and p.grad is None for p in model.parameters())
    for hp in model.hook_dict.values():
        assert not hp._forward_hooks and not hp._backward_hooks and not hp.fwd_hooks and not hp.bwd_hooks


def test_bad_input_is_refused():
    model = tiny("softmax", dtype=torch.float32)
    with pytest.raises(ValueError, match="choose from"):
        collect_kfac(model, [tokens_for(0)], KFACConfig(sites=("blocks.0.attn.W_beta",)), progress=False)
    with pytest.raises(ValueError, match="labels must be one of"):
        KFACConfig(labels="argmax")
    with pytest.raises(ValueError, match="unknown KFACConfig keys"):
        KFACConfig.from_dict({"site": []})
    with pytest.raises(ValueError, match="rank"):
        collect_kfac(model, [], rank=2, world_size=2)
    with pytest.raises(ValueError, match="unknown site kinds"):
        linear_sites(model, kinds=["up"])
    with pytest.raises(ValueError, match="these factors are for"):
        KFACFactors(3, 2).update(torch.zeros(4, 3), torch.zeros(4, 5))
    with pytest.raises(ValueError, match="no tokens yet"):
        KFACFactors(3, 2).result()
    assert KFACConfig.from_dict(json.loads(json.dumps(KFACConfig(("a",), "gold", 3).to_dict()))) == \
        KFACConfig(("a",), "gold", 3)
