"""The (gated) delta rule in chunkwise-parallel form: WY representation via the UT transform.

Inside a chunk of C positions that starts from state S, with b_t = Σ_{s≤t} g_s (cumulative log decay
inside the chunk), γ_t = exp(b_t) and Γ_ti = exp(b_t − b_i) for i ≤ t, the delta errors u_t solve the
unit lower-triangular system (derivation in kernels/README.md)

    (I + tril(diag(β) (Γ ⊙ K Kᵀ), −1)) U = diag(β) (V − diag(γ) K S)

so U = U₀ − W S with U₀ = T V, W = T diag(γ) K, T = (I + tril(diag(β)(Γ⊙KKᵀ), −1))⁻¹ diag(β).
Then   O = diag(γ) Q S + tril(Γ ⊙ Q Kᵀ) U    and    S' = γ_C S + (diag(γ_C / γ) K)ᵀ U.

Everything except the S → S' hand-off runs batched over all chunks at once; the hand-off is two small
matmuls per chunk. Cost O(pos·C·d + pos·d²). Computes in float32, returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._chunking import from_chunks, states_from_chunks, to_chunks
from .._common import RecurrenceOutput

# exp() is slow on -inf and on results that underflow to denormals; decays below e^-80 are exactly
# negligible next to the O(1) terms they are added to, so log decays are clamped to [-80, 0].
_LOG_FLOOR = -80.0


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
    C = chunk_size
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)  # [n, batch·head, chunk, d]
    bc = to_chunks(beta[..., None], C)  # [n, batch·head, chunk, 1]; padding has β = 0: writes nothing
    n = qc.shape[0]

    qk = qc @ kc.transpose(-1, -2)  # [n, batch·head, chunk, chunk]
    kk = kc @ kc.transpose(-1, -2)
    if g is not None:
        cum = to_chunks(g[..., None], C)[..., 0].cumsum(-1)  # [n, batch·head, chunk]; padding: g = 0
        # Γ on and below the diagonal; above it the clamp gives 1, and those entries are never read
        decay = (cum[..., :, None] - cum[..., None, :]).clamp(_LOG_FLOOR, 0.0).exp()
        qk = qk * decay
        kk = kk * decay
        gamma = cum.clamp(min=_LOG_FLOOR).exp()[..., None]  # γ_t
        k_read = kc * gamma
        q_read = qc * gamma
        k_write = kc * (cum[..., -1:] - cum).clamp(min=_LOG_FLOOR).exp()[..., None]  # diag(γ_C/γ) K
        gamma_end = cum[..., -1].clamp(min=_LOG_FLOOR).exp()  # [n, batch·head]
    else:
        k_read = k_write = kc
        q_read = qc
        gamma_end = None
    # the unit-triangular solve reads only the strict lower triangle of its matrix
    sol = torch.linalg.solve_triangular(kk * bc, torch.cat([vc, k_read], -1) * bc, upper=False, unitriangular=True)
    u0 = sol[..., :dv].contiguous()  # U₀ = T V
    w = sol[..., dv:].contiguous()  # W = T diag(γ) K
    k_write_t = k_write.transpose(-1, -2).contiguous()  # [n, batch·head, d_k, chunk]

    S = qc.new_zeros(b * h, dk, dv) if initial_state is None else initial_state.float().reshape(b * h, dk, dv)
    starts, us = [], []
    for i in range(n):
        starts.append(S)
        u = torch.baddbmm(u0[i], w[i], S, alpha=-1.0)  # delta errors of chunk i
        us.append(u)
        S = torch.baddbmm(S if gamma_end is None else S * gamma_end[i, :, None, None], k_write_t[i], u)
    start = torch.stack(starts)  # [n, batch·head, d_k, d_v]
    U = torch.stack(us)  # [n, batch·head, chunk, d_v]
    o = q_read @ start + qk.tril() @ U
    return RecurrenceOutput(
        output=from_chunks(o, b, t_len).to(q.dtype),
        final_state=S.view(b, h, dk, dv) if output_final_state else None,
        chunk_states=states_from_chunks(start, b) if output_chunk_states else None,
        delta=from_chunks(U, b, t_len).to(q.dtype) if output_delta else None,
    )
