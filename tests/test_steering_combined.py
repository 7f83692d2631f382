"""Residual and state steering together, and the norm-matched state strength, against independent computations:
combined steering with a zero state direction is residual steering and with a zero vector is state steering, and
with both it is the two hand-written hooks in one forward; the matched strength gives a mean ‖Δ attn_out‖ equal to
the target, measured here with hand-written hooks; every memory is asked through its hooks only."""

from __future__ import annotations

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.steering import (caa_vector, combined_steering, contrastive_state_direction,
                                         matched_state_strength, residual_steering, state_steering,
                                         state_steering_change)
from workbench.mixers import NotDefinedForMixer, names

POS = torch.randint(0, 23, (3, 7), generator=torch.Generator().manual_seed(1))
NEG = torch.randint(0, 23, (4, 7), generator=torch.Generator().manual_seed(2))
ALL = list(range(7))


def make(mixer: str) -> HookedFastWeightLM:
    torch.manual_seed(0)
    return HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24,
                                          n_ctx=64, chunk_size=4, init_std=0.3, mixer=mixer)).double().eval()


def close(a, b, tol: float = 1e-6) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def test_combined_steering_is_residual_or_state_steering_when_the_other_is_zero_and_both_hooks_otherwise():
    model = make("delta")
    v, D = caa_vector(model, POS, NEG, 1), contrastive_state_direction(model, POS, NEG, 1)
    with residual_steering(model, 1, v, 2.0):
        residual = model(POS)
    with combined_steering(model, 1, v, torch.zeros_like(D), 2.0, ALL):
        assert close(model(POS), residual)
    with state_steering(model, 1, ALL, direction=D, strength=2.0 * 0.3):
        state = model(POS)
    with combined_steering(model, 1, torch.zeros_like(v), D, 2.0, ALL, state_scale=0.3):
        assert close(model(POS), state)
    with combined_steering(model, 1, v, D, 2.0, [1, 4], state_scale=0.3):
        both = model(POS)

    def add_vector(h, hook):
        h = h.clone()
        h[:, [1, 4]] += 2.0 * v
        return h

    def add_direction(states, hook):  # [batch, n_positions, head, d_k, d_v]
        return states + 0.6 * D.to(states)

    with model.expose_states([1, 4], mode="readout", layers=[1]):
        by_hand = model.run_with_hooks(POS, fwd_hooks=[("blocks.1.hook_resid_pre", add_vector),
                                                       ("blocks.1.attn.hook_state", add_direction)])
    assert close(both, by_hand) and not close(both, residual, 1e-3) and not close(both, state, 1e-3)
    assert not model.hook_dict["blocks.1.hook_resid_pre"].fwd_hooks and model.mixer(1).state_request is None


def hand_change(model, tokens, layer, D, s, positions):
    """Mean ‖Δ attn_out‖ at positions, with the state edited by a hand-written hook."""
    name = f"blocks.{layer}.hook_attn_out"
    _, clean = model.run_with_cache(tokens)

    def edit(states, hook):
        return states + s * D.to(states)

    with model.expose_states(positions, mode="readout", layers=[layer]):
        cache = {}
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.attn.hook_state", edit),
                                                (name, lambda h, hook: cache.setdefault("out", h))])
    return float((cache["out"][:, positions] - clean[name][:, positions]).norm(dim=-1).mean())


@pytest.mark.parametrize("mixer", names())
def test_the_matched_strength_gives_the_target_mean_change_on_every_memory(mixer):
    model = make(mixer)
    if not model.mixer(1).has_fast_weights:
        with pytest.raises(NotDefinedForMixer, match="fast-weight"):
            matched_state_strength(model, POS, 1, torch.zeros(1), 1.0, ALL)
        return
    D = contrastive_state_direction(model, POS, NEG, 1)
    target = hand_change(model, POS, 1, D, 3.0, ALL)  # a change the memory reaches at strength 3
    s = matched_state_strength(model, POS, 1, D, target, ALL, rtol=1e-7)
    assert hand_change(model, POS, 1, D, s, ALL) == pytest.approx(target, rel=1e-5)
    assert s > 0  # (3 itself only where the change grows with the strength; fwm's need not)
    per = state_steering_change(model, POS, 1, D, s, [2, 5])
    assert per.shape == (3, 2) and (per >= 0).all()
    assert float(state_steering_change(model, POS, 1, D, 0.0, ALL).abs().max()) < 1e-9


def test_a_linear_read_out_matches_the_caa_vector_at_the_first_guess_and_a_normalised_one_saturates():
    model = make("linear")  # o_t = W_tᵀ q_t: the change is linear in the strength
    D = contrastive_state_direction(model, POS, NEG, 1)
    target = float(caa_vector(model, POS, NEG, 1).norm())
    s = matched_state_strength(model, POS, 1, D, target, ALL, rtol=1e-7)
    assert s == pytest.approx(target / hand_change(model, POS, 1, D, 1.0, ALL), rel=1e-6)
    assert hand_change(model, POS, 1, D, s, ALL) == pytest.approx(target, rel=1e-6)
    model = make("delta")  # DeltaNet's per-head RMSNorm of the read-out bounds the change
    D = contrastive_state_direction(model, POS, NEG, 1)
    ceiling = hand_change(model, POS, 1, D, 1e6, ALL)
    with pytest.raises(ValueError, match="saturates"):
        matched_state_strength(model, POS, 1, D, 1.5 * ceiling, ALL)


def test_clear_errors():
    model = make("delta")
    D = contrastive_state_direction(model, POS, NEG, 1)
    with pytest.raises(ValueError, match="target_norm"):
        matched_state_strength(model, POS, 1, D, 0.0, ALL)
    with pytest.raises(ValueError, match="does not change"):
        matched_state_strength(model, POS, 1, torch.zeros_like(D), 1.0, ALL)
    with pytest.raises(ValueError, match="layer must be"):
        state_steering_change(model, POS, 5, D, 1.0, ALL)
