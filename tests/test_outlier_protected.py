"""The Outlier Protected block (He et al. 2024) against a forward pass written out here from its
definition; pre-norm models are unchanged by its existence."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load

TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(4))


def layer_norm(x, w, b, eps=1e-5):
    x = x - x.mean(-1, keepdim=True)
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w + b


def rms(x, w, eps=1e-5):
    return x / (x.pow(2).mean(-1, keepdim=True) + eps).sqrt() * w


def textbook_op_softmax(model, tokens):
    """x = LN(embed + pos); per block x += β·attn(x) with RMS QK-norm, x += β·mlp(x); LN; unembed."""
    p = {k: v.double() for k, v in model.state_dict().items()}
    beta = model.cfg.branch_scale
    n = tokens.shape[1]
    x = p["embed.W_E"][tokens] + p["pos_embed.W_pos"][:n]
    x = layer_norm(x, p["ln_input.w"], p["ln_input.b"])
    for i in range(model.cfg.n_layers):
        a = f"blocks.{i}.attn."
        q = rms(torch.einsum("bpm,hmd->bphd", x, p[a + "W_Q"]), p[a + "q_norm.w"])
        k = rms(torch.einsum("bpm,hmd->bphd", x, p[a + "W_K"]), p[a + "k_norm.w"])
        v = torch.einsum("bpm,hmd->bphd", x, p[a + "W_V"])
        s = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
        s = s.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
        z = torch.einsum("bhqk,bkhd->bqhd", s.softmax(-1), v)
        x = x + beta * (torch.einsum("bphd,hdm->bpm", z, p[a + "W_O"]) + p[a + "b_O"])
        m = f"blocks.{i}.mlp."
        h = F.gelu(x @ p[m + "W_in"] + p[m + "b_in"])
        x = x + beta * (h @ p[m + "W_out"] + p[m + "b_out"])
    x = layer_norm(x, p["ln_final.w"], p["ln_final.b"])
    return x @ p["unembed.W_U"] + p["unembed.b_U"]


def test_outlier_protected_softmax_equals_the_textbook_forward():
    cfg = ModelConfig(d_vocab=23, d_model=32, n_heads=2, d_head=8, d_mlp=40, mixer="softmax",
                      block="outlier_protected", branch_scale=0.3, init_std=0.2)
    model = HookedFastWeightLM(cfg)
    with torch.no_grad():  # make the gains matter
        for i in range(2):
            model.blocks[i].attn.q_norm.w.mul_(torch.linspace(0.5, 2.0, 8))
            model.blocks[i].attn.k_norm.w.add_(0.3)
    assert rel_err(model(TOKENS), textbook_op_softmax(model, TOKENS)) < 1e-5
    names = [n for n, _ in model.named_parameters()]
    assert not any(".ln1." in n or ".ln2." in n for n in names)
    assert "ln_input.w" in names and "blocks.1.attn.k_norm.w" in names
    _, cache = model.run_with_cache(TOKENS)
    assert torch.allclose(cache["blocks.0.hook_resid_pre"], cache["ln_input.hook_normalized"])
    assert torch.allclose(cache["blocks.1.hook_resid_post"],
                          cache["blocks.1.hook_resid_pre"] + cache["blocks.1.hook_attn_out"]
                          + cache["blocks.1.hook_mlp_out"], atol=1e-6)


def test_outlier_protected_fast_weight_mixers_run_and_pre_norm_is_unchanged():
    for mixer in ("linear", "delta", "gated_delta"):
        cfg = ModelConfig(d_vocab=23, d_model=32, n_heads=2, d_head=8, d_mlp=40, mixer=mixer, block="outlier_protected")
        logits = HookedFastWeightLM(cfg)(TOKENS)
        assert logits.shape == (2, 13, 23) and torch.isfinite(logits).all()
    # the default (pre-norm) model has exactly the parameters it had before the option existed
    shipped = load("workbench/checkpoints/toy-delta")
    assert shipped.cfg.block == "pre_norm"
    fresh = HookedFastWeightLM(ModelConfig.from_dict({k: v for k, v in shipped.cfg.to_dict().items()
                                                      if k not in ("block", "branch_scale")}))
    assert list(fresh.state_dict()) == list(shipped.state_dict())
    assert all(b.branch_scale == 1.0 for b in fresh.blocks)
