"""The Recurrent Delta Net (Irie et al. 2021): public function and reference. There is no chunkwise
form: position t's q, k, v and β depend on tanh(y_{t-1}), so the recurrence is not linear in the state
and cannot be parallelised over a chunk; ``backend="reference"`` is the only backend."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float

from .._common import RecurrenceOutput, check_chunk_size, check_reference_only, check_tensor, check_per_head, check_qkv, check_state
from .naive import rec_delta_inputs, rec_delta_reference

__all__ = ["rec_delta", "rec_delta_inputs", "rec_delta_reference"]


def rec_delta(
    q: Float[torch.Tensor, "batch pos head d_k"],
    k: Float[torch.Tensor, "batch pos head d_k"],
    v: Float[torch.Tensor, "batch pos head d_v"],
    beta: Float[torch.Tensor, "batch pos head"],
    R_q: Float[torch.Tensor, "head d_v d_k"],
    R_k: Float[torch.Tensor, "head d_v d_k"],
    R_v: Float[torch.Tensor, "head d_v d_v"],
    r_beta: Float[torch.Tensor, "head d_v"],
    *,
    initial_state: Optional[Float[torch.Tensor, "batch head d_k d_v"]] = None,
    previous_output: Optional[Float[torch.Tensor, "batch head d_v"]] = None,
    chunk_size: int = 64,
    backend: str = "reference",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    """The Recurrent Delta Net's fast-weight recurrence (equations in :mod:`.naive`).

    Args:
        q, k: ``[batch, pos, head, d_k]`` and v ``[batch, pos, head, d_v]``: the slow net's parts q̃, k̃, ṽ
            (before the recurrent term; q and k before the softmax).
        beta: ``[batch, pos, head]`` β̃, before the recurrent term and the sigmoid.
        R_q, R_k: ``[head, d_v, d_k]``; R_v: ``[head, d_v, d_v]``; r_beta: ``[head, d_v]``: the recurrent
            weights applied to tanh(y_{t-1}).
        initial_state: W before position 0 ``[batch, head, d_k, d_v]`` (None: zeros).
        previous_output: y before position 0 ``[batch, head, d_v]`` (None: zeros, a sequence start);
            with ``initial_state`` it restarts the recurrence exactly from any position.
        chunk_size: stride of ``chunk_states``.
        backend: ``"reference"`` only (no chunkwise form exists; see the module docstring).
        output_final_state / output_chunk_states / output_delta: also return W_{T-1}, the states before
            each chunk start ``[batch, n_chunks, head, d_k, d_v]`` and the writes u_t = β_t(v_t − v̄_t).

    Returns:
        :class:`RecurrenceOutput`; ``output`` is y ``[batch, pos, head, d_v]`` in q's dtype, states in
        float32 (float64 for float64 inputs). Differentiable in every input.
    """
    check_reference_only("rec_delta", backend, "q_t, k_t, v_t, β_t depend on tanh(y_{t-1}), so the recurrence is "
                         "not linear in the state")
    b, t, h, dk, dv = check_qkv(q, k, v)
    if beta is None:
        raise ValueError("beta is required: the slow net's β̃ [batch, pos, head] (before the sigmoid)")
    check_per_head("beta", beta, b, t, h, q)
    check_tensor("R_q", R_q, (h, dv, dk), q)
    check_tensor("R_k", R_k, (h, dv, dk), q)
    check_tensor("R_v", R_v, (h, dv, dv), q)
    check_tensor("r_beta", r_beta, (h, dv), q)
    check_state(initial_state, b, h, dk, dv, q)
    if previous_output is not None:
        check_tensor("previous_output", previous_output, (b, h, dv), q)
    check_chunk_size(chunk_size)
    return rec_delta_reference(
        q, k, v, beta, R_q, R_k, R_v, r_beta, initial_state=initial_state, previous_output=previous_output,
        chunk_size=chunk_size, output_final_state=output_final_state, output_chunk_states=output_chunk_states,
        output_delta=output_delta,
    )
