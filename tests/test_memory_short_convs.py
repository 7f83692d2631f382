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


def model_of(kind: str, conv_size: int, output_norm: bool = False) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=16, chunk_size=4,
                      init_std=0.3, mixer=mixer_config({"kind": kind, "conv_size": conv_size, "output_norm": output_norm}))
    return HookedFastWeightLM(cfg).eval()


@pytest.mark.parametrize("kind", KINDS)
def test_without_a_conv_the_mixer_is_the_authors_and_old_configs_load(kind):
    old = mixer_config({"kind": kind})  # a config.json written before the option existed
    assert old.conv_size == 0 and old.to_dict()["conv_size"] == 0 and old.output_norm is False
    model = model_of(kind, 0)
    assert not any(".attn.conv_" in n or ".attn.w_norm" in n for n, _ in model.named_parameters())
    assert not any(n.endswith(("_proj", "hook_x_conv", "hook_z_norm")) for n in model.hook_dict)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("bad", [-1, 2.0, True, "4"])
def test_a_bad_conv_size_is_refused_by_name(kind, bad):
    with pytest.raises(ValueError, match="conv_size must be an integer >= 0"):
        model_of(kind, bad)


# (hook before the conv, hook after it) per conv; None: the mixer input
CONVS = {
    "rec_delta": [("hook_q_proj", "hook_q_pre"), ("hook_k_proj", "hook_k_pre"), ("hook_v_proj", "hook_v_pre")],
    "delta_rnn": [("hook_q_proj", "hook_q_pre"), ("hook_k_proj", "hook_k_pre"), ("hook_v_proj", "hook_v")],
    "delta_lstm": [("hook_q_proj", "hook_q_pre"), ("hook_k_proj", "hook_k_pre"), ("hook_v_proj", "hook_v")],
    "srwm": [("hook_x_proj", "hook_x_pre")],
    "fwm": [(None, "hook_x_conv")],
}


def causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """torch's depthwise conv1d over positions, on the trailing axes flattened into channels."""
    flat = x.flatten(2).transpose(1, 2)
    taps = weight.shape[-1]
    return F.conv1d(F.pad(flat, (taps - 1, 0)), weight, groups=flat.shape[1]).transpose(1, 2).view_as(x)


@pytest.mark.parametrize("kind", KINDS)
def test_each_conv_is_the_causal_depthwise_conv_of_what_it_reads(kind):
    model = model_of(kind, 3)
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        mixer, p = model.blocks[layer].attn, f"blocks.{layer}.attn."
        convs = sorted(n for n, _ in mixer.named_parameters() if n.startswith("conv_"))
        assert len(convs) == len(CONVS[kind])
        for before, after in CONVS[kind]:
            x = cache[f"blocks.{layer}.ln1.hook_normalized" if before is None else p + before]
            name = "conv_x" if before is None else f"conv_{before[5:-5]}"
            want = causal_conv(x, getattr(mixer, name).weight)
            assert rel_err(cache[p + after], want) < 1e-6, (name, after)


@pytest.mark.parametrize("kind", KINDS)
def test_an_identity_conv_is_the_model_without_one(kind):
    """The convolution sits in front of the mixer and nowhere else: with the identity filter (last tap 1)
    the model with it computes exactly what the model without it does from the same weights."""
    with_conv, without = model_of(kind, 4), model_of(kind, 0)
    state = with_conv.state_dict()
    for layer in range(2):
        for key in [k for k in state if k.startswith(f"blocks.{layer}.attn.conv_")]:
            state[key].zero_()
            state[key][..., -1] = 1.0
    with_conv.load_state_dict(state)
    without.load_state_dict({k: v for k, v in state.items() if ".attn.conv_" not in k})
    assert rel_err(with_conv(TOKENS), without(TOKENS)) < 1e-6


@pytest.mark.parametrize("kind", KINDS)
def test_the_output_norm_is_a_per_head_rms_norm_of_the_read_out(kind):
    model = model_of(kind, 0, output_norm=True)
    with torch.no_grad():
        for layer in range(2):
            model.blocks[layer].attn.w_norm.copy_(torch.linspace(0.5, 1.5, 8))
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        mixer, p = model.blocks[layer].attn, f"blocks.{layer}.attn."
        z = cache[p + "hook_z"]
        want = z / z.pow(2).mean(-1, keepdim=True).add(model.cfg.norm_eps).sqrt() * mixer.w_norm
        assert rel_err(cache[p + "hook_z_norm"], want) < 1e-6
        heads = mixer.head_outputs(z, cache[f"blocks.{layer}.ln1.hook_normalized"])  # [batch, pos, head, d_model]
        assert rel_err(heads.sum(-2), torch.einsum("bphd,hdm->bpm", want, mixer.W_O)) < 1e-5
        o_site = [s for s in linear_sites(model, layers=[layer]) if s.param.endswith(".W_O")][0]
        assert o_site.input_hook in (p + "hook_z_norm", p + "hook_o_in")
        assert torch.allclose(cache[o_site.input_hook], want, atol=1e-6)
    with pytest.raises(ValueError, match="output_norm must be a bool"):
        mixer_config({"kind": kind, "output_norm": 1}).check(model.cfg)


@pytest.mark.parametrize("kind", KINDS)
def test_states_patches_sites_and_checkpoints_work_through_the_conv(kind, tmp_path):
    model = model_of(kind, 4, output_norm=True)
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
    plain = {s.param: s.input_hook for s in linear_sites(model_of(kind, 0, output_norm=True), layers=[1])}
    for site in linear_sites(model, layers=[1]):  # a convolved projection's output is read before its conv
        assert site.input_hook == plain[site.param], site
        assert site.output_hook.endswith("_proj") == (site.param in ("blocks.1.attn.W_Q", "blocks.1.attn.W_K",
                                                                      "blocks.1.attn.W_V", "blocks.1.attn.W_in")), site
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in linear_sites(model))
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
