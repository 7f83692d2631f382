"""The Delta LSTM (Irie, Schlag, Csordás, Schmidhuber 2021; version 4, the paper's Table 2): an LSTM
whose weights are fast weights, one position at a time: the single source of truth.

Followed from IDSIA/recurrent-fwp ``language_modeling/src/utils/cuda_fast_weight_layer.py``
(``CudaFastLSTMv4Layer``: three delta-rule feed-forward fast nets ``fast_weight_delta`` give z_i, z_u, z_o;
``fast_lstm_v4`` adds three recurrent fast matrices) and the PyTorch loop that checks the CUDA kernel in
``language_modeling/src/utils/fast_lstm_v4/__init__.py``. For each gate g ∈ (i, u, o), inputs after their
activations (as the authors' kernels get them):

    W^g_t = W^g_{t-1} + k^g_t u^g_tᵀ,   u^g_t = β^g_t (v^g_t − W^g_{t-1}ᵀ k^g_t);    z^g_t = W^gᵀ_t q^g_t
    R^g_t = R^g_{t-1} + kʳ^g_t uʳ^g_tᵀ, uʳ^g_t = βʳ^g_t (vʳ^g_t − R^g_{t-1}ᵀ kʳ^g_t)
    s_t = softmax(h_{t-1})                                      h_{-1} = 0 (or ``previous_output``)
    i_t = σ(R^iᵀ_t s_t + z^i_t);   ũ_t = R^uᵀ_t s_t + z^u_t;   o_t = σ(R^oᵀ_t s_t + z^o_t)   (v4: ũ linear)
    c_t = i_t ⊙ ũ_t + (1 − i_t) ⊙ c_{t-1};                     h_t = o_t ⊙ c_t

Layout: inputs carry a ``gate`` axis of size 3 (i, u, o) before their last axis. The state is
``[d_k, 6·d_v + 1]`` per head, the columns ``[W^i | W^u | W^o | R^i | R^u | R^o | c]`` (d_k = d_v; the cell
c_{t} is the last column). The per-position record (``output_delta``) is ``[..., 13·d_v]``:
``[u^i | u^u | u^o | uʳ^i | uʳ^u | uʳ^o | z^i | z^u | z^o | i | ũ | o | c]``. Computes in float32
(float64 inputs stay float64); returns the input dtype.
"""

from __future__ import annotations

from typing import Optional

import torch

from .._common import RecurrenceOutput

GATES = ("i", "u", "o")


def delta_lstm_cell(z: torch.Tensor, R: torch.Tensor, c_prev: torch.Tensor, h_prev: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One LSTM step from the feed-forward reads ``z [..., 3, d_v]``, the recurrent matrices ``R [..., 3,
    d_v, d_v]`` (after this position's write), c_{t-1} and h_{t-1} ``[..., d_v]``: (i, ũ, o, c_t, h_t)."""
    s = torch.softmax(h_prev, dim=-1)
    pre = z + torch.einsum("...k,...gkv->...gv", s, R)  # [..., 3, d_v]
    i, u, o = torch.sigmoid(pre[..., 0, :]), pre[..., 1, :], torch.sigmoid(pre[..., 2, :])
    c = i * u + (1 - i) * c_prev
    return i, u, o, c, o * c


def unpack_state(state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``[..., d_k, 6·d_v + 1]`` → W ``[..., 3, d_k, d_v]``, R ``[..., 3, d_v, d_v]``, c ``[..., d_v]``."""
    dv = (state.shape[-1] - 1) // 6
    blocks = state[..., :-1].unflatten(-1, (6, dv)).movedim(-2, -3)  # [..., 6, d_k, d_v]
    return blocks[..., :3, :, :], blocks[..., 3:, :, :], state[..., -1]


def pack_state(W: torch.Tensor, R: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cat([W, R], dim=-3).movedim(-3, -2).flatten(-2), c[..., None]], dim=-1)


def delta_lstm_reference(
    q: torch.Tensor,  # [batch, pos, head, 3, d_k] after elu+1 and sum-normalisation
    k: torch.Tensor,  # [batch, pos, head, 3, d_k]
    v: torch.Tensor,  # [batch, pos, head, 3, d_v]
    beta: torch.Tensor,  # [batch, pos, head, 3] after the sigmoid
    rec_k: torch.Tensor,  # [batch, pos, head, 3, d_v] after the softmax
    rec_v: torch.Tensor,  # [batch, pos, head, 3, d_v]
    rec_beta: torch.Tensor,  # [batch, pos, head, 3] after the sigmoid
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_k, 6·d_v + 1]
    previous_output: Optional[torch.Tensor] = None,  # [batch, head, d_v] h before position 0
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, _, dk = q.shape
    dv = v.shape[-1]
    dtype = q.dtype
    ct = torch.promote_types(dtype, torch.float32)
    q, k, v, beta, rec_k, rec_v, rec_beta = (x.to(ct) for x in (q, k, v, beta, rec_k, rec_v, rec_beta))
    if initial_state is None:
        initial_state = q.new_zeros(b, h, dk, 6 * dv + 1)
    W, R, c = unpack_state(initial_state.to(ct))
    y = q.new_zeros(b, h, dv) if previous_output is None else previous_output.to(ct)
    outs, records, snaps = [], [], []
    for t in range(t_len):
        if t % chunk_size == 0:
            snaps.append(pack_state(W, R, c))
        u = beta[:, t, ..., None] * (v[:, t] - torch.einsum("bhgk,bhgkv->bhgv", k[:, t], W))
        W = W + k[:, t, ..., :, None] * u[..., None, :]
        ur = rec_beta[:, t, ..., None] * (rec_v[:, t] - torch.einsum("bhgk,bhgkv->bhgv", rec_k[:, t], R))
        R = R + rec_k[:, t, ..., :, None] * ur[..., None, :]
        z = torch.einsum("bhgk,bhgkv->bhgv", q[:, t], W)
        i, u_c, o, c, y = delta_lstm_cell(z, R, c, y)
        outs.append(y)
        records.append(torch.cat([u.flatten(-2), ur.flatten(-2), z.flatten(-2), i, u_c, o, c], dim=-1))
    return RecurrenceOutput(
        output=torch.stack(outs, dim=1).to(dtype),
        final_state=pack_state(W, R, c) if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
        delta=torch.stack(records, dim=1).to(dtype) if output_delta else None,
    )
