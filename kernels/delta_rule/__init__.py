"""The (gated) delta rule: public function, reference and chunkwise backends."""

from __future__ import annotations

from typing import Optional, Union

import torch
from jaxtyping import Float

from .._common import (RecurrenceOutput, check_backend, check_chunk_size, check_gate, check_per_head, check_qkv,
                       check_state)
from .chunk import delta_rule_chunk
from .naive import delta_rule_reference
from .triton_fla import delta_rule_fla

__all__ = ["delta_rule", "delta_rule_reference", "delta_rule_chunk", "delta_rule_fla"]

_BACKENDS = {"chunk": delta_rule_chunk, "reference": delta_rule_reference, "fla": delta_rule_fla}


def delta_rule(
    q: Float[torch.Tensor, "batch pos head d_k"],
    k: Float[torch.Tensor, "batch pos head d_k"],
    v: Float[torch.Tensor, "batch pos head d_v"],
    beta: Float[torch.Tensor, "batch pos head"],
    *,
    g: Optional[Union[Float[torch.Tensor, "batch pos head"], Float[torch.Tensor, "batch pos head d_k"]]] = None,
    initial_state: Optional[Float[torch.Tensor, "batch head d_k d_v"]] = None,
    chunk_size: int = 64,
    backend: str = "chunk",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    """The delta rule with an optional per-position decay (Gated DeltaNet when ``g`` is given per head, Kimi
    Delta Attention when it is given per key channel).

    For each position t (read after write; nothing is normalised or scaled here):

        S_t = diag(exp(g_t)) S_{t-1};   u_t = β_t (v_t − S_tᵀ k_t);   S_t += k_t u_tᵀ;   o_t = S_tᵀ q_t

    (a per-head g_t scales every row of S alike; a per-channel g_t ``[d_k]`` decays row c by exp(g_tc)).

    Args:
        q, k: ``[batch, pos, head, d_k]``; v: ``[batch, pos, head, d_v]``.
        beta: ``[batch, pos, head]`` write strengths.
        g: ``[batch, pos, head]`` log decay (α_t = exp(g_t)) ≤ 0, or ``[batch, pos, head, d_k]`` one per key
            channel (state row), or None for plain DeltaNet; −inf is a hard reset (every backend exact); a
            positive or NaN entry raises ValueError.
        initial_state: ``[batch, head, d_k, d_v]`` or None (zeros).
        chunk_size: chunk length C of the chunkwise backend, and the stride of ``chunk_states``.
        backend: ``"chunk"`` (WY/UT chunkwise-parallel), ``"reference"`` (a loop over positions) or ``"fla"``
            (flash-linear-attention's Triton kernels: CUDA tensors, output and final state only, no −inf;
            see ``triton_fla.py``). Chosen explicitly; never switched behind your back.
        output_final_state / output_chunk_states / output_delta: also return S_{T-1}
            ``[batch, head, d_k, d_v]``, the states at chunk starts ``[batch, n_chunks, head, d_k, d_v]``
            (memory O(pos/C · d_k · d_v)), and the delta errors u ``[batch, pos, head, d_v]``.

    Returns:
        :class:`RecurrenceOutput` ``(output, final_state, chunk_states, delta)``; states are float32,
        ``output`` and ``delta`` have the dtype of ``q``. Differentiable in every input.
    """
    check_backend(backend, tuple(_BACKENDS))
    b, t, h, dk, dv = check_qkv(q, k, v)
    if beta is None:
        raise ValueError("beta is required: pass torch.ones(batch, pos, head) for the plain delta rule")
    check_per_head("beta", beta, b, t, h, q)
    check_gate(g, b, t, h, dk, q)
    check_state(initial_state, b, h, dk, dv, q)
    check_chunk_size(chunk_size)
    return _BACKENDS[backend](
        q, k, v, beta, g=g, initial_state=initial_state, chunk_size=chunk_size,
        output_final_state=output_final_state, output_chunk_states=output_chunk_states,
        output_delta=output_delta,
    )
