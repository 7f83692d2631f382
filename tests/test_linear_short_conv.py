"""Linear attention's optional short convolution (``LinearConfig.conv_size``; Mixer.add_short_convs_ on x W_Q,
x W_K, x W_V): off by default and absent from the configs written before it (flat ones included); when on,
each conv is the causal depthwise convolution of its projection, the identity filter gives back the model
without one, generation step by step matches the full forward, and the circuits it breaks say so."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis.kfac import linear_sites
from workbench.mixers import NotDefinedForMixer, mixer_config

TOKENS = torch.randint(0, 23, (2, 11), generator=torch.Generator().manual_seed(3))


def model_of(conv_size: int, **kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=16, chunk_size=4,
                      init_std=0.3, mixer=mixer_config({"kind": "linear", "conv_size": conv_size, **kw}))
    return HookedFastWeightLM(cfg).eval()


def test_off_by_default_and_old_configs_read_and_write_the_same():
    old = {"kind": "linear", "feature_map": "elu1", "dpfp_nu": 1, "favor_features": 32, "sum_norm": True}
    cfg = mixer_config(old)
    assert cfg.conv_size == 0 and cfg.to_dict() == old
    assert mixer_config({**old, "conv_size": 3}).to_dict() == {**old, "conv_size": 3}
    # the flat format wrote "conv_size": 4 for every mixer; linear attention had none then and gets none now
    flat = ModelConfig.from_dict({"d_vocab": 11, "mixer": "linear", "conv_size": 4})
    assert flat.mixer.conv_size == 0
    model = model_of(0)
    assert not any(".attn.conv_" in n for n, _ in model.named_parameters())
    assert not any(n.endswith("_proj") for n in model.hook_dict)
    for bad in (-1, 2.0, True):
        with pytest.raises(ValueError, match="conv_size"):
            model_of(bad)


def causal_conv(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    flat = x.flatten(2).transpose(1, 2)
    taps = weight.shape[-1]
    return F.conv1d(F.pad(flat, (taps - 1, 0)), weight, groups=flat.shape[1]).transpose(1, 2).view_as(x)


@pytest.mark.parametrize("kw", [{}, {"feature_map": "elu1", "sum_norm": True}])
def test_each_conv_is_the_causal_depthwise_conv_of_its_projection(kw):
    model = model_of(3, **kw)
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        mixer, p = model.blocks[layer].attn, f"blocks.{layer}.attn."
        x = cache[f"blocks.{layer}.ln1.hook_normalized"]
        for name, after, W in (("q", "hook_q_pre", mixer.W_Q), ("k", "hook_k_pre", mixer.W_K), ("v", "hook_v", mixer.W_V)):
            proj = torch.einsum("bpm,hmd->bphd", x, W)
            assert rel_err(cache[p + f"hook_{name}_proj"], proj) < 1e-6
            assert rel_err(cache[p + after], causal_conv(proj, getattr(mixer, f"conv_{name}").weight)) < 1e-6


def test_the_identity_filter_is_the_model_without_a_conv():
    with_conv, without = model_of(4), model_of(0)
    state = with_conv.state_dict()
    for name, t in state.items():
        if ".conv_" in name:
            t.zero_()
            t[..., -1] = 1.0  # the last tap reads the current position
            if name.endswith("bias"):
                t.zero_()
    without.load_state_dict({k: v for k, v in state.items() if ".conv_" not in k})
    assert torch.allclose(with_conv(TOKENS), without(TOKENS), atol=1e-6)


def test_generation_step_by_step_matches_the_full_forward_and_checkpoints_round_trip(tmp_path):
    model = model_of(3)
    with torch.no_grad():
        full = model(TOKENS)
        cache = model.init_cache()  # the prefix, then one position at a time, then the rest
        parts = [model(TOKENS[:, :4], past_kv_cache=cache), model(TOKENS[:, 4:5], past_kv_cache=cache),
                 model(TOKENS[:, 5:], past_kv_cache=cache)]
    assert (torch.cat(parts, 1) - full).abs().max() <= 1e-5
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), full)


def test_sites_read_the_projection_before_its_conv_and_the_circuits_refuse():
    model = model_of(3)
    sites = {(s.layer, s.kind): s for s in linear_sites(model)}
    assert sites[(0, "q")].output_hook == "blocks.0.attn.hook_q_proj"
    assert sites[(1, "v")].output_hook == "blocks.1.attn.hook_v_proj"
    mixer = model.blocks[0].attn
    with pytest.raises(NotDefinedForMixer, match="short convolution"):
        mixer.qk_weights()
    with pytest.raises(NotDefinedForMixer, match="short convolution"):
        mixer.ov_weights()
    assert "short conv (3 taps)" in type(mixer).label(mixer.cfg)
