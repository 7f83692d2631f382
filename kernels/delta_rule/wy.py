"""The chunkwise delta rule with a per-head (or no) decay as one autograd.Function: the WY forward of
chunk.py with a hand-derived chunkwise backward instead of autograd through every forward op.

Per chunk (rows = the chunk's C positions; b = the cumulative log decay inside the chunk, γ = exp(b),
γ_C = γ of the last row, ρ = exp(b_C − b), Γ_ti = exp(b_t − b_i) for i ≤ t, else 0):

    G = KKᵀ ⊙ Γ,   P = tril(QKᵀ ⊙ Γ),   L = I + tril(diag(β) G, −1),   [U₀ | W] = L⁻¹ diag(β) [V | diag(γ) K]
    U = U₀ − W S,   O = diag(γ) Q S + P U,   S' = γ_C S + (diag(ρ) K)ᵀ U           (S → S': one step per chunk)

The backward runs the hand-off in reverse (one step per chunk, two small matmuls, like the forward):
with D₀ = Pᵀ dO + dU_out and E = (diag(γ)Q)ᵀ dO + dS_out (both batched over all chunks),

    dU = D₀ + diag(ρ)K dS',      dS = γ_C dS' + E − Wᵀ dU,

and everything else is batched over all chunks: dW = −dU Sᵀ, d(diag(γ)Q) = dO Sᵀ, d(diag(ρ)K) = U dS'ᵀ,
dP = tril(dO Uᵀ); through the inverse, dX = L⁻ᵀ [dU | dW] and dM = −tril(dX [U₀ | W]ᵀ, −1) (from
d(L⁻¹) = −L⁻ᵀ d(L⁻¹)·… collapsed with [U₀ | W] = L⁻¹X); then the products' gradients, and the log decay's
as a reverse cumulative sum of the gradient of b (each exp(b_t − b_i) gives +Γ-weighted terms to b_t and −
to b_i). This is the chunkwise gradient of the WY form as flash-linear-attention derives it
(fla/ops/gated_delta_rule/chunk.py: chunk_gated_delta_rule_bwd — dv through the reverse state recurrence
chunk_gated_delta_rule_bwd_dhu, dw/dk/dq from the saved chunk states, the WY backward
fla/ops/gated_delta_rule/wy_fast.py prepare_wy_repr_bwd, dg as a reverse cumsum); written here in our
orientation (o = Sᵀq, states [d_k, d_v]) with dense C × C blocks and our own derivation, not copied.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Optional

import torch

from .. import _native
from .._chunking import from_chunks
from .._decay import cumulative_log_decay, decay_from_log, decay_matrix
from .._triangular import unit_lower_inverse

_C_SOURCE = Path(__file__).with_name("wy_native.c")
_I, _L, _P = ctypes.c_int, ctypes.c_long, ctypes.c_void_p
FUSED = True  # the no-grad forward in one C pass per block (fused_forward); False: wy_forward's staged path


def native_library(x: torch.Tensor):
    """The compiled wy_native.c for CPU tensors (kernels/_native.py), or None: then the PyTorch path runs."""
    if x.device.type != "cpu":
        return None
    lib = _native.load(_C_SOURCE)
    if lib is not None and not getattr(lib, "_typed", False):
        lib.wy_loop_fwd.argtypes = [_I] * 5 + [_P, _L, _P, _P, _P, _P, _P, _P, _P, _I]
        lib.wy_loop_bwd.argtypes = [_I] * 5 + [_P, _P, _L, _P, _L, _P, _P, _P, _L, _P]
        lib.unit_lower_solve.argtypes = [_I, _I, _I, _P, _P, _L, _I]
        lib.wy_fused_fwd.argtypes = [_I] * 6 + [_P, _L, _L, _L] * 4 + [_P] * 4 + [_I, _I]
        lib.wy_fused_fwd.restype = _I
        lib._typed = True
    return lib


def _solve(lib, lm: torch.Tensor, x: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """(I + tril(lm, −1))⁻¹ x (or ⁻ᵀ): ``lm [nb, C, C]``, ``x [nb, C, m]`` contiguous; native: in place in x."""
    if lib is None:
        inv = unit_lower_inverse(lm)
        return torch.bmm(inv.transpose(-1, -2) if transpose else inv, x)
    nb, C, m = x.shape
    lib.unit_lower_solve(nb, C, m, _native.ptr(lm), _native.ptr(x), m * C, int(transpose))
    return x


def _solve_into(lib, lm: torch.Tensor, x: torch.Tensor, C: int) -> None:
    """x ← (I + tril(lm, −1))⁻¹ x in place, for ``x [n, bh, C, m]`` whose matrices may lie apart (rows contiguous)."""
    n, bh, _, m = x.shape
    if lib is None:
        x.copy_(torch.bmm(unit_lower_inverse(lm), x.reshape(n * bh, C, m)).view(n, bh, C, m))
        return
    lib.unit_lower_solve(n * bh, C, m, _native.ptr(lm), _native.ptr(x), x.stride(1), 0)


def wy_forward(qc, kc, vc, bc, gc, s0, batch: int, keep: bool = False):
    """The chunkwise forward, without autograd, on chunked tensors: ``qc, kc [n, bh, C, d_k]``, ``vc [n, bh, C,
    d_v]``, ``bc [n, bh, C, 1]``, ``gc [n, bh, C]`` float32 log decays or None, ``s0 [bh, d_k, d_v]`` or None;
    bh = batch·head. Returns ``(o [batch, n·C, head, d_v], u [n, bh, C, d_v], starts [n + 1, bh, d_k, d_v],
    saved)``: o in the caller's layout (padding included), starts[c] the state before chunk c, starts[n] the
    final state; ``saved`` holds what the backward needs (with ``keep``)."""
    n, bh, C, dk = qc.shape
    dv = vc.shape[-1]
    nb = n * bh
    lib = native_library(qc)
    # one buffer [K; Q; W] per chunk: [K; Q] Kᵀ gives both C×C products in one matmul, and the hand-off reads
    # [Q; W] S in one product (W, solved for below, is written into its rows); no cat, no per-operand copies
    kqw = qc.new_empty(n, bh, 3 * C, dk)
    kqw[:, :, :C] = kc
    kqw[:, :, C:2 * C] = qc
    kf, qf, w = kqw[:, :, :C], kqw[:, :, C:2 * C], kqw[:, :, 2 * C:]
    scores = torch.bmm(kqw[:, :, :2 * C].reshape(nb, 2 * C, dk), kf.reshape(nb, C, dk).transpose(-1, -2))
    scores = scores.view(nb, 2, C, C)  # [KKᵀ; QKᵀ]
    kp = qc.new_empty(n, bh, dk + C, C)  # the rows [(diag(ρ)K)ᵀ; P] that multiply U in the hand-off
    u0 = torch.mul(vc, bc, out=qc.new_empty(n, bh, C, dv))  # diag(β) V, solved in place into U₀ below (contiguous)
    if gc is not None:
        cum = cumulative_log_decay(gc)  # [n, bh, C] float64 (kernels/_decay.py)
        decay = decay_matrix(cum, inplace=True).view(nb, 1, C, C)  # Γ, 0 above the diagonal
        scores.mul_(decay)
        gamma = decay_from_log(cum)[..., None]  # γ  [n, bh, C, 1]
        rho = decay_from_log(cum[..., -1:] - cum)[..., None]  # γ_C / γ
        gamma_end = gamma[..., -1:, :]  # [n, bh, 1, 1]
        torch.mul(kf.transpose(-1, -2), rho.transpose(-1, -2), out=kp[:, :, :dk])  # (diag(ρ) K)ᵀ
        torch.mul(kf, bc * gamma, out=w)  # diag(β γ) K, solved in place into W below
    else:
        decay = gamma = rho = gamma_end = None
        scores[:, 1].tril_()
        kp[:, :, :dk] = kf.transpose(-1, -2)
        torch.mul(kf, bc, out=w)
    kp[:, :, dk:] = scores[:, 1].view(n, bh, C, C)  # P
    k_write = kp[:, :, :dk].transpose(-1, -2)  # diag(ρ) K, a view  [n, bh, C, d_k]
    gk, p = scores[:, 0], scores[:, 1]  # G = Γ⊙KKᵀ, P = tril(Γ⊙QKᵀ)  [n·bh, C, C]
    lm = (gk * bc.reshape(nb, C, 1)).contiguous()  # diag(β) G: L = I + its strict lower triangle (a no-op copy)
    _solve_into(lib, lm, u0, C)  # U₀ = L⁻¹ diag(β) V
    _solve_into(lib, lm, w, C)  # W = L⁻¹ diag(βγ) K

    starts = qc.new_empty(n + 1, bh, dk, dv)
    u = qc.new_empty(n, bh, C, dv)
    if s0 is None:
        starts[0].zero_()
    else:
        starts[0].copy_(s0)
    if lib is not None:  # the hand-off and the read-out in C (wy_native.c), two products per chunk and head
        o = qc.new_empty(batch, n * C, bh // batch, dv)
        gend = None if gamma_end is None else gamma_end.reshape(n, bh).contiguous()
        gam = None if gamma is None else gamma.reshape(n, bh, C).contiguous()
        P = _native.ptr
        lib.wy_loop_fwd(n, bh, C, dk, dv, P(qf), 3 * C * dk, P(u0), P(kp), None if gend is None else P(gend),
                        None if gam is None else P(gam), P(u), P(starts), P(o), bh // batch)
    else:
        k_write_t = k_write.transpose(-1, -2)
        S, U = starts.unbind(0), u.unbind(0)
        ends = gamma_end.unbind(0) if gamma_end is not None else [None] * n
        for i, (u0_i, w_i, kw_i, end_i) in enumerate(zip(u0.unbind(0), w.unbind(0), k_write_t.unbind(0), ends)):
            torch.baddbmm(u0_i, w_i, S[i], alpha=-1.0, out=U[i])  # delta errors of chunk i
            if end_i is None:
                torch.baddbmm(S[i], kw_i, U[i], out=S[i + 1])
            else:
                torch.mul(S[i], end_i, out=S[i + 1])
                S[i + 1].baddbmm_(kw_i, U[i])
        o = torch.bmm(qf.reshape(nb, C, dk), starts[:n].view(nb, dk, dv))  # Q S
        if gamma is not None:
            o.view(n, bh, C, dv).mul_(gamma)  # diag(γ) Q S
        o = from_chunks(o.baddbmm_(p, u.view(nb, C, dv)).view(n, bh, C, dv), batch, n * C)  # + P U
    saved = None
    if keep:
        saved = (kqw, vc, bc, decay, gamma, rho, gamma_end, kp, p, gk, lm, u0, starts, u)
    return o, u, starts, saved


def fused_available(x: torch.Tensor) -> bool:
    """Whether :func:`fused_forward` runs for tensors like ``x`` (a native library for its device, ``FUSED`` on)."""
    return FUSED and native_library(x) is not None


def fused_forward(qc, kc, vc, bc, gc, s0, batch: int, states: bool = True, delta: bool = True):
    """The forward without autograd in one C pass per block and head (``wy_fused_fwd`` in wy_native.c), where
    :func:`fused_available` (else call :func:`wy_forward`). Inputs as there; the
    inputs are read in place from their chunked views, nothing [C, C]-sized is formed for all blocks at once.
    Returns ``(o, u, starts, final)``: ``u`` only with ``delta`` and ``starts [n + 1, bh, d_k, d_v]`` only with
    ``states`` (else None: the arrays are not written), ``final [bh, d_k, d_v]`` the state after the last block."""
    lib = native_library(qc)
    n, bh, C, dk = qc.shape
    dv = vc.shape[-1]
    held = [x if x.stride(-1) == 1 or x.shape[-1] == 1 else x.contiguous() for x in (qc, kc, vc, bc)]
    args = [a for x in held for a in (_native.ptr(x), x.stride(0), x.stride(1), x.stride(2))]  # held: alive till the call
    cum = None if gc is None else cumulative_log_decay(gc).contiguous()  # [n, bh, C] float64
    starts = qc.new_empty(n + 1 if states else 2, bh, dk, dv)
    if s0 is None:
        starts[0].zero_()
    else:
        starts[0].copy_(s0)
    u = qc.new_empty(n if delta else 2, bh, C, dv)
    o = qc.new_empty(batch, n * C, bh // batch, dv)
    status = lib.wy_fused_fwd(n, bh, C, dk, dv, bh // batch, *args, None if cum is None else _native.ptr(cum),
                              _native.ptr(u), _native.ptr(starts), _native.ptr(o), int(states), int(delta))
    if status != 0:
        raise MemoryError("wy_fused_fwd could not allocate its workspace")
    return o, u if delta else None, starts if states else None, starts[n if states else n % 2]


def wy_backward(saved, do, du, dstarts):
    """Gradients of :func:`wy_forward` in (qc, kc, vc, bc, gc, s0) given those of its outputs: ``do``, ``du``
    ``[n, bh, C, d_v]`` and ``dstarts [n + 1, bh, d_k, d_v]`` (each may be None)."""
    kqw, vc, bc, decay, gamma, rho, gamma_end, kp, p, gk, lm, u0, starts, u = saved
    lib = native_library(kqw)
    n, bh, C3, dk = kqw.shape
    C = C3 // 3
    dv = u.shape[-1]
    nb = n * bh
    gated = decay is not None
    kf, qf, w = kqw[:, :, :C], kqw[:, :, C:2 * C], kqw[:, :, 2 * C:]
    k_write = kp[:, :, :dk].transpose(-1, -2)  # diag(ρ) K  [n, bh, C, d_k]
    s_in = starts[:n].reshape(nb, dk, dv)

    # [dO; dU] side by side in one buffer, so that one product with Sᵀ gives d(diag(γ)Q) and −dW
    od = kqw.new_empty(n, bh, 2 * C, dv)
    if do is None:
        od[:, :, :C].zero_()
    else:  # dO arrives in the output's layout [batch, n·C, head, d_v]
        b = do.shape[0]
        od[:, :, :C].view(n, b, bh // b, C, dv).copy_(do.reshape(b, n, C, bh // b, dv).permute(1, 0, 3, 2, 4))
    do = od[:, :, :C]
    # D₀ = Pᵀ dO (+ dU_out), E = (diag(γ)Q)ᵀ dO (+ dS_out) = Qᵀ diag(γ) dO, batched
    d0 = torch.bmm(p.transpose(-1, -2), do.reshape(nb, C, dv)).view(n, bh, C, dv)
    if du is not None:
        d0 += du.reshape(n, bh, C, dv)
    do_g = do * gamma if gated else do
    e = torch.bmm(qf.reshape(nb, C, dk).transpose(-1, -2), do_g.reshape(nb, C, dv)).view(n, bh, dk, dv)
    if dstarts is not None:
        e += dstarts[:n]
    # the reverse hand-off: ds[c] = gradient of the state before chunk c; ds[n] that of the final state
    ds = kqw.new_empty(n + 1, bh, dk, dv)
    if dstarts is None:
        ds[n].zero_()
    else:
        ds[n].copy_(dstarts[n])
    if lib is not None:
        gend = None if gamma_end is None else gamma_end.reshape(n, bh).contiguous()
        lib.wy_loop_bwd(n, bh, C, dk, dv, _native.ptr(d0), _native.ptr(kp), kp.stride(1), _native.ptr(w),
                        w.stride(1), _native.ptr(e), None if gend is None else _native.ptr(gend),
                        _native.ptr(od[:, :, C:]), 2 * C * dv, _native.ptr(ds))
    else:
        DS, DU = ds.unbind(0), od[:, :, C:].unbind(0)
        ends = gamma_end.unbind(0) if gated else [None] * n
        kw, wt = k_write.unbind(0), w.transpose(-1, -2).unbind(0)
        for i in range(n - 1, -1, -1):
            torch.baddbmm(d0[i], kw[i], DS[i + 1], out=DU[i])  # dU = D₀ + diag(ρ)K dS'
            if ends[i] is None:
                torch.baddbmm(DS[i + 1] + e[i], wt[i], DU[i], alpha=-1.0, out=DS[i])
            else:
                torch.baddbmm(e[i], wt[i], DU[i], alpha=-1.0, out=DS[i])
                DS[i].add_(DS[i + 1] * ends[i])
    dU = od[:, :, C:]

    # batched over all chunks: [d(γQ); −dW] = [dO; dU] Sᵀ, d(ρK) = U dS'ᵀ, dP = tril(dO Uᵀ)
    qw = torch.bmm(od.view(nb, 2 * C, dv), s_in.transpose(-1, -2)).view(n, bh, 2 * C, dk)
    dq_read, dw = qw[:, :, :C], qw[:, :, C:].neg_()
    dk_write = torch.bmm(u.view(nb, C, dv), ds[1:].reshape(nb, dk, dv).transpose(-1, -2)).view(n, bh, C, dk)
    dp = torch.bmm(do.reshape(nb, C, dv), u.view(nb, C, dv).transpose(-1, -2)).tril_()
    # through [U₀ | W] = L⁻¹ X:  dX = L⁻ᵀ [dU | dW],  dM = −tril(dX [U₀ | W]ᵀ, −1)
    duw = torch.cat([dU, dw], dim=-1).view(nb, C, dv + dk)
    dx = _solve(lib, lm, duw, transpose=True)
    dm = torch.bmm(dx[..., :dv], u0.reshape(nb, C, dv).transpose(-1, -2))
    dm = dm.baddbmm_(dx[..., dv:], w.reshape(nb, C, dk).transpose(-1, -2)).neg_().tril_(-1)
    # X = diag(β) [V | diag(γ) K]:  dV = β dX_V,  dK = βγ dX_K,  dβ = ⟨dX_V, V⟩ + γ⟨dX_K, K⟩ (+ from M below)
    dx = dx.view(n, bh, C, dv + dk)
    sk = (dx[..., dv:] * kf).sum(-1, keepdim=True)  # ⟨dX_K, K⟩  [n, bh, C, 1]
    dbeta = (dx[..., :dv] * vc).sum(-1, keepdim=True) + (sk * gamma if gated else sk)
    dv_ = dx[..., :dv] * bc
    dk_ = dx[..., dv:] * (bc * gamma if gated else bc)
    # M = tril(diag(β) G, −1), P = tril(QKᵀ ⊙ Γ): dG = diag(β) dM
    dm = dm.view(n, bh, C, C)
    dbeta += (dm * gk.view(n, bh, C, C)).sum(-1, keepdim=True)
    dg_ = (dm * bc).view(nb, C, C)
    if gated:
        hp, hg = dp * p, dg_ * gk  # each exp(b_t − b_i) factor: + to b_t (rows), − to b_i (columns)
        db = hp.sum(-1) - hp.sum(-2) + hg.sum(-1) - hg.sum(-2)
        dp.mul_(decay[:, 0])
        dg_.mul_(decay[:, 0])
    # dQ = (dP⊙Γ) K;  dK += (dG⊙Γ) K + (dG⊙Γ)ᵀ K + (dP⊙Γ)ᵀ Q
    k2 = kf.reshape(nb, C, dk)
    dq = torch.bmm(dp, k2).view(n, bh, C, dk)
    dk_ += torch.baddbmm(torch.bmm(dp.transpose(-1, -2), qf.reshape(nb, C, dk)), dg_ + dg_.transpose(-1, -2),
                         k2).view(n, bh, C, dk)
    if gated:
        dq += dq_read * gamma
        dk_ += dk_write * rho
        db = db.view(n, bh, C)
        db += (dq_read * qf).sum(-1) * gamma[..., 0]  # through γ in diag(γ) Q
        db += (sk * bc * gamma)[..., 0]  # through γ in diag(γ) K
        r = (dk_write * k_write).sum(-1)  # through ρ = exp(b_C − b)
        db -= r
        db[..., -1] += r.sum(-1) + (starts[:n] * ds[1:]).sum((-1, -2)) * gamma_end[..., 0, 0]  # and γ_C
        dgc = db.flip(-1).cumsum(-1).flip(-1)  # b = cumsum(g) within the chunk
    else:
        dq += dq_read
        dk_ += dk_write
        dgc = None
    return dq, dk_, dv_, dbeta, dgc, ds[0]


class WYChunk(torch.autograd.Function):
    """``(o, u, starts) = WYChunk.apply(qc, kc, vc, bc, gc, s0, batch)`` on chunked float32 tensors (see
    :func:`wy_forward`); differentiable in every input through :func:`wy_backward`."""

    @staticmethod
    def forward(ctx, qc, kc, vc, bc, gc: Optional[torch.Tensor], s0: Optional[torch.Tensor], batch: int):
        o, u, starts, saved = wy_forward(qc, kc, vc, bc, gc, s0, batch, keep=True)
        ctx.save_for_backward(*saved)  # (None entries allowed; outputs saved this way make no reference cycle)
        ctx.has_s0 = s0 is not None
        ctx.set_materialize_grads(False)
        return o, u, starts

    @staticmethod
    def backward(ctx, do, du, dstarts):
        dq, dk, dv, dbeta, dg, ds0 = wy_backward(ctx.saved_tensors, do, du, dstarts)
        return dq, dk, dv, dbeta, dg, ds0 if ctx.has_s0 else None, None
