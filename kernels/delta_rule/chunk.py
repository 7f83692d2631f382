"""The (gated) delta rule in chunkwise-parallel form: WY representation via the UT transform.

Inside a chunk of C positions that starts from state S, with b_t = Σ_{s≤t} g_s (cumulative log decay
inside the chunk), γ_t = exp(b_t) and Γ_ti = exp(b_t − b_i) for i ≤ t, the delta errors u_t solve the
unit lower-triangular system (derivation in kernels/README.md)

    (I + tril(diag(β) (Γ ⊙ K Kᵀ), −1)) U = diag(β) (V − diag(γ) K S)

so U = U₀ − W S with [U₀ | W] = L⁻¹ diag(β) [V | diag(γ) K], L = I + tril(diag(β)(Γ⊙KKᵀ), −1).
Then   O = diag(γ) Q S + tril(Γ ⊙ Q Kᵀ) U    and    S' = γ_C S + (diag(γ_C / γ) K)ᵀ U.

A per-head gate or none runs in wy.py: one autograd.Function with a written-out chunkwise backward, computed
in blocks of ``WY_BLOCK`` positions, with the triangular solves and the block-by-block hand-off and read-out in
a small C file when a compiler is present (PyTorch ops otherwise); without autograd and with that C file, the
whole forward is one C pass per block of ``FUSED_BLOCK`` positions and head. Cost O(pos·C·d + pos·d²). Computes in
float32, returns the input dtype.

The per-channel form below runs everything except the S → S' hand-off batched over all chunks at once, as
three matmuls: [Q; diag(β) K] Kᵀ (both C×C products in one), L⁻¹ [·|·] (both right-hand sides in one) and the
output; the hand-off is two small matmuls per chunk, autograd through all of it. Without autograd the same
arithmetic runs in place in preallocated buffers.

A per-key-channel decay (g ``[batch, pos, head, d_k]``, Kimi Delta Attention) is the same algebra with
diagonal matrices in place of scalars: γ_t and Γ_ti become vectors over the key channels, so diag(γ) K is
K ⊙ γ, γ_C S scales S's rows, and the two C×C products become Σ_c q_tc k_ic Γ_tic and Σ_c β_t k_tc k_ic Γ_tic,
formed from the C × C × d_k decay tensor in float32 from float64 differences (no exp(+b) factor that could
overflow), built in bounded blocks (``_decay.decayed_products``).
"""

from __future__ import annotations

from typing import Optional

import torch

from .._chunking import from_chunks, states_from_chunks, to_chunks
from .._common import RecurrenceOutput
from .._decay import cumulative_log_decay, decay_from_log, decayed_products
from .._triangular import unit_lower_inverse
from .wy import WYChunk, fused_available, fused_forward, wy_forward

WY_BLOCK = 32  # the measured best on this machine at d = 64 (kernels/README.md, Speed)
FUSED_BLOCK = 16  # the same for the fused forward without autograd (kernels/README.md, Speed)


def delta_rule_chunk(
    q: torch.Tensor,  # [batch, pos, head, d_k]
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    beta: torch.Tensor,  # [batch, pos, head]
    g: Optional[torch.Tensor] = None,  # [batch, pos, head] or [batch, pos, head, d_k]
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, dk = q.shape
    dv = v.shape[-1]
    grad = torch.is_grad_enabled() and any(
        x.requires_grad for x in (q, k, v, beta, g, initial_state) if x is not None)
    if g is not None and g.dim() == 4:
        return _per_channel(q, k, v, beta, g, initial_state, chunk_size, grad, output_final_state,
                            output_chunk_states, output_delta)
    # a per-head gate or none: the WY form with its chunkwise backward (wy.py), computed in blocks of
    # wy_block(chunk_size) positions; chunk_size stays the stride of the returned chunk states. Where the native
    # library is present the values always come from the fused pass (wy.fused_forward, blocks of fused_block), with
    # and without autograd, so that a forward gives the same bits in both modes; under autograd the staged form runs
    # too, for its intermediates and its gradient (the two agree to float32 rounding, tests/test_kernel_native.py).
    fused = fused_available(q)
    if not grad and fused:
        return _fused_outputs(q, k, v, beta, g, initial_state, chunk_size, output_final_state, output_chunk_states,
                              output_delta)
    C = wy_block(chunk_size)
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)  # [n, batch·head, chunk, d] (views for batch 1)
    bc = to_chunks(beta[..., None], C)  # [n, batch·head, chunk, 1]; padding has β = 0: writes nothing
    n, bh = qc.shape[:2]
    gc = None if g is None else to_chunks(g[..., None], C)[..., 0]  # [n, batch·head, chunk]; padding: g = 0
    s0 = None if initial_state is None else initial_state.float().reshape(bh, dk, dv)
    o, U, start = WYChunk.apply(qc, kc, vc, bc, gc, s0, b) if grad else wy_forward(qc, kc, vc, bc, gc, s0, b)[:3]
    res = RecurrenceOutput(
        output=o[:, :t_len].to(q.dtype),  # [batch, pos, head, d_v]: o comes in that layout, padding at the end
        final_state=start[n].view(b, h, dk, dv) if output_final_state else None,
        chunk_states=states_from_chunks(start[:n:chunk_size // C], b) if output_chunk_states else None,
        delta=from_chunks(U, b, t_len).to(q.dtype) if output_delta else None,
    )
    if not fused:
        return res
    with torch.no_grad():
        values = _fused_outputs(q, k, v, beta, g, initial_state, chunk_size, output_final_state, output_chunk_states,
                                output_delta)
    return RecurrenceOutput(*(None if x is None else _ValuesOf.apply(x, y) for x, y in zip(res, values)))


class _ValuesOf(torch.autograd.Function):
    """``_ValuesOf.apply(staged, fused)``: the fused pass's values with the staged form's gradient."""

    @staticmethod
    def forward(ctx, staged, fused):
        return fused.clone()  # a new tensor: an input returned as-is would be a view that hooks may not edit in place

    @staticmethod
    def backward(ctx, grad):
        return grad, None


def _fused_outputs(q, k, v, beta, g, initial_state, chunk_size, output_final_state, output_chunk_states, output_delta):
    """:func:`delta_rule_chunk`'s outputs from the fused pass (no autograd; wy.fused_forward)."""
    b, t_len, h, dk = q.shape
    dv = v.shape[-1]
    C = fused_block(chunk_size)
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C)
    bc = to_chunks(beta[..., None], C)
    n, bh = qc.shape[:2]
    gc = None if g is None else to_chunks(g[..., None], C)[..., 0]
    s0 = None if initial_state is None else initial_state.float().reshape(bh, dk, dv)
    o, U, start, final = fused_forward(qc, kc, vc, bc, gc, s0, b, output_chunk_states, output_delta)
    return RecurrenceOutput(
        output=o[:, :t_len].to(q.dtype),
        final_state=final.view(b, h, dk, dv) if output_final_state else None,
        chunk_states=states_from_chunks(start[:n:chunk_size // C], b) if output_chunk_states else None,
        delta=from_chunks(U, b, t_len).to(q.dtype) if output_delta else None,
    )


def fused_block(chunk_size: int) -> int:
    """The block length of the fused forward (no autograd): ``FUSED_BLOCK`` when it divides ``chunk_size``, else
    :func:`wy_block`'s. Measured: blocks of 16 give the faster fused forward (the C-sized terms halve, the d²-sized
    ones do not grow), blocks of 32 the faster forward+backward (benchmarks/bench_kernel_roads.py, roads 3 and 5)."""
    return FUSED_BLOCK if chunk_size % FUSED_BLOCK == 0 else wy_block(chunk_size)


def wy_block(chunk_size: int) -> int:
    """The block length the WY form computes in: ``WY_BLOCK`` when it divides a larger ``chunk_size``, else
    ``chunk_size`` itself (the blocks only change the cost, never the result beyond float32 rounding)."""
    return WY_BLOCK if chunk_size > WY_BLOCK and chunk_size % WY_BLOCK == 0 else chunk_size


def _per_channel(q, k, v, beta, g, initial_state, C, grad, output_final_state, output_chunk_states, output_delta):
    """A decay per key channel (Kimi Delta Attention): autograd through the chunk form below."""
    qc, kc, vc = to_chunks(q, C), to_chunks(k, C).contiguous(), to_chunks(v, C)  # [n, batch·head, chunk, d]
    bc = to_chunks(beta[..., None], C)  # [n, batch·head, chunk, 1]; padding has β = 0: writes nothing
    n, bh = qc.shape[:2]
    nb = n * bh
    cum = cumulative_log_decay(to_chunks(g, C), dim=-2)  # [n, batch·head, chunk, d_k] float64; padding g = 0
    scores = torch.stack([decayed_products(qc, kc, cum), decayed_products(kc * bc, kc, cum)], dim=2)
    scores = scores.view(nb, 2, C, C)
    gamma = decay_from_log(cum)  # γ  [n, batch·head, chunk, d_k]
    k_read, q_read = kc * gamma, qc * gamma
    k_write = kc * decay_from_log(cum[..., -1:, :] - cum)
    gamma_end = decay_from_log(cum[..., -1, :])[..., None]  # [n, batch·head, d_k, 1]: decays S's rows
    qk, kk = scores[:, 0], scores[:, 1]
    return _solve_and_read(q, qc, kc, vc, bc, qk, kk, k_read, q_read, k_write, gamma_end, initial_state, grad,
                           output_final_state, output_chunk_states, output_delta)


def _solve_and_read(q, qc, kc, vc, bc, qk, kk, k_read, q_read, k_write, gamma_end, initial_state, grad,
                    output_final_state, output_chunk_states, output_delta) -> RecurrenceOutput:
    """The delta errors, the chunk hand-off and the read-out, given the chunk's (decayed) products."""
    b, t_len, h = q.shape[:3]
    n, bh, C, dk = qc.shape
    dv = vc.shape[-1]
    nb = n * bh

    # [U₀ | W] = L⁻¹ diag(β) [V | diag(γ) K]; the inverse reads only the strict lower triangle of kk
    uw = (unit_lower_inverse(kk) @ (torch.cat([vc, k_read], dim=-1) * bc).view(nb, C, dv + dk))
    uw = uw.view(n, bh, C, dv + dk)
    u0, w = uw[..., :dv], uw[..., dv:]
    k_write_t = k_write.transpose(-1, -2)  # [n, batch·head, d_k, chunk]

    S = qc.new_zeros(bh, dk, dv) if initial_state is None else initial_state.float().reshape(bh, dk, dv)
    if grad:
        starts, us = [], []
        # unbind, not u0[i]: the backward of n selects would add n zero-filled copies of each whole tensor
        ends = [None] * n if gamma_end is None else gamma_end.unbind(0)
        for u0_i, w_i, kw_i, end_i in zip(u0.unbind(0), w.unbind(0), k_write_t.unbind(0), ends):
            starts.append(S)
            u = torch.baddbmm(u0_i, w_i, S, alpha=-1.0)  # delta errors of chunk i
            us.append(u)
            S = torch.baddbmm(S if end_i is None else S * end_i, kw_i, u)
        start = torch.stack(starts)  # [n, batch·head, d_k, d_v]
        U = torch.stack(us)  # [n, batch·head, chunk, d_v]
    else:  # the same arithmetic written into preallocated buffers (no autograd graph to keep)
        start = qc.new_empty(n + 1, bh, dk, dv)
        U = qc.new_empty(n, bh, C, dv)
        start[0] = S
        for i in range(n):
            torch.baddbmm(u0[i], w[i], start[i], alpha=-1.0, out=U[i])
            if gamma_end is None:
                torch.baddbmm(start[i], k_write_t[i], U[i], out=start[i + 1])
            else:
                torch.mul(start[i], gamma_end[i], out=start[i + 1])
                start[i + 1].baddbmm_(k_write_t[i], U[i])
        S = start[n]
        start = start[:n]
    o = torch.baddbmm(q_read.reshape(nb, C, dk) @ start.view(nb, dk, dv), qk, U.view(nb, C, dv))
    o = o.view(n, bh, C, dv)  # diag(γ) Q S + tril(Γ⊙QKᵀ) U
    return RecurrenceOutput(
        output=from_chunks(o, b, t_len).to(q.dtype),
        final_state=S.view(b, h, dk, dv) if output_final_state else None,
        chunk_states=states_from_chunks(start, b) if output_chunk_states else None,
        delta=from_chunks(U, b, t_len).to(q.dtype) if output_delta else None,
    )
