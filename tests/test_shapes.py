"""The jaxtyping shape annotations of the public tensor functions are right: checked at run time with
beartype on real calls (which pass) and on calls with a mismatched axis (which the check refuses)."""

from __future__ import annotations

import pytest
import torch
from beartype import beartype
from jaxtyping import TypeCheckError, jaxtyped

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import editing, head_scores, recall_probe
from workbench.kernels import delta_rule, linear_attention
from workbench.mixers import state
from workbench.plots import fast_weights as fw_plots


def checked(fn):
    return jaxtyped(typechecker=beartype)(fn)


def test_kernel_signatures():
    b, t, h, dk, dv = 2, 7, 3, 5, 4
    q, k, v = torch.randn(b, t, h, dk), torch.randn(b, t, h, dk), torch.randn(b, t, h, dv)
    beta, g = torch.rand(b, t, h), -torch.rand(b, t, h)
    checked(delta_rule)(q, k, v, beta, g=g, initial_state=torch.zeros(b, h, dk, dv))
    checked(linear_attention)(q, k, v, normalize=True, initial_state=torch.zeros(b, h, dk, dv + 1))
    with pytest.raises(TypeCheckError):
        checked(delta_rule)(q, k, v, torch.rand(b, t, h + 1))  # beta's head axis disagrees
    with pytest.raises(TypeCheckError):
        checked(linear_attention)(q, k[..., :-1], v)  # k's d_k disagrees with q's


def test_model_and_analysis_signatures():
    model = HookedFastWeightLM(ModelConfig(d_vocab=13, d_model=16, n_heads=2, d_head=8, d_mlp=16, chunk_size=4,
                                           mixer="gated_delta"))
    tokens = torch.randint(0, 13, (2, 9))
    W = checked(HookedFastWeightLM.fast_weights)(model, tokens, 1, [2, 5])
    A = checked(HookedFastWeightLM.effective_attention)(model, tokens, 0)
    inputs = model.recurrence_inputs(tokens, 0)
    checked(state.states_at)(model.blocks[0].attn.recurrence, inputs, [1, 8], 4)
    key, value = torch.randn(2, 2, 8), torch.randn(2, 2, 8)
    checked(editing.rank_one_edit)(W[:, 0], key, value)
    with pytest.raises(TypeCheckError):
        checked(editing.rank_one_edit)(W[:, 0], key[..., :-1], value)
    checked(recall_probe.retrieve)(W[:, 0], key)
    checked(head_scores.previous_token_score)(A)
    checked(head_scores.induction_score)(A, tokens)
    with pytest.raises(TypeCheckError):
        checked(head_scores.induction_score)(A, tokens[:, :-1])
    checked(fw_plots.fast_weight_heatmap)(W[0, 0, 0])
    with pytest.raises(TypeCheckError):
        checked(fw_plots.fast_weight_heatmap)(W[0, 0])
