"""The delta rule, one position at a time: the reference every other backend is tested against.

    S_t  = exp(g_t) · S_{t-1}                      (g = None: no decay, plain DeltaNet; g_t per key channel:
                                                    row c of S decays by exp(g_tc), Kimi Delta Attention)
    u_t  = β_t (v_t − S_tᵀ k_t)                     the delta error, written to memory
    S_t  = S_t + k_t u_tᵀ
    o_t  = S_tᵀ q_t                                 read after write

Readable, O(pos) sequential steps; computes in float32 and returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._common import RecurrenceOutput


def delta_rule_reference(
    q: torch.Tensor,  # [batch, pos, head, d_k]
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    beta: torch.Tensor,  # [batch, pos, head]
    g: Optional[torch.Tensor] = None,  # [batch, pos, head] or [batch, pos, head, d_k] log decay (≤ 0)
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, dk = q.shape
    dv = v.shape[-1]
    dtype = q.dtype
    q, k, v, beta = q.float(), k.float(), v.float(), beta.float()
    if initial_state is None:
        S = q.new_zeros(b, h, dk, dv)
    else:
        S = initial_state.float()
    outs, deltas, snaps = [], [], []
    for t in range(t_len):
        if t % chunk_size == 0:
            snaps.append(S)
        if g is not None:
            decay = g[:, t].float().exp()  # [batch, head] or [batch, head, d_k]
            S = S * (decay[..., None, None] if g.dim() == 3 else decay[..., None])
        v_old = torch.einsum("bhk,bhkv->bhv", k[:, t], S)  # what memory returns for k_t
        u = beta[:, t, :, None] * (v[:, t] - v_old)  # [batch, head, d_v]
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
        deltas.append(u)
    o = torch.stack(outs, dim=1).to(dtype)
    return RecurrenceOutput(
        output=o,
        final_state=S if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
        delta=torch.stack(deltas, dim=1).to(dtype) if output_delta else None,
    )
