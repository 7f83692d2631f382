"""The Gated Linear Attention mixer (``gla``): the sum rule with a decay per key channel. Its read-out against a
float64 loop over its own cached inputs, its states, exact effective attention, a carry patch against a re-run
from the patched state, and the two backends."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import effective_attention, fast_weights

TOKENS = torch.randint(0, 29, (2, 45), generator=torch.Generator().manual_seed(0))


def model(**kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=29, d_model=32, n_layers=2, n_heads=2, d_head=8, d_mlp=32, chunk_size=16, init_std=0.2,
                      mixer={"kind": "gla", "d_head_v": 12, "conv_size": 3, **kw}, norm="rmsnorm", mlp="swiglu",
                      positional="none")
    m = HookedFastWeightLM(cfg).eval()
    with torch.no_grad():  # decays that differ across channels and matter over 45 positions
        for block in m.blocks:
            block.attn.b_a.normal_(0.0, 2.0)
    return m


def test_the_read_out_is_the_per_channel_decayed_sum_rule_of_its_inputs():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    a = "blocks.1.attn."
    q = cache[a + "hook_q"].double() * m.mixer(1).scale
    k, v, g = (cache[a + n].double() for n in ("hook_k", "hook_v", "hook_log_decay"))
    assert g.shape == (2, 45, 2, 8) and (g <= 0).all() and g.std(-1).mean() > 0.01
    S, states = torch.zeros(2, 2, 8, 12, dtype=torch.float64), []
    for t in range(45):
        S = S * g[:, t].exp()[..., None] + k[:, t, :, :, None] * v[:, t, :, None]
        assert rel_err(cache[a + "hook_z"][:, t], torch.einsum("bhk,bhkv->bhv", q[:, t], S)) <= 1e-5, t
        states.append(S)
    ours = fast_weights(m, TOKENS, 1, [0, 20, 44])
    for j, t in enumerate([0, 20, 44]):
        assert rel_err(ours[:, j], states[t]) <= 1e-5


@pytest.mark.parametrize("kw", [{}, {"feature_map": "silu", "output_gate": False, "clamp_min": -0.1}])
def test_effective_attention_is_exact_and_backends_agree(kw):
    m = model(**kw)
    logits, cache = m.run_with_cache(TOKENS)
    for layer in range(2):
        A = effective_attention(m, TOKENS, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", A, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel_err(z, cache[f"blocks.{layer}.attn.hook_z"]) <= 1e-5
    ref = HookedFastWeightLM(m.cfg.replace(backend="reference"), init=False)
    ref.load_state_dict(m.state_dict())
    assert rel_err(ref.eval()(TOKENS), logits) <= 1e-5


def test_a_carry_patch_equals_a_rerun_from_the_patched_state():
    from workbench.analysis import patch_fast_weights

    m = model()
    p = 20
    W = fast_weights(m, TOKENS, 0, [p])
    _, cache = m.run_with_cache(TOKENS)
    patched = patch_fast_weights(m, TOKENS, 0, p, torch.zeros_like(W[:, 0]), mode="carry")
    # re-run layer 0's recurrence from a zero state after p, holding its cached inputs
    inputs = m.mixer(0).recurrence_inputs(lambda n: cache[f"blocks.0.attn.{n}"])
    rest = m.mixer(0).recurrence.run(inputs.at(slice(p + 1, None)), initial_state=torch.zeros(2, 2, 8, 12),
                                     backend="reference")
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: torch.cat(
            [z[:, :p], torch.zeros_like(z[:, p:p + 1]), rest.output], dim=1))]):
        want = m(TOKENS)
    assert rel_err(patched, want) <= 1e-5


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="clamp_min"):
        model(clamp_min=0.5)
    with pytest.raises(ValueError, match="feature_map"):
        model(feature_map="dpfp")
