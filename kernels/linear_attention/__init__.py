"""Linear attention (the sum rule): public function, reference and chunkwise backends."""

from __future__ import annotations

from typing import Optional, Union

import torch
from jaxtyping import Float

from .._common import RecurrenceOutput, check_backend, check_chunk_size, check_gate, check_qkv, check_state
from .chunk import linear_attention_chunk
from .naive import linear_attention_reference

__all__ = ["linear_attention", "linear_attention_reference", "linear_attention_chunk"]


def linear_attention(
    q: Float[torch.Tensor, "batch pos head d_k"],
    k: Float[torch.Tensor, "batch pos head d_k"],
    v: Float[torch.Tensor, "batch pos head d_v"],
    *,
    normalize: bool = False,
    eps: float = 1e-6,
    g: Optional[Union[Float[torch.Tensor, "batch pos head"], Float[torch.Tensor, "batch pos head d_k"]]] = None,
    initial_state: Optional[Float[torch.Tensor, "batch head d_k d_state"]] = None,
    chunk_size: int = 64,
    backend: str = "chunk",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
) -> RecurrenceOutput:
    """Causal linear attention, the sum-rule fast weight programmer, with an optional decay.

        S_t = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ;   o_t = S_tᵀ q_t   (÷ (z_tᵀ q_t + eps) if ``normalize``)

    Without ``g`` this is the plain sum rule; with ``g`` per head ``[batch, pos, head]`` it is the scalar
    decay-gated sum rule (Mamba-2 / SSD, RetNet with a fixed g), per key channel ``[batch, pos, head, d_k]``
    Gated Linear Attention (GLA) — the delta rule's decay conventions exactly (kernels/_decay.py: log decays
    ≤ 0, −inf a hard reset, positive or NaN refused). Feature maps and scaling belong to the caller. Args as
    in :func:`delta_rule`, except: with ``normalize=True`` every state carries z (decayed like the rest) as
    an extra last value column, i.e. states are ``[batch, head, d_k, d_v + 1]`` (``initial_state`` too).
    """
    check_backend(backend)
    b, t, h, dk, dv = check_qkv(q, k, v)
    check_gate(g, b, t, h, dk, q)
    check_state(initial_state, b, h, dk, dv + int(normalize), q)
    check_chunk_size(chunk_size)
    fn = linear_attention_chunk if backend == "chunk" else linear_attention_reference
    return fn(
        q, k, v, normalize=normalize, eps=eps, g=g, initial_state=initial_state, chunk_size=chunk_size,
        output_final_state=output_final_state, output_chunk_states=output_chunk_states,
    )
