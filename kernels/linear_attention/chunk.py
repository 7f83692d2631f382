"""Linear attention (sum rule) in chunkwise-parallel form.

With S_c the state before chunk c:  O_c = Q_c S_c + tril(Q_c K_cᵀ) V_c,   S_{c+1} = S_c + K_cᵀ V_c.
The chunk-start states are an exclusive prefix sum over chunks, so nothing here is sequential.
``normalize`` appends a value column of ones (the normaliser z) exactly as the reference does.
Computes in float32, returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._chunking import from_chunks, states_from_chunks, to_chunks
from .._common import RecurrenceOutput


def linear_attention_chunk(
    q: torch.Tensor,  # [batch, pos, head, d_k]
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    normalize: bool = False,
    eps: float = 1e-6,
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v (+1 if normalize)]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
) -> RecurrenceOutput:
    b, t_len = q.shape[:2]
    dtype = q.dtype
    if normalize:
        v = torch.cat([v, v.new_ones(v.shape[:-1] + (1,))], dim=-1)
    qc, kc, vc = to_chunks(q, chunk_size), to_chunks(k, chunk_size), to_chunks(v, chunk_size)
    kv = kc.transpose(-1, -2) @ vc  # [n, batch·head, d_k, d_v]: each chunk's write
    start = torch.cat([torch.zeros_like(kv[:1]), kv[:-1].cumsum(0)])  # exclusive prefix sum over chunks
    if initial_state is not None:
        start = start + initial_state.float().reshape(1, kv.shape[1], *kv.shape[2:])
    qk = (qc @ kc.transpose(-1, -2)).tril()
    o = from_chunks(qc @ start + qk @ vc, b, t_len)
    if normalize:
        o = o[..., :-1] / (o[..., -1:] + eps)
    h = q.shape[2]
    final = (start[-1] + kv[-1]).view(b, h, *kv.shape[2:]) if output_final_state else None
    return RecurrenceOutput(
        output=o.to(dtype),
        final_state=final,
        chunk_states=states_from_chunks(start, b) if output_chunk_states else None,
    )
