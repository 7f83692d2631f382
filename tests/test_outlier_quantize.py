"""Post-training W8A8 quantisation on constructed cases with known answers, and on whole models."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.outliers.quantize import (INPUT_AXES, activation_sites, fake_quantize, int8_scale,
                                                  quantize_activation, quantize_w8a8, quantize_weight,
                                                  w8a8_perplexity)

GEN = torch.Generator().manual_seed(0)
TOKENS = torch.randint(0, 40, (2, 21), generator=GEN)


def test_weight_error_is_at_most_half_a_step_of_its_own_channel():
    W = torch.randn(24, 10, generator=GEN) * torch.logspace(-3, 1, 10)  # [in, out]: channels of very different size
    Q = quantize_weight(W, (0,))
    step = W.abs().amax(0) / 127  # per output channel
    assert ((Q - W).abs() <= step / 2 + 1e-7 * step).all()
    assert ((Q / step).round() - Q / step).abs().max() < 1e-4  # on the int8 grid
    assert (Q / step).abs().max() <= 127 + 1e-4
    # per channel: the smallest channel keeps ~1 % accuracy; one per-tensor scale would round it all to 0
    assert rel_err(Q[:, 0], W[:, 0]) < 0.01
    assert (fake_quantize(W, int8_scale(W.abs().amax()))[:, 0] == 0).all()


def test_an_exactly_representable_weight_is_unchanged():
    n = torch.randint(-127, 128, (3, 16, 5), generator=GEN).float()  # [head, d_model, d_head] like W_Q
    n[:, 0, :] = 127.0  # every output channel (head, d_head) reaches the top level
    s = torch.tensor([0.5, 0.25, 2.0])[:, None, None] * torch.tensor([1.0, 3.0, 0.125, 8.0, 0.5])  # powers-of-2 fine
    W = n * s
    assert torch.equal(quantize_weight(W, INPUT_AXES["W_Q"]), W)
    Wo = (n.permute(2, 0, 1) * 0.25)  # [5, 3, 16] read as W_O [head, d_head, d_model]: input axes (0, 1)
    Wo[0, 0, :] = 127 * 0.25
    assert torch.equal(quantize_weight(Wo, INPUT_AXES["W_O"]), Wo)
    zero = torch.zeros(4, 3)
    assert torch.equal(quantize_weight(zero, (0,)), zero)


def test_an_outlier_channel_blows_up_per_tensor_activation_error():
    x = torch.randn(2, 50, 32, generator=GEN)  # [batch, pos, d_model]
    err_plain = (quantize_activation(x) - x)[..., 1:].abs().mean()
    y = x.clone()
    y[..., 0] *= 300.0  # one outlier channel in every token
    err_outlier = (quantize_activation(y) - y)[..., 1:].abs().mean()  # error on the *other* channels
    assert err_outlier > 50 * err_plain
    # the step is max|y| / 127, so most ordinary entries round to 0
    assert (quantize_activation(y)[..., 1:] == 0).float().mean() > 0.9
    # per token an outlier confined to one token spoils only that token
    z = x.clone()
    z[0, 7, 3] = 1e3
    pt = quantize_activation(z, "per_token")
    others = torch.ones(2, 50, dtype=torch.bool)
    others[0, 7] = False
    assert (pt - z)[others].abs().max() <= x.abs().amax(-1).max() / 127 / 2 + 1e-6
    assert (quantize_activation(z, "per_tensor") - z)[others].abs().max() > 1.0


def test_activation_quantisation_checks_its_arguments():
    with pytest.raises(ValueError, match="granularity"):
        quantize_activation(torch.ones(2, 3, 4), "per_channel")
    with pytest.raises(ValueError, match="per_token"):
        quantize_activation(torch.ones(3, 4), "per_token")
    with pytest.raises(ValueError, match="bits"):
        quantize_activation(torch.ones(2, 3, 4), bits=1)
    assert torch.equal(quantize_activation(torch.zeros(2, 3, 4)), torch.zeros(2, 3, 4))
    x = torch.randn(2, 3, 8, generator=GEN)
    levels = (quantize_activation(x, bits=4) / (x.abs().max() / 7)).round().unique()
    assert levels.abs().max() <= 7 and len(levels) <= 15


@pytest.mark.parametrize("mixer", ["softmax", "linear", "delta", "gated_delta"])
@pytest.mark.parametrize("block", ["pre_norm", "outlier_protected"])
def test_quantize_w8a8_returns_a_new_model_and_rounds_every_matmul_input(mixer, block):
    cfg = ModelConfig.from_dict(dict(d_vocab=40, d_model=32, n_heads=2, d_head=8, d_mlp=48, n_ctx=32, mixer=mixer, block=block,
                      output_gate=mixer == "gated_delta", init_std=0.1))
    model = HookedFastWeightLM(cfg)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    logits = model(TOKENS).detach()
    q = quantize_w8a8(model)
    # the original is untouched: same weights, no hooks, same outputs, not marked
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.equal(model(TOKENS), logits) and getattr(model, "quantization", None) is None
    # every matmul weight is on its per-channel int8 grid, everything else unchanged
    state = q.state_dict()
    for name, p in state.items():
        axes = INPUT_AXES.get(name.rsplit(".", 1)[-1])
        if axes is None:
            assert torch.equal(p, before[name]), name
        else:
            step = before[name].abs().amax(axes, keepdim=True) / 127
            assert ((p / step).round() - p / step).abs().max() < 1e-3, name
            assert not torch.equal(p, before[name]), name
    # the inputs of W_O and W_out are rounded per tensor: integer multiples of max|x| / 127
    _, cache = q.run_with_cache(TOKENS)
    z = cache["blocks.1.attn.hook_o_in" if mixer in ("delta", "gated_delta") else "blocks.1.attn.hook_z"]
    post = cache["blocks.0.mlp.hook_post"]
    for x in (z, post):
        k = x / (x.abs().max() / 127)
        assert (k - k.round()).abs().max() < 1e-3 and len(k.round().unique()) > 20
    out = q(TOKENS)
    assert 0 < rel_err(out, logits) < 0.1
    assert q.quantization["activations"] == "int8 per-tensor (dynamic)"
    with pytest.raises(ValueError, match="already quantised"):
        quantize_w8a8(q)


def test_activation_sites_and_weights_false():
    model = HookedFastWeightLM(ModelConfig(d_vocab=40, d_model=16, n_heads=2, d_head=8, n_ctx=32, mlp="none"))
    assert activation_sites(model) == {"unembed": "input", "blocks.0.attn": "input",
                                       "blocks.0.attn.hook_o_in": "output", "blocks.1.attn": "input",
                                       "blocks.1.attn.hook_o_in": "output"}
    a8 = quantize_w8a8(model, weights=False, activations="per_token")
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in a8.state_dict().items())
    assert 0 < rel_err(a8(TOKENS), model(TOKENS)) < 0.05
    with pytest.raises(ValueError, match="activations must be one of"):
        quantize_w8a8(model, activations="per_channel")
    with pytest.raises(TypeError):
        quantize_w8a8(torch.nn.Linear(2, 2))


def test_w8a8_perplexity_before_and_after():
    from workbench.tasks.text import TextLM
    from workbench.text import evaluate_text

    task = TextLM(tokenizer="bytes", seq_len=64)
    model = HookedFastWeightLM(ModelConfig(d_vocab=256, d_model=16, n_layers=1, n_heads=2, d_head=8, d_mlp=32,
                                           n_ctx=64, mixer="softmax", init_std=0.3))
    r = w8a8_perplexity(model, task, batch_size=64)
    assert r["ppl_float"] == pytest.approx(evaluate_text(model, task, batch_size=64)["val_ppl"], rel=1e-9)
    assert r["ppl_ratio"] == pytest.approx(r["ppl_w8a8"] / r["ppl_float"])
    assert r["ppl_w8a8"] != r["ppl_float"] and abs(r["ppl_ratio"] - 1) < 0.05
    a4 = w8a8_perplexity(model, task, activation_bits=4, batch_size=64)
    assert abs(a4["ppl_ratio"] - 1) > abs(r["ppl_ratio"] - 1)  # coarser activations cost more
