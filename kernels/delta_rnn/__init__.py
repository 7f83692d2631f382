"""The Delta RNN (Irie et al. 2021): public function and reference. No chunkwise form is given: the two
fast matrices follow the delta rule, but each output reads softmax(y_{t-1}), so the outputs are
sequential; ``backend="reference"`` is the only backend."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float

from .._common import RecurrenceOutput, check_chunk_size, check_per_head, check_qkv, check_reference_only, check_state, check_tensor
from .naive import delta_rnn_read, delta_rnn_reference

__all__ = ["delta_rnn", "delta_rnn_read", "delta_rnn_reference"]


def delta_rnn(
    q: Float[torch.Tensor, "batch pos head d_k"],
    k: Float[torch.Tensor, "batch pos head d_k"],
    v: Float[torch.Tensor, "batch pos head d_v"],
    beta: Float[torch.Tensor, "batch pos head"],
    rec_k: Float[torch.Tensor, "batch pos head d_v"],
    rec_v: Float[torch.Tensor, "batch pos head d_v"],
    rec_beta: Float[torch.Tensor, "batch pos head"],
    *,
    initial_state: Optional[Float[torch.Tensor, "batch head d_k two_d_v"]] = None,
    previous_output: Optional[Float[torch.Tensor, "batch head d_v"]] = None,
    chunk_size: int = 64,
    backend: str = "reference",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    """The Delta RNN's recurrence (equations and state layout in :mod:`.naive`).

    Args:
        q, k: ``[batch, pos, head, d_k]``, v ``[batch, pos, head, d_v]``, beta ``[batch, pos, head]``: the
            feed-forward fast net's inputs, after their activations. rec_k, rec_v ``[batch, pos, head, d_v]``
            and rec_beta ``[batch, pos, head]``: the recurrent fast net's. d_k must equal d_v.
        initial_state: ``[batch, head, d_k, 2·d_v]``, the columns [W | R] (None: zeros).
        previous_output: y before position 0 ``[batch, head, d_v]`` (None: zeros; softmax(0) is uniform).
        chunk_size: stride of ``chunk_states``. backend: ``"reference"`` only.
        output_final_state / output_chunk_states: also return the last state / the states before each
            chunk start ``[batch, n_chunks, head, d_k, 2·d_v]``. output_delta: the per-position record
            ``[u_t | uʳ_t | z_t]`` ``[batch, pos, head, 3·d_v]`` (the two writes, the feed-forward read).

    Returns:
        :class:`RecurrenceOutput` with y ``[batch, pos, head, d_v]``. Differentiable in every input.
    """
    check_reference_only("delta_rnn", backend, "each output reads softmax(y_{t-1})")
    b, t, h, dk, dv = check_qkv(q, k, v)
    if dk != dv:
        raise ValueError(f"delta_rnn needs d_k = d_v (R's rows sit beside W's in the state), got {dk} and {dv}")
    for name, x in (("rec_k", rec_k), ("rec_v", rec_v)):
        check_tensor(name, x, (b, t, h, dv), q, "batch, pos, head, d_v", dtype=True)
    for name, x in (("beta", beta), ("rec_beta", rec_beta)):
        if x is None:
            raise ValueError(f"{name} is required: [batch, pos, head] write strengths (after the sigmoid)")
        check_per_head(name, x, b, t, h, q)
    check_state(initial_state, b, h, dk, 2 * dv, q)
    if previous_output is not None:
        check_tensor("previous_output", previous_output, (b, h, dv), q, "batch, head, d_v")
    check_chunk_size(chunk_size)
    return delta_rnn_reference(
        q, k, v, beta, rec_k, rec_v, rec_beta, initial_state=initial_state, previous_output=previous_output,
        chunk_size=chunk_size, output_final_state=output_final_state, output_chunk_states=output_chunk_states,
        output_delta=output_delta,
    )
