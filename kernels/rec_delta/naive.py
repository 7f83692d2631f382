"""The Recurrent Delta Net (Irie, Schlag, Csordás, Schmidhuber 2021, "Going Beyond Linear Transformers
with Recurrent Fast Weight Programmers"), one position at a time: the single source of truth.

Followed from IDSIA/recurrent-fwp ``algorithmic/layers.py`` (``RecUpdateTanhFastFFlayer``: the slow net
gives q, k, v, β with no bias, R_q, R_k, R_v ``[d_v, d_v]`` and r_b ``[1, d_v]`` per head, h0 = 0) and
the PyTorch check in ``algorithmic/rec_update_fwm_tanh/__init__.py`` (the authors' kernel is CUDA-only):

    f_t  = tanh(y_{t-1})                                   y_{-1} = 0 (or ``previous_output``)
    q_t  = softmax(q̃_t + f_t R_q)        k_t = softmax(k̃_t + f_t R_k)      (softmax over d_k)
    v_t  = ṽ_t + f_t R_v                 β_t = σ(β̃_t + f_t · r_β)
    v̄_t  = W_{t-1}ᵀ k_t                                    the value memory returns for k_t
    u_t  = β_t (v_t − v̄_t);   W_t = W_{t-1} + k_t u_tᵀ
    y_t  = W_tᵀ q_t                                        read after write; fed back raw, tanh on entry

In our ``[d_k, d_v]`` convention W is the transpose of the authors' ``[d_v, d_k]`` matrix; f_t R is the
authors' ``bmm(out, R)`` (a row vector times R). Nothing is scaled. Computes in float32 (float64 inputs
stay float64) and returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._common import RecurrenceOutput


def rec_delta_inputs(
    q: torch.Tensor,  # [..., head, d_k] slow part q̃
    k: torch.Tensor,  # [..., head, d_k] slow part k̃
    v: torch.Tensor,  # [..., head, d_v] slow part ṽ
    beta: torch.Tensor,  # [..., head] slow part β̃ (before the sigmoid)
    R_q: torch.Tensor,  # [head, d_v, d_k]
    R_k: torch.Tensor,  # [head, d_v, d_k]
    R_v: torch.Tensor,  # [head, d_v, d_v]
    r_beta: torch.Tensor,  # [head, d_v]
    y_prev: torch.Tensor,  # [..., head, d_v] previous output y_{t-1} (raw)
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The effective q_t, k_t, v_t, β_t of one position (or of every position at once, given each
    position's y_{t-1}): the slow parts plus the recurrent terms f_t R, f_t = tanh(y_{t-1})."""
    f = torch.tanh(y_prev)
    q_t = torch.softmax(q + torch.einsum("...hv,hvk->...hk", f, R_q), dim=-1)
    k_t = torch.softmax(k + torch.einsum("...hv,hvk->...hk", f, R_k), dim=-1)
    v_t = v + torch.einsum("...hv,hvw->...hw", f, R_v)
    beta_t = torch.sigmoid(beta + torch.einsum("...hv,hv->...h", f, r_beta))
    return q_t, k_t, v_t, beta_t


def rec_delta_reference(
    q: torch.Tensor,  # [batch, pos, head, d_k] slow parts (before the recurrent term and softmax)
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    beta: torch.Tensor,  # [batch, pos, head] before the sigmoid
    R_q: torch.Tensor,  # [head, d_v, d_k]
    R_k: torch.Tensor,  # [head, d_v, d_k]
    R_v: torch.Tensor,  # [head, d_v, d_v]
    r_beta: torch.Tensor,  # [head, d_v]
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, d_v]
    previous_output: Optional[torch.Tensor] = None,  # [batch, head, d_v] y before position 0
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, dk = q.shape
    dv = v.shape[-1]
    dtype = q.dtype
    ct = torch.promote_types(dtype, torch.float32)
    q, k, v, beta = q.to(ct), k.to(ct), v.to(ct), beta.to(ct)
    R_q, R_k, R_v, r_beta = R_q.to(ct), R_k.to(ct), R_v.to(ct), r_beta.to(ct)
    W = q.new_zeros(b, h, dk, dv) if initial_state is None else initial_state.to(ct)
    y = q.new_zeros(b, h, dv) if previous_output is None else previous_output.to(ct)
    outs, deltas, snaps = [], [], []
    for t in range(t_len):
        if t % chunk_size == 0:
            snaps.append(W)
        q_t, k_t, v_t, beta_t = rec_delta_inputs(q[:, t], k[:, t], v[:, t], beta[:, t], R_q, R_k, R_v, r_beta, y)
        v_old = torch.einsum("bhk,bhkv->bhv", k_t, W)  # v̄_t = W_{t-1}ᵀ k_t
        u = beta_t[..., None] * (v_t - v_old)  # [batch, head, d_v]
        W = W + k_t[..., :, None] * u[..., None, :]
        y = torch.einsum("bhk,bhkv->bhv", q_t, W)  # y_t = W_tᵀ q_t
        outs.append(y)
        deltas.append(u)
    return RecurrenceOutput(
        output=torch.stack(outs, dim=1).to(dtype),
        final_state=W if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
        delta=torch.stack(deltas, dim=1).to(dtype) if output_delta else None,
    )
