"""Exact effective attention: the matrix A with hook_z = A · hook_v, asked of each layer's mixer.

- softmax:            A = pattern
- linear (sum rule):  A = tril(Q Kᵀ) (Q already scaled), divided row-wise by (rowsum + eps) with sum norm
- delta rule:         A = tril(Q Kᵀ) · (I + tril(diag(β) K Kᵀ, −1))⁻¹ · diag(β)
- gated delta rule:   the same with Γ ⊙ Q Kᵀ and Γ ⊙ K Kᵀ, Γ_ti = exp(Σ_{j=i+1..t} g_j)

A_ti = β_i k_iᵀ [Π_{j=i+1..t} α_j (I − β_j k_j k_jᵀ)] q_t: how much of v_i the read-out at t returns,
signed. Conv, output norm, gate and projection sit outside A. Cost O(pos²) memory and O(pos³) time per
head (a triangular inverse); meant for sequences up to a few thousand tokens. A mixer whose output is
not linear in the values raises :class:`~workbench.mixers.NotDefinedForMixer`.
"""

from __future__ import annotations

import torch
from jaxtyping import Float


def effective_attention(model, tokens, layer: int) -> Float[torch.Tensor, "batch head pos pos"]:
    """``[batch, head, pos, pos]`` matrix A (query, key) with ``hook_z = A · hook_v`` exactly.

    For delta-rule layers the weights are signed and need not sum to one; use ``A.abs()`` for
    attention-style scores. See the module docstring for the formulas.
    """
    return model.effective_attention(tokens, layer)
