"""The Delta RNN (Irie, Schlag, Csordás, Schmidhuber 2021): a fast net that is itself recurrent, one
position at a time: the single source of truth.

Followed from IDSIA/recurrent-fwp ``algorithmic/layers.py`` (``FastRNNlayer``: a delta-rule feed-forward
fast net ``fast_weight_delta`` whose output z feeds ``fast_rnn_v2``) and the PyTorch loops that check the
authors' CUDA kernels in ``algorithmic/fast_weight/__init__.py`` and
``algorithmic/fast_weight_rnn_v2/__init__.py`` (whose kernel ``fast_rnn_cuda.cu`` adds no output
activation). Inputs arrive after their activations (as the authors' kernels get them):

    u_t  = β_t (v_t − W_{t-1}ᵀ k_t);        W_t = W_{t-1} + k_t u_tᵀ;        z_t = W_tᵀ q_t
    s_t  = softmax(y_{t-1})                                        y_{-1} = 0 (or ``previous_output``)
    uʳ_t = βʳ_t (vʳ_t − R_{t-1}ᵀ kʳ_t);     R_t = R_{t-1} + kʳ_t uʳ_tᵀ
    y_t  = z_t + R_tᵀ s_t                                          both reads after their writes

State layout: ``[d_k, 2·d_v]`` per head, the columns ``[W | R]`` (W ``[d_k, d_v]``; R ``[d_v, d_v]``, its
rows indexed by s_t ∈ R^{d_v}; so d_k = d_v). The per-position record (``output_delta``) is
``[u_t | uʳ_t | z_t]`` ``[..., 3·d_v]``: the two writes and the feed-forward read. Computes in float32
(float64 inputs stay float64); returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._common import RecurrenceOutput


def delta_rnn_read(q_t: torch.Tensor, state: torch.Tensor, y_prev: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(z_t, R_tᵀ softmax(y_{t-1})) of one position from the packed state ``[..., d_k, 2·d_v]``."""
    dv = y_prev.shape[-1]
    z = torch.einsum("...k,...kv->...v", q_t, state[..., :dv])
    r = torch.einsum("...k,...kv->...v", torch.softmax(y_prev, dim=-1), state[..., dv:])
    return z, r


def delta_rnn_reference(
    q: torch.Tensor,  # [batch, pos, head, d_k] after elu+1 and sum-normalisation
    k: torch.Tensor,  # [batch, pos, head, d_k]
    v: torch.Tensor,  # [batch, pos, head, d_v]
    beta: torch.Tensor,  # [batch, pos, head] after the sigmoid
    rec_k: torch.Tensor,  # [batch, pos, head, d_v] after the softmax
    rec_v: torch.Tensor,  # [batch, pos, head, d_v]
    rec_beta: torch.Tensor,  # [batch, pos, head] after the sigmoid
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, 2·d_v]  [W | R]
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
    q, k, v, beta, rec_k, rec_v, rec_beta = (x.to(ct) for x in (q, k, v, beta, rec_k, rec_v, rec_beta))
    state = q.new_zeros(b, h, dk, 2 * dv) if initial_state is None else initial_state.to(ct)
    W, R = state[..., :dv], state[..., dv:]
    y = q.new_zeros(b, h, dv) if previous_output is None else previous_output.to(ct)
    outs, records, snaps = [], [], []
    for t in range(t_len):
        if t % chunk_size == 0:
            snaps.append(torch.cat([W, R], dim=-1))
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], W))
        W = W + k[:, t, :, :, None] * u[..., None, :]
        ur = rec_beta[:, t, :, None] * (rec_v[:, t] - torch.einsum("bhk,bhkv->bhv", rec_k[:, t], R))
        R = R + rec_k[:, t, :, :, None] * ur[..., None, :]
        z, r = delta_rnn_read(q[:, t], torch.cat([W, R], dim=-1), y)
        y = z + r
        outs.append(y)
        records.append(torch.cat([u, ur, z], dim=-1))
    return RecurrenceOutput(
        output=torch.stack(outs, dim=1).to(dtype),
        final_state=torch.cat([W, R], dim=-1) if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
        delta=torch.stack(records, dim=1).to(dtype) if output_delta else None,
    )
