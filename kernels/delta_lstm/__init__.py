"""The Delta LSTM (Irie et al. 2021, version 4): public function and reference. No chunkwise form is
given: the six fast matrices follow the delta rule, but the gates read softmax(h_{t-1}) and the cell is
sequential; ``backend="reference"`` is the only backend."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float

from .._common import RecurrenceOutput, check_chunk_size, check_reference_only, check_state, check_tensor
from .naive import GATES, delta_lstm_cell, delta_lstm_reference, pack_state, unpack_state

__all__ = ["GATES", "delta_lstm", "delta_lstm_cell", "delta_lstm_reference", "pack_state", "unpack_state"]


def delta_lstm(
    q: Float[torch.Tensor, "batch pos head 3 d_k"],
    k: Float[torch.Tensor, "batch pos head 3 d_k"],
    v: Float[torch.Tensor, "batch pos head 3 d_v"],
    beta: Float[torch.Tensor, "batch pos head 3"],
    rec_k: Float[torch.Tensor, "batch pos head 3 d_v"],
    rec_v: Float[torch.Tensor, "batch pos head 3 d_v"],
    rec_beta: Float[torch.Tensor, "batch pos head 3"],
    *,
    initial_state: Optional[torch.Tensor] = None,
    previous_output: Optional[Float[torch.Tensor, "batch head d_v"]] = None,
    chunk_size: int = 64,
    backend: str = "reference",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    """The Delta LSTM's recurrence (equations, state layout and record in :mod:`.naive`).

    Args:
        q, k ``[batch, pos, head, 3, d_k]``, v ``[batch, pos, head, 3, d_v]``, beta ``[batch, pos, head, 3]``:
            the three feed-forward fast nets' inputs (gates i, u, o), after their activations; rec_k, rec_v
            ``[batch, pos, head, 3, d_v]`` and rec_beta ``[batch, pos, head, 3]``: the recurrent ones.
            d_k must equal d_v.
        initial_state: ``[batch, head, d_k, 6·d_v + 1]`` = [W^i | W^u | W^o | R^i | R^u | R^o | c] (None: zeros).
        previous_output: h before position 0 ``[batch, head, d_v]`` (None: zeros).
        chunk_size: stride of ``chunk_states``. backend: ``"reference"`` only.
        output_final_state / output_chunk_states: the last state / the states before each chunk start.
        output_delta: the per-position record ``[batch, pos, head, 13·d_v]`` (writes, reads, gates, cell).

    Returns:
        :class:`RecurrenceOutput` with h ``[batch, pos, head, d_v]``. Differentiable in every input.
    """
    check_reference_only("delta_lstm", backend, "the gates read softmax(h_{t-1})")
    for name, x in (("q", q), ("k", k), ("v", v), ("rec_k", rec_k), ("rec_v", rec_v)):
        if not isinstance(x, torch.Tensor) or x.dim() != 5 or x.shape[3] != 3:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"{name} must have shape [batch, pos, head, 3, dim] (gates i, u, o), got {got}")
    b, t, h, _, dk = q.shape
    dv = v.shape[-1]
    if t == 0:
        raise ValueError("the sequence is empty (pos = 0); pass at least one position")
    if dk != dv:
        raise ValueError(f"delta_lstm needs d_k = d_v (the R's rows sit beside the W's in the state), got {dk}, {dv}")
    if not q.is_floating_point():
        raise ValueError(f"q must be a floating-point tensor, got {q.dtype}")
    for name, x in (("k", k), ("v", v), ("rec_k", rec_k), ("rec_v", rec_v)):
        check_tensor(name, x, (b, t, h, 3, dv), q, "batch, pos, head, 3, d_v", dtype=True)
    for name, x in (("beta", beta), ("rec_beta", rec_beta)):
        check_tensor(name, x, (b, t, h, 3), q, "batch, pos, head, 3")
    check_state(initial_state, b, h, dk, 6 * dv + 1, q)
    if previous_output is not None:
        check_tensor("previous_output", previous_output, (b, h, dv), q, "batch, head, d_v")
    check_chunk_size(chunk_size)
    return delta_lstm_reference(
        q, k, v, beta, rec_k, rec_v, rec_beta, initial_state=initial_state, previous_output=previous_output,
        chunk_size=chunk_size, output_final_state=output_final_state, output_chunk_states=output_chunk_states,
        output_delta=output_delta,
    )
