"""Exact effective attention: the matrix A with hook_z = A · hook_v for every mixer.

- softmax:            A = pattern
- linear (sum rule):  A = tril(Q Kᵀ) (Q already scaled), divided row-wise by (rowsum + eps) with sum norm
- delta rule:         A = tril(Q Kᵀ) · (I + tril(diag(β) K Kᵀ, −1))⁻¹ · diag(β)
- gated delta rule:   the same with Γ ⊙ Q Kᵀ and Γ ⊙ K Kᵀ, Γ_ti = exp(Σ_{j=i+1..t} g_j)

A_ti = β_i k_iᵀ [Π_{j=i+1..t} α_j (I − β_j k_j k_jᵀ)] q_t: how much of v_i the read-out at t returns,
signed. Conv, output norm, gate and projection sit outside A. Cost O(pos²) memory and O(pos³) time per
head (a triangular solve); meant for sequences up to a few thousand tokens.
"""

from __future__ import annotations

import torch

from ..components import SoftmaxAttention
from .layer_inputs import RecurrenceInputs, check_layer, recurrence_inputs


def effective_attention_from_inputs(inp: RecurrenceInputs, eps: float = 1e-6) -> torch.Tensor:
    """``[batch, head, pos, pos]`` (query, key) from the recurrence inputs; computed in float64."""
    q, k = inp.q.double().transpose(1, 2), inp.k.double().transpose(1, 2)  # [batch, head, pos, d_key]
    t = q.shape[2]
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    qk = q @ k.transpose(-1, -2)
    if inp.rule == "sum":
        a = qk.masked_fill(~causal, 0.0)
        if inp.normalize:
            a = a / (a.sum(-1, keepdim=True) + eps)
        return a.float()
    kk = k @ k.transpose(-1, -2)
    if inp.g is not None:
        cum = inp.g.double().cumsum(1).transpose(1, 2)  # [batch, head, pos]
        decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()
        qk, kk = qk * decay, kk * decay
    beta = inp.beta.double().transpose(1, 2)  # [batch, head, pos]
    eye = torch.eye(t, dtype=q.dtype, device=q.device)
    lower = (beta[..., :, None] * kk).tril(-1) + eye
    t_mat = torch.linalg.solve_triangular(lower, torch.diag_embed(beta), upper=False, unitriangular=True)
    return (qk.masked_fill(~causal, 0.0) @ t_mat).float()


@torch.no_grad()
def effective_attention(model, tokens, layer: int) -> torch.Tensor:
    """``[batch, head, pos, pos]`` matrix A (query, key) with ``hook_z = A · hook_v`` exactly.

    For delta-rule layers the weights are signed and need not sum to one; use ``A.abs()`` for
    attention-style scores. See the module docstring for the formulas.
    """
    tokens = model.check_tokens(tokens)
    check_layer(model, layer)
    layer = layer % model.cfg.n_layers
    if isinstance(model.blocks[layer].attn, SoftmaxAttention):
        name = f"blocks.{layer}.attn.hook_pattern"
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name, stop_at_layer=layer + 1)
        return cache[name]
    return effective_attention_from_inputs(recurrence_inputs(model, tokens, layer))
