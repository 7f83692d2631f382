"""Steering (workbench.analysis.steering) against independent computations: the CAA vector is the hand-computed
mean difference; strength 0 changes nothing; residual steering is the hand-written hook; state steering with a
rank-one write in carry mode is a manual expose_states hook; it runs on every mixer (a clear NotDefinedForMixer
where there is no state) and on an imported checkpoint; the sweep's rows are the steered runs."""

from __future__ import annotations

import math

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import (caa_vector, contrastive_state_direction, heldout_text, logit_difference,
                                residual_steering, state_steering, steering_sweep, unembedding_direction)
from workbench.mixers import NotDefinedForMixer, names
from workbench.model import lm_loss

POS = torch.randint(0, 23, (3, 7), generator=torch.Generator().manual_seed(1))
NEG = torch.randint(0, 23, (4, 6), generator=torch.Generator().manual_seed(2))


def make(**kw) -> HookedFastWeightLM:
    torch.manual_seed(0)
    base = dict(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24, n_ctx=64, chunk_size=4,
                init_std=0.3)
    return HookedFastWeightLM(ModelConfig.from_dict({**base, **kw})).double().eval()


def close(a, b, tol: float = 1e-9) -> bool:
    return float((a.detach() - b.detach()).abs().max()) <= tol * max(1.0, float(b.detach().abs().max()))


def test_the_caa_vector_is_the_mean_difference_of_the_residual_stream():
    model = make(mixer="delta")
    _, pos = model.run_with_cache(POS)
    _, neg = model.run_with_cache(NEG)
    by_hand = pos["blocks.1.hook_resid_pre"][:, 4].mean(0) - neg["blocks.1.hook_resid_pre"][:, 4].mean(0)
    assert close(caa_vector(model, POS, NEG, 1, position=4), by_hand, 1e-12)
    by_hand = pos["blocks.0.hook_resid_post"][:, -1].mean(0) - neg["blocks.0.hook_resid_post"][:, -1].mean(0)
    assert close(caa_vector(model, POS, NEG, 0, site="resid_post"), by_hand, 1e-12)


def test_residual_steering_is_the_hand_written_hook_and_strength_zero_changes_nothing():
    model = make(mixer="gated_delta")
    clean = model(POS)
    v = caa_vector(model, POS, NEG, 1)
    with residual_steering(model, 1, v, 0.0):
        assert torch.equal(model(POS), clean)
    with residual_steering(model, 1, v, 2.5, positions=[2, -1]):
        steered = model(POS)

    def by_hand(h, hook):
        h = h.clone()
        h[:, [2, 6]] += 2.5 * v
        return h

    assert close(steered, model.run_with_hooks(POS, fwd_hooks=[("blocks.1.hook_resid_pre", by_hand)]))
    assert not close(steered, clean, 1e-3)
    assert torch.equal(model(POS), clean) and not model.hook_dict["blocks.1.hook_resid_pre"].fwd_hooks  # nothing left
    u = unembedding_direction(model, 5)
    assert close(u.norm(), torch.tensor(1.0, dtype=u.dtype)) and close(u * model.W_U[:, 5].norm(), model.W_U[:, 5])


def test_state_steering_with_a_rank_one_write_in_carry_mode_is_a_manual_expose_states_hook():
    model = make(mixer="delta")
    k, v = torch.randn(4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)
    with state_steering(model, 1, [3], key=k, value=v, strength=0.7, mode="carry", head=1):
        steered = model(POS)

    def manual(states, hook):  # [batch, 1, head, d_k, d_v]
        out = states.clone()
        out[:, 0, 1] += 0.7 * torch.outer(k, v)
        return out

    with model.expose_states([3], mode="carry", layers=[1]):
        expected = model.run_with_hooks(POS, fwd_hooks=[("blocks.1.attn.hook_state", manual)])
    assert close(steered, expected, 1e-6)  # the states are float32 (model.fast_weights' precision)
    assert close(steered[:, :3], model(POS)[:, :3]) and not close(steered[:, 3:], model(POS)[:, 3:], 1e-3)
    # the association edit of editing.py (overwrite) makes the memory return v for k at that position
    with state_steering(model, 1, [3], key=k, value=v, strength=1.0, mode="readout", head=1, overwrite=True):
        _, cache = model.run_with_cache(POS[:1])
    assert model.mixer(1).state_request is None


@pytest.mark.parametrize("mixer", names())
def test_state_steering_runs_on_every_memory_and_says_why_not_elsewhere(mixer):
    model = make(mixer=mixer)
    clean = model(POS)
    attn = model.mixer(1)
    if not attn.has_fast_weights:
        with pytest.raises(NotDefinedForMixer, match="fast-weight"):
            with state_steering(model, 1, [2], direction=torch.zeros(1)):
                pass
        return
    D = contrastive_state_direction(model, POS, NEG, 1, position=5)
    assert D.shape == model.fast_weights(POS, 1, [5])[0, 0].shape
    for mode, positions in (("readout", [2, 5]), ("carry", [2])):
        with state_steering(model, 1, positions, direction=D, strength=0.0, mode=mode):
            assert torch.equal(model(POS), clean)
        with state_steering(model, 1, positions, direction=D, strength=3.0, mode=mode):
            steered = model(POS)
        assert close(steered[:, :2], clean[:, :2]) and not close(steered, clean, 1e-6), mode
    if attn.key_value_state() is not None:
        with pytest.raises(NotDefinedForMixer, match="rank-one write"):
            with state_steering(model, 1, [2], key=torch.ones(attn.d_k), value=torch.ones(attn.d_v), head=0):
                pass
    assert torch.equal(model(POS), clean) and attn.state_request is None


def test_the_sweep_rows_are_the_steered_runs():
    model = make(mixer="delta")
    heldout = torch.randint(0, 23, (2, 9), generator=torch.Generator().manual_seed(5))
    v = caa_vector(model, POS, NEG, 1)
    D = contrastive_state_direction(model, POS, NEG, 1)
    metric = logit_difference(3, 4)
    steerers = {"residual": lambda s: residual_steering(model, 1, v, s),
                "state": lambda s: state_steering(model, 1, [5], direction=D, strength=s, mode="carry")}
    df = steering_sweep(model, POS, steerers, [0.0, 4.0], metric=metric, heldout=heldout)
    assert df.steering.tolist() == ["residual", "residual", "state", "state"]
    clean_ppl = math.exp(float(lm_loss(model(heldout), heldout).detach()))
    zero = df[df.strength == 0]
    assert (zero.effect == 0).all() and zero.perplexity.tolist() == pytest.approx([clean_ppl] * 2, rel=1e-12)
    with residual_steering(model, 1, v, 4.0):
        assert df.metric[1] == pytest.approx(float(metric(model(POS)).detach().mean()), rel=1e-12)
        assert df.perplexity[1] == pytest.approx(math.exp(float(lm_loss(model(heldout), heldout).detach())), rel=1e-12)
    assert (df[df.strength == 4].effect.abs() > 0).all()
    with pytest.raises(ValueError, match="strengths"):
        steering_sweep(model, POS, steerers, [])


def test_held_out_text_and_clear_errors():
    from workbench.text import ByteTokenizer

    model = make(mixer="delta", d_vocab=256)
    with pytest.raises(ValueError, match="tokenizer of free text"):
        heldout_text(model)
    model.tokenizer = ByteTokenizer()
    ids = heldout_text(model, seq_len=16, n_windows=3)
    assert ids.shape == (3, 16) and ids.dtype == torch.long
    with pytest.raises(ValueError, match="shape \\(16,\\)"):
        with residual_steering(model, 0, torch.zeros(3)):
            pass
    with pytest.raises(ValueError, match="site must be one of"):
        caa_vector(model, POS, NEG, 0, site="mlp_out")
    with pytest.raises(ValueError, match="either a direction"):
        with state_steering(model, 0, [1]):
            pass
    with pytest.raises(ValueError, match="carry mode takes exactly one position"):
        with state_steering(model, 0, [1, 2], direction=torch.zeros(2, 4, 4), mode="carry"):
            pass


@pytest.mark.integration  # builds a transformers model, saves it and opens it (seconds)
def test_steering_an_imported_checkpoint(tmp_path):
    from foreign_models import opened_tiny_qwen3_5

    model = opened_tiny_qwen3_5(tmp_path)
    pos, neg = (torch.randint(0, 64, (2, 10), generator=torch.Generator().manual_seed(s)) for s in (1, 2))
    layer = model.fast_weight_layers[0]
    steerers = {"residual": lambda s: residual_steering(model, layer, caa_vector(model, pos, neg, layer), s),
                "state": lambda s: state_steering(model, layer, [-1], strength=s,
                                                  direction=contrastive_state_direction(model, pos, neg, layer))}
    df = steering_sweep(model, pos, steerers, [0.0, 8.0], heldout=neg)
    assert (df[df.strength == 0].effect == 0).all() and (df[df.strength == 8].effect.abs() > 0).all()


def test_the_sweep_plot_draws_metric_and_perplexity_per_steering_side_by_side():
    import pandas as pd

    from workbench.plots import next_token_shift, steering_sweep_plot

    df = pd.DataFrame(dict(steering=["residual"] * 2 + ["state"] * 2, strength=[0.0, 2.0] * 2,
                           metric=[1.0, 3.0, 1.0, 1.5], metric_sem=[0.1] * 4, perplexity=[5.0, 7.0, 5.0, 5.5]))
    fig = steering_sweep_plot(df)
    assert [(t.name, t.xaxis) for t in fig.data] == [("residual", "x"), ("residual", "x2"), ("state", "x"),
                                                      ("state", "x2")]
    assert list(fig.data[1].y) == [5.0, 7.0] and list(fig.data[0].error_y.array) == [0.1, 0.1]
    bars = next_token_shift(pd.DataFrame(dict(token=[4, 9], clean=[0.6, 0.1], state=[0.2, 0.5])))
    assert [t.name for t in bars.data] == ["clean", "state"] and list(bars.data[0].x) == ["4", "9"]
    with pytest.raises(ValueError, match="lacks columns"):
        steering_sweep_plot(df.drop(columns="perplexity"))
