"""The (gated) delta rule in chunkwise-parallel form: WY representation via the UT transform.

Inside a chunk of C positions that starts from state S, with b_t = Σ_{s≤t} g_s (cumulative log decay
inside the chunk), γ_t = exp(b_t) and Γ_ti = exp(b_t − b_i) for i ≤ t, the delta errors u_t solve the
unit lower-triangular system (derivation in kernels/README.md)

    (I + tril(diag(β) (Γ ⊙ K Kᵀ), −1)) U = diag(β) (V − diag(γ) K S)

so U = U₀ − W S with U₀ = T V, W = T diag(γ) K, T = (I + tril(diag(β)(Γ⊙KKᵀ), −1))⁻¹ diag(β).
Then   O = diag(γ) Q S + tril(Γ ⊙ Q Kᵀ) U    and    S' = γ_C S + (diag(γ_C / γ) K)ᵀ U.

Everything except the S → S' hand-off runs batched over all chunks at once; the hand-off is
``n_chunks`` small matmuls. Cost O(pos·C·d + pos·d²). Computes in float32, returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._chunking import from_chunks, to_chunks
from .._common import RecurrenceOutput


def delta_rule_chunk(
    q: torch.Tensor,  # [batch, pos, head, d_k]
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    beta: torch.Tensor,  # [batch, pos, head]
    g: Optional[torch.Tensor] = None,  # [batch, pos, head]
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, dk = q.shape
    dv = v.shape[-1]
    dtype = q.dtype
    C = chunk_size
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)  # [batch, head, n, chunk, d]
    bc = to_chunks(beta[..., None], C)  # [batch, head, n, chunk, 1]; padding has β = 0: writes nothing
    n = qc.shape[2]
    causal = torch.ones(C, C, dtype=torch.bool, device=q.device).tril()

    kk = kc @ kc.transpose(-1, -2)  # [batch, head, n, chunk, chunk]
    qk = qc @ kc.transpose(-1, -2)
    if g is not None:
        cum = to_chunks(g[..., None], C)[..., 0].cumsum(-1)  # [batch, head, n, chunk]; padding: g = 0
        decay = (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()  # Γ
        kk = kk * decay
        qk = qk * decay
        gamma = cum.exp()[..., None]  # [batch, head, n, chunk, 1]
        gamma_end = cum[..., -1].exp()[..., None, None]  # [batch, head, n, 1, 1]
        k_write = kc * (cum[..., -1:] - cum).exp()[..., None]  # diag(γ_C/γ) K
        k_read = kc * gamma
        q_read = qc * gamma
    else:
        k_write = k_read = kc
        q_read = qc
        gamma_end = None
    lower = (bc * kk).tril(-1) + torch.eye(C, dtype=kk.dtype, device=kk.device)
    rhs = torch.cat([bc * vc, bc * k_read], dim=-1)
    sol = torch.linalg.solve_triangular(lower, rhs, upper=False, unitriangular=True)
    u0, w = sol[..., :dv], sol[..., dv:]  # U₀ = T V, W = T diag(γ) K
    qk = qk.masked_fill(~causal, 0.0)

    S = q.new_zeros(b, h, dk, dv, dtype=torch.float32) if initial_state is None else initial_state.float()
    starts, us = [], []
    for i in range(n):
        starts.append(S)
        u = u0[:, :, i] - w[:, :, i] @ S  # delta errors of chunk i: [batch, head, chunk, d_v]
        us.append(u)
        S_next = k_write[:, :, i].transpose(-1, -2) @ u
        S = S_next + (S if gamma_end is None else gamma_end[:, :, i] * S)
    start = torch.stack(starts, dim=2)  # [batch, head, n, d_k, d_v]
    U = torch.stack(us, dim=2)  # [batch, head, n, chunk, d_v]
    o = q_read @ start + qk @ U
    return RecurrenceOutput(
        output=from_chunks(o, t_len).to(dtype),
        final_state=S if output_final_state else None,
        chunk_states=start.movedim(2, 1) if output_chunk_states else None,
        delta=from_chunks(U, t_len).to(dtype) if output_delta else None,
    )
