"""Linear attention (the sum rule, optionally decay-gated) in chunkwise-parallel form.

Without decay, with S_c the state before chunk c:  O_c = Q_c S_c + tril(Q_c K_cᵀ) V_c,   S_{c+1} = S_c + K_cᵀ V_c.
The chunk-start states are an exclusive prefix sum over chunks, so nothing here is sequential.

With log decays g (per head, or per key channel: GLA), b_t = Σ_{s≤t} g_s inside the chunk (float64,
kernels/_decay.py), γ_t = exp(b_t), Γ_ti = exp(b_t − b_i) (channel by channel for a per-channel g):

    O_c = diag(γ) Q_c S_c + (Γ ⊙ Q_c K_cᵀ) V_c,      S_{c+1} = γ_C S_c + (diag(γ_C / γ) K_c)ᵀ V_c,

the delta rule's chunk form (kernels/README.md) with the delta term off: U = V, no triangular solve. The
hand-off S_c → S_{c+1} is one scaled add per chunk (pos/C sequential steps). ``normalize`` appends a value
column of ones (the normaliser z) exactly as the reference does. Computes in float32, returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._chunking import from_chunks, states_from_chunks, to_chunks
from .._common import RecurrenceOutput
from .._decay import cumulative_log_decay, decay_from_log, decayed_products


def linear_attention_chunk(
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
    b, t_len, h = q.shape[:3]
    dtype = q.dtype
    if normalize:
        v = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    qc, kc, vc = to_chunks(q, chunk_size), to_chunks(k, chunk_size), to_chunks(v, chunk_size)
    if g is None:
        kv = kc.transpose(-1, -2) @ vc  # [n, batch·head, d_k, d_v]: each chunk's write
        start = torch.cat([torch.zeros_like(kv[:1]), kv[:-1].cumsum(0)])  # exclusive prefix sum over chunks
        if initial_state is not None:
            start = start + initial_state.float().reshape(1, kv.shape[1], *kv.shape[2:])
        final = start[-1] + kv[-1]
        o = qc @ start + (qc @ kc.transpose(-1, -2)).tril() @ vc
    else:
        o, start, final = _decayed(qc, kc, vc, g, chunk_size, initial_state)
    o = from_chunks(o, b, t_len)
    if normalize:
        o = o[..., :-1] / (o[..., -1:] + eps)
    return RecurrenceOutput(
        output=o.to(dtype),
        final_state=final.view(b, h, *final.shape[1:]) if output_final_state else None,
        chunk_states=states_from_chunks(start, b) if output_chunk_states else None,
    )


def _decayed(qc, kc, vc, g, chunk_size, initial_state):
    """Outputs ``[n, batch·head, chunk, d_v]``, chunk-start states ``[n, batch·head, d_k, d_v]`` and the final
    state with log decays ``g`` (padding: g = 0 and k = 0, so padded positions neither decay nor write)."""
    if g.dim() == 4:  # per key channel: cum [n, batch·head, chunk, d_k]
        cum = cumulative_log_decay(to_chunks(g, chunk_size), dim=-2)
        gamma, to_end = decay_from_log(cum), decay_from_log(cum[..., -1:, :] - cum)
        gamma_end = decay_from_log(cum[..., -1, :])[..., None]  # [n, batch·head, d_k, 1]: decays S's rows
    else:  # per head: cum [n, batch·head, chunk]
        cum = cumulative_log_decay(to_chunks(g[..., None], chunk_size)[..., 0])
        gamma, to_end = decay_from_log(cum)[..., None], decay_from_log(cum[..., -1:] - cum)[..., None]
        gamma_end = decay_from_log(cum[..., -1])[..., None, None]  # [n, batch·head, 1, 1]
    kv = (kc * to_end).transpose(-1, -2) @ vc  # each chunk's write, decayed to the chunk's end
    state = kv.new_zeros(kv.shape[1:]) if initial_state is None else initial_state.float().reshape(kv.shape[1:])
    starts = []
    for c in range(kv.shape[0]):
        starts.append(state)
        state = gamma_end[c] * state + kv[c]
    start = torch.stack(starts)
    o = (qc * gamma) @ start + decayed_products(qc, kc, cum) @ vc
    return o, start, state
