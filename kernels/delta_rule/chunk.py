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
from .._triangular import unit_lower_inverse

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
    n, bh = qc.shape[:2]
    flat = lambda x: x.reshape(n * bh, *x.shape[2:])  # noqa: E731  [n·batch·head, ...] for bmm

    kt = flat(kc).transpose(-1, -2)  # a strided view: BLAS reads it transposed, no copy
    qk = flat(qc) @ kt  # [n·batch·head, chunk, chunk]
    kk = flat(kc * bc) @ kt  # diag(β) K Kᵀ
    if g is not None:
        cum = to_chunks(g[..., None], C)[..., 0].cumsum(-1)  # [n, batch·head, chunk]; padding: g = 0
        # Γ on and below the diagonal, exactly 0 above it (so Γ ⊙ QKᵀ needs no separate causal mask)
        decay = flat((cum[..., :, None] - cum[..., None, :]).clamp(_LOG_FLOOR, 0.0).exp().tril())
        qk = qk * decay
        kk = kk * decay
        k_read = kc * cum.clamp(min=_LOG_FLOOR).exp()[..., None]  # diag(γ) K
        q_read = qc * cum.clamp(min=_LOG_FLOOR).exp()[..., None]  # diag(γ) Q
        k_write = kc * (cum[..., -1:] - cum).clamp(min=_LOG_FLOOR).exp()[..., None]  # diag(γ_C/γ) K
        gamma_end = cum[..., -1].clamp(min=_LOG_FLOOR).exp()[..., None, None]  # [n, batch·head, 1, 1]
    else:
        qk = qk.tril()
        k_read = k_write = kc
        q_read = qc
        gamma_end = None
    # T = (I + tril(diag(β)(Γ⊙KKᵀ), −1))⁻¹ diag(β): the inverse reads only the strict lower triangle
    T = unit_lower_inverse(kk) * flat(bc).transpose(-1, -2)
    u0 = (T @ flat(vc)).view(n, bh, C, dv)  # U₀ = T V
    w = (T @ flat(k_read)).view(n, bh, C, dk)  # W = T diag(γ) K
    k_write_t = k_write.transpose(-1, -2)  # [n, batch·head, d_k, chunk]

    S = qc.new_zeros(bh, dk, dv) if initial_state is None else initial_state.float().reshape(bh, dk, dv)
    if torch.is_grad_enabled() and any(x.requires_grad for x in (q, k, v, beta, g, initial_state) if x is not None):
        starts, us = [], []
        for i in range(n):
            starts.append(S)
            u = torch.baddbmm(u0[i], w[i], S, alpha=-1.0)  # delta errors of chunk i
            us.append(u)
            S = torch.baddbmm(S if gamma_end is None else S * gamma_end[i], k_write_t[i], u)
        start = torch.stack(starts)  # [n, batch·head, d_k, d_v]
        U = torch.stack(us)  # [n, batch·head, chunk, d_v]
    else:  # the same arithmetic written into preallocated buffers (no autograd graph to keep)
        start = qc.new_empty(n + 1, bh, dk, dv)
        U = qc.new_empty(n, bh, C, dv)
        start[0] = S
        for i in range(n):
            torch.baddbmm(u0[i], w[i], start[i], alpha=-1.0, out=U[i])
            S = start[i] if gamma_end is None else start[i] * gamma_end[i]
            torch.baddbmm(S, k_write_t[i], U[i], out=start[i + 1])
        S = start[n]
        start = start[:n]
    o = torch.baddbmm(flat(q_read) @ flat(start), qk, flat(U)).view(n, bh, C, dv)  # Q S + tril(Γ⊙QKᵀ) U
    return RecurrenceOutput(
        output=from_chunks(o, b, t_len).to(q.dtype),
        final_state=S.view(b, h, dk, dv) if output_final_state else None,
        chunk_states=states_from_chunks(start, b) if output_chunk_states else None,
        delta=from_chunks(U, b, t_len).to(q.dtype) if output_delta else None,
    )

