"""Each mixer's per-head output (hook_z) against an independent computation from its hooked inputs,
and the patching contract: a patch at position t changes exactly the outputs at positions ≥ t."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from helpers import fla_naive, rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.components.feature_maps import FeatureMap, dpfp

torch.manual_seed(0)
TOKENS = torch.randint(0, 29, (2, 37), generator=torch.Generator().manual_seed(1))


def make(**kw) -> HookedFastWeightLM:
    base = dict(d_vocab=29, d_model=32, n_heads=2, d_head=8, d_mlp=48, chunk_size=16, init_std=0.2)
    return HookedFastWeightLM(ModelConfig.from_dict(dict(**{**base, **kw})))


def test_softmax_matches_torch_sdpa():
    model = make(mixer="softmax")
    _, cache = model.run_with_cache(TOKENS)
    for i in range(2):
        q, k, v = (cache[f"blocks.{i}.attn.hook_{n}"].transpose(1, 2) for n in "qkv")
        want = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        assert rel_err(cache[f"blocks.{i}.attn.hook_z"], want) < 1e-5


@pytest.mark.parametrize("fmap, nu, sum_norm", [("identity", 1, False), ("elu1", 1, True), ("dpfp", 3, True),
                                                ("dpfp", 1, False), ("favor", 1, True)])
def test_linear_matches_quadratic_form(fmap, nu, sum_norm):
    model = make(mixer="linear", feature_map=fmap, dpfp_nu=nu, sum_norm=sum_norm)
    _, cache = model.run_with_cache(TOKENS)
    q, k, v = (cache[f"blocks.1.attn.hook_{n}"].double() for n in "qkv")
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k).tril()
    if sum_norm:
        scores = scores / (scores.sum(-1, keepdim=True) + 1e-6)
    else:
        scores = scores * model.blocks[1].attn.d_k ** -0.5
    want = torch.einsum("bhqk,bkhd->bqhd", scores, v)
    assert rel_err(cache["blocks.1.attn.hook_z"], want) < 1e-5


def test_dpfp_matches_its_definition_elementwise():
    x = torch.randn(3, 5)
    for nu in (1, 2, 3):
        got = dpfp(x, nu)
        d2 = 2 * x.shape[-1]
        xp = [[max(float(r[i]), 0.0) if i < d2 // 2 else max(-float(r[i - d2 // 2]), 0.0) for i in range(d2)] for r in x]
        want = torch.tensor([[xp[b][i] * xp[b][(i - j) % d2] for j in range(1, nu + 1) for i in range(d2)]
                             for b in range(3)])
        assert got.shape == (3, d2 * nu)
        assert rel_err(got, want) < 1e-6


def test_favor_features_approximate_the_softmax_kernel():
    fm = FeatureMap("favor", d_head=8, n_heads=1, n_features=20000, seed=3)
    q, k = torch.randn(2, 1, 1, 1, 8).unbind(0)
    q, k = q * 0.5, k * 0.5
    approx = (fm(q) * fm(k)).sum()
    exact = torch.exp((q * k).sum() / math.sqrt(8))
    assert abs(float(approx / exact) - 1) < 0.05


def test_delta_matches_fla_naive_recurrence():
    naive = fla_naive("delta_rule")
    model = make(mixer="delta")
    _, cache = model.run_with_cache(TOKENS)
    for i in range(2):
        q, k, v = (cache[f"blocks.{i}.attn.hook_{n}"].transpose(1, 2) for n in "qkv")
        beta = cache[f"blocks.{i}.attn.hook_beta"].transpose(1, 2)
        o, _ = naive.delta_rule_recurrence(q, k, v, beta)  # scales q by d_k^-½ itself, like the mixer
        assert rel_err(cache[f"blocks.{i}.attn.hook_z"], o.transpose(1, 2)) < 1e-5


def test_gated_delta_matches_transformers_recurrence():
    mod = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    rec = getattr(mod.torch_recurrent_gated_delta_rule, "__wrapped__", mod.torch_recurrent_gated_delta_rule)
    model = make(mixer="gated_delta")
    _, cache = model.run_with_cache(TOKENS)
    for i in range(2):
        a = f"blocks.{i}.attn."
        o, _ = rec(cache[a + "hook_q"], cache[a + "hook_k"], cache[a + "hook_v"],
                   cache[a + "hook_log_decay"], cache[a + "hook_beta"])  # [batch, pos, head, d] in and out
        assert rel_err(cache[a + "hook_z"], o) < 1e-5
        assert (cache[a + "hook_log_decay"] <= 0).all()


def test_gated_decay_formula():
    model = make(mixer="gated_delta")
    _, cache = model.run_with_cache(TOKENS)
    attn = model.blocks[0].attn
    x = cache["blocks.0.ln1.hook_normalized"]
    want = -attn.A_log.exp() * F.softplus(x @ attn.W_a + attn.dt_bias)
    assert rel_err(cache["blocks.0.attn.hook_log_decay"], want) < 1e-6


def test_reference_and_chunk_backends_agree_in_the_model():
    for mixer in ("linear", "delta", "gated_delta"):
        a = make(mixer=mixer)(TOKENS)
        b = make(mixer=mixer, backend="reference")(TOKENS)
        assert rel_err(a, b) < 1e-5, mixer


MIXERS = ["softmax", "linear", "delta", "gated_delta"]


def changed_positions(model, hook_name, fn) -> torch.Tensor:
    clean = model(TOKENS)
    patched = model.run_with_hooks(TOKENS, fwd_hooks=[(hook_name, fn)])
    return (clean - patched).abs().amax(dim=(0, 2)) > 1e-6  # [pos]


SITES = [(m, s) for m in MIXERS for s in ("q", "k", "v", "beta", "log_decay")
         if (s != "beta" or "delta" in m) and (s != "log_decay" or m == "gated_delta")]


@pytest.mark.parametrize("mixer, site", SITES)
def test_patching_a_recurrence_input_changes_every_later_output(mixer, site):
    model = make(mixer=mixer)
    t0 = 20

    def bump(x, hook):
        x = x.clone()
        x[:, t0] = x[:, t0] + (-0.5 if site == "log_decay" else 0.5)  # a log decay must stay ≤ 0
        return x

    changed = changed_positions(model, f"blocks.0.attn.hook_{site}", bump)
    assert not changed[:t0].any(), "a patch leaked into earlier positions"
    assert changed[t0:].all(), f"positions {torch.nonzero(~changed[t0:])[:, 0] + t0} did not change"


@pytest.mark.parametrize("mixer", ["delta", "gated_delta"])
def test_patching_delta_identity_reproduces_the_kernel_readout(mixer):
    model = make(mixer=mixer)
    clean, cache = model.run_with_cache(TOKENS)
    patched = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_delta", lambda u, hook: u.clone())])
    assert rel_err(patched, clean) < 1e-5


@pytest.mark.parametrize("mixer", ["delta", "gated_delta"])
def test_in_place_patch_of_delta_is_honoured(mixer):
    model = make(mixer=mixer)
    t0 = 11

    def zero_write(u, hook):
        u[:, t0] = 0.0  # in place, returns None

    changed = changed_positions(model, "blocks.1.attn.hook_delta", zero_write)
    assert not changed[:t0].any()
    assert changed[t0:].all()


def test_nnsight_traces_and_patches_the_model():
    nnsight = pytest.importorskip("nnsight")
    model = make(mixer="delta")
    _, cache = model.run_with_cache(TOKENS)
    wrapped = nnsight.NNsight(model)
    with wrapped.trace(TOKENS):
        delta = wrapped.blocks[0].attn.hook_delta.output.save()  # nnsight reads in execution order
        z = wrapped.blocks[1].attn.hook_z.output.save()
    assert torch.equal(z, cache["blocks.1.attn.hook_z"])
    assert torch.equal(delta, cache["blocks.0.attn.hook_delta"])
    with wrapped.trace(TOKENS):
        wrapped.blocks[0].attn.hook_v.output[:, 30:] = 0.0
        logits = wrapped.output.save()
    want = model.run_with_hooks(
        TOKENS, fwd_hooks=[("blocks.0.attn.hook_v", lambda v, hook: torch.cat([v[:, :30], 0 * v[:, 30:]], 1))]
    )
    assert torch.allclose(logits, want, atol=1e-6)
    assert all(not hp.fwd_hooks for hp in model.hook_dict.values())


def test_short_conv_equals_torch_depthwise_conv1d():
    from workbench.components.short_conv import ShortConv

    conv = ShortConv(6, 4)
    torch.nn.init.normal_(conv.weight)
    x = torch.randn(2, 9, 6)
    want = F.conv1d(F.pad(x.transpose(1, 2), (3, 0)), conv.weight, groups=6).transpose(1, 2)
    assert rel_err(conv(x), want) < 1e-6
