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


# ---------------------------------------------------------------- QK-norm of every mixer

def op_model(mixer, **kw):
    cfg = ModelConfig.from_dict(dict(d_vocab=23, d_model=32, n_heads=2, d_head=8, d_mlp=40, mixer=mixer, block="outlier_protected",
                      init_std=0.2, **kw))
    return HookedFastWeightLM(cfg)


def test_linear_qk_norm_is_rms_with_gain_before_the_feature_map():
    model = op_model("linear", feature_map="elu1")
    with torch.no_grad():
        model.blocks[0].attn.q_norm.w.copy_(torch.linspace(0.5, 2.0, 8))
        model.blocks[0].attn.k_norm.w.copy_(torch.linspace(2.0, 0.2, 8))
    _, cache = model.run_with_cache(TOKENS)
    a = model.blocks[0].attn
    want_q = F.elu(rms(cache["blocks.0.attn.hook_q_pre"], a.q_norm.w)) + 1
    want_k = F.elu(rms(cache["blocks.0.attn.hook_k_pre"], a.k_norm.w)) + 1
    assert rel_err(cache["blocks.0.attn.hook_q"], want_q) < 1e-6
    assert rel_err(cache["blocks.0.attn.hook_k"], want_k) < 1e-6


def silu_conv(pre, conv_weight):
    """SiLU(causal depthwise conv) written with F.conv1d (independent of ShortConv)."""
    b, p, h, d = pre.shape
    x = pre.reshape(b, p, h * d).transpose(1, 2)
    y = F.conv1d(F.pad(x, (conv_weight.shape[-1] - 1, 0)), conv_weight, groups=h * d)
    return F.silu(y.transpose(1, 2)).reshape(b, p, h, d)


def test_delta_qk_norm_unit_keys_and_gain_on_the_l2_query():
    for mixer in ("delta", "gated_delta"):
        model = op_model(mixer)
        gain = torch.linspace(0.3, 3.0, 8)
        with torch.no_grad():
            model.blocks[1].attn.q_norm.w.copy_(gain)
        _, cache = model.run_with_cache(TOKENS)
        a = model.blocks[1].attn
        q = silu_conv(cache["blocks.1.attn.hook_q_pre"], a.conv_q.weight)
        k = silu_conv(cache["blocks.1.attn.hook_k_pre"], a.conv_k.weight)
        assert rel_err(cache["blocks.1.attn.hook_q"], q / q.norm(dim=-1, keepdim=True) * gain) < 1e-5
        assert rel_err(cache["blocks.1.attn.hook_k"], k / k.norm(dim=-1, keepdim=True)) < 1e-5
        assert not list(a.k_norm.parameters())  # no gain on the keys: ‖k‖ = 1 keeps the delta rule stable


def test_delta_keys_stay_unit_norm_and_the_memory_bounded_for_any_projection_or_gain():
    """The delta rule with β ∈ (0, 2) and ‖k‖ = 1 never amplifies the memory: ‖S_t‖_F ≤ Σ ‖β v‖ ≤ 2 Σ ‖v‖."""
    model = op_model("delta", allow_neg_eigval=True)
    with torch.no_grad():
        for b in model.blocks:
            b.attn.W_K.mul_(1e3)
            b.attn.W_beta.mul_(1e3)  # β saturates at 0 or 2
            b.attn.q_norm.w.mul_(1e3)
    positions = list(range(TOKENS.shape[1]))
    with model.expose_states(positions):
        logits, cache = model.run_with_cache(TOKENS)
    assert torch.isfinite(logits).all()
    for i in range(2):
        k = cache[f"blocks.{i}.attn.hook_k"]
        assert torch.allclose(k.norm(dim=-1), torch.ones(()), atol=1e-5)
        v_sum = cache[f"blocks.{i}.attn.hook_v"].norm(dim=-1).cumsum(1)  # [batch, pos, head]
        state = cache[f"blocks.{i}.attn.hook_state"].flatten(-2).norm(dim=-1)  # [batch, pos, head]
        assert (state <= 2 * v_sum * (1 + 1e-4) + 1e-6).all()


def test_every_qk_gain_is_trained_and_changes_the_output():
    for mixer in ("softmax", "linear", "delta", "gated_delta"):
        model = op_model(mixer)
        model(TOKENS, return_type="loss").backward()
        gains = [p for n, p in model.named_parameters() if ".q_norm." in n or ".k_norm." in n]
        assert len(gains) == (4 if mixer in ("softmax", "linear") else 2), mixer
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gains), mixer
        before = model(TOKENS).detach()
        with torch.no_grad():
            model.blocks[0].attn.q_norm.w.copy_(torch.linspace(0.2, 3.0, 8))
        assert rel_err(model(TOKENS), before) > 1e-3, mixer


def test_op_delta_checkpoint_without_the_query_gain_loads_with_unit_gain(tmp_path):
    from safetensors.torch import load_file, save_file

    from workbench import save

    model = op_model("gated_delta")
    save(model, tmp_path / "ckpt")
    tensors = load_file(str(tmp_path / "ckpt" / "model.safetensors"))
    old = {k: v for k, v in tensors.items() if ".q_norm." not in k}  # as saved before the gain existed
    assert len(old) == len(tensors) - 2
    save_file(old, str(tmp_path / "ckpt" / "model.safetensors"), metadata={"format": "workbench", "version": "1"})
    loaded = load(tmp_path / "ckpt")
    assert torch.equal(loaded(TOKENS), model(TOKENS))  # w_q = 1 is the plain L2 query, the old forward
    _, cache = loaded.run_with_cache(TOKENS)
    q = silu_conv(cache["blocks.0.attn.hook_q_pre"], loaded.blocks[0].attn.conv_q.weight)
    assert rel_err(cache["blocks.0.attn.hook_q"], F.normalize(q, dim=-1)) < 1e-6


def test_op_delta_needs_l2_qk_norm():
    import pytest

    with pytest.raises(ValueError, match="qk_norm must be 'l2'"):
        ModelConfig.from_dict(dict(d_vocab=23, mixer="delta", block="outlier_protected", qk_norm="l1"))
    ModelConfig.from_dict(dict(d_vocab=23, mixer="delta", qk_norm="l1"))  # pre-norm: any qk_norm that works
