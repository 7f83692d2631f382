"""Linear attention (the sum rule, optionally decay-gated), one position at a time: the reference for every
other backend.

    S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ,     o_t = S_tᵀ q_t
    normalize=True:  z_t = diag(exp(g_t)) z_{t-1} + k_t,  o_t = S_tᵀ q_t / (z_tᵀ q_t + eps)

g = None: no decay (the plain sum rule); g ``[batch, pos, head]``: one log decay per head (Mamba-2 / SSD);
g ``[batch, pos, head, d_k]``: one per key channel, row c of S decays by exp(g_tc) (GLA).
With ``normalize`` the normaliser z is kept as one extra value column of the state, so states are
``[batch, head, d_k, d_v + 1]`` (last column = z); this is exactly a sum-rule memory of the value 1.
Computes in float32 and returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._common import RecurrenceOutput


def linear_attention_reference(
    q: torch.Tensor,  # [batch, pos, head, d_k]
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    normalize: bool = False,
    eps: float = 1e-6,
    g: Optional[torch.Tensor] = None,  # [batch, pos, head] or [batch, pos, head, d_k] log decay (≤ 0)
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v (+1 if normalize)]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, dk = q.shape
    dtype = q.dtype
    q, k, v = q.float(), k.float(), v.float()
    if normalize:
        v = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    dv = v.shape[-1]
    S = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state.float()
    outs, snaps = [], []
    for t in range(t_len):
        if t % chunk_size == 0:
            snaps.append(S)
        if g is not None:
            decay = g[:, t].float().exp()  # [batch, head] or [batch, head, d_k]
            S = S * (decay[..., None, None] if g.dim() == 3 else decay[..., None])
        S = S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    o = torch.stack(outs, dim=1)
    if normalize:
        o = o[..., :-1] / (o[..., -1:] + eps)
    return RecurrenceOutput(
        output=o.to(dtype),
        final_state=S if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
    )
