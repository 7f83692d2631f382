"""The optional short convolution on a memory's input (``conv_size``; Mixer.add_input_conv_) for the five
fast-weight memories whose authors' models have none: off by default (the authors' model, earlier configs
load unchanged); when on, ``hook_x_conv`` is the causal depthwise convolution of the mixer input, the rest
of the mixer reads it, and every fast-weight feature (states at any position, both patch modes, K-FAC
sites, checkpoints) works through it."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import fast_weights, patch_fast_weights
from workbench.analysis.kfac import linear_sites
from workbench.mixers import mixer_config

KINDS = ("rec_delta", "delta_rnn", "delta_lstm", "srwm", "fwm")
TOKENS = torch.randint(0, 23, (2, 11), generator=torch.Generator().manual_seed(3))


def model_of(kind: str, conv_size: int) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=16, chunk_size=4,
                      init_std=0.3, mixer=mixer_config({"kind": kind, "conv_size": conv_size}))
    return HookedFastWeightLM(cfg).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_without_a_conv_the_mixer_is_the_authors_and_old_configs_load(kind):
    old = mixer_config({"kind": kind})  # a config.json written before the option existed
    assert old.conv_size == 0 and old.to_dict()["conv_size"] == 0
    model = model_of(kind, 0)
    assert not any("conv_x" in n for n, _ in model.named_parameters())
    assert not any("hook_x_conv" in n for n in model.hook_dict)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [-1, 2.0, True, "4"])
def test_a_bad_conv_size_is_refused_by_name(kind, bad):
    with pytest.raises(ValueError, match="conv_size must be an integer >= 0"):
        model_of(kind, bad)


@pytest.mark.parametrize("kind", KINDS)
def test_hook_x_conv_is_the_causal_depthwise_conv_of_the_mixer_input(kind):
    model = model_of(kind, 3)
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        x = cache[f"blocks.{layer}.ln1.hook_normalized"]  # [batch, pos, d_model], the mixer input
        w = model.blocks[layer].attn.conv_x.weight  # [d_model, 1, 3]
        want = F.conv1d(F.pad(x.transpose(1, 2), (2, 0)), w, groups=x.shape[-1]).transpose(1, 2)
        assert rel_err(cache[f"blocks.{layer}.attn.hook_x_conv"], want) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_an_identity_conv_is_the_model_without_one(kind):
    """The convolution sits in front of the mixer and nowhere else: with the identity filter (last tap 1)
    the model with it computes exactly what the model without it does from the same weights."""
    with_conv, without = model_of(kind, 4), model_of(kind, 0)
    state = with_conv.state_dict()
    for layer in range(2):
        w = state[f"blocks.{layer}.attn.conv_x.weight"]
        w.zero_()
        w[..., -1] = 1.0
    with_conv.load_state_dict(state)
    without.load_state_dict({k: v for k, v in state.items() if "conv_x" not in k})
    assert rel_err(with_conv(TOKENS), without(TOKENS)) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_states_patches_sites_and_checkpoints_work_through_the_conv(kind, tmp_path):
    model = model_of(kind, 4)
    _, cache = model.run_with_cache(TOKENS)
    mixer = model.blocks[1].attn
    final = mixer.recurrence.run(mixer.recurrence_inputs(lambda h: cache.get(f"blocks.1.attn.{h}")),
                                 output_final_state=True).final_state
    W = fast_weights(model, TOKENS, 1, [-1])
    assert rel_err(W[:, 0], final) < 1e-5
    identity = patch_fast_weights(model, TOKENS, 1, 5, lambda S: S, mode="carry")
    assert rel_err(identity, model(TOKENS)) < 1e-5
    changed = patch_fast_weights(model, TOKENS, 1, 5, lambda S: 0.5 * S + 0.1, mode="carry")
    logits = model(TOKENS)
    assert torch.equal(changed[:, :5], logits[:, :5]) and not torch.allclose(changed[:, 6:], logits[:, 6:])
    plain = {s.param: s.input_hook for s in linear_sites(model_of(kind, 0), layers=[1])}
    for site in linear_sites(model, layers=[1]):  # what read the mixer input now reads its convolution
        was_input = plain[site.param] == "blocks.1.ln1.hook_normalized"
        assert (site.input_hook == "blocks.1.attn.hook_x_conv") == was_input, site
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in linear_sites(model))
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
