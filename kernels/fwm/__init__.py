"""Fast Weight Memory (Schlag et al. 2021): public function and reference backend.

There is no chunkwise form: after every write the whole tensor F is divided by max(1, ‖F‖_F), a
factor that depends on the state just written, so the writes of a chunk do not compose into one
closed-form update. ``backend="chunk"`` is refused with a message saying so.
"""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float

from .._common import RecurrenceOutput, check_chunk_size, check_per_head, check_reference_only, check_tensor
from .naive import LN_EPS, fwm_read, fwm_reference

__all__ = ["fwm", "fwm_read", "fwm_reference", "LN_EPS"]

def fwm(
    s: Float[torch.Tensor, "batch pos head d_s"],
    r: Float[torch.Tensor, "batch pos head d_r"],
    t: Float[torch.Tensor, "batch pos head d_t"],
    beta: Float[torch.Tensor, "batch pos head"],
    q: Float[torch.Tensor, "batch pos head d_s"],
    e: Float[torch.Tensor, "batch pos head hop d_r"],
    *,
    writes: Optional[Float[torch.Tensor, "batch pos head d_t"]] = None,
    initial_state: Optional[Float[torch.Tensor, "batch head d_s d_r d_t"]] = None,
    chunk_size: int = 64,
    backend: str = "reference",
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    """The Fast Weight Memory recurrence, per head (equations in :mod:`kernels.fwm.naive`):

        u_t = β_t (t_t − F_{t-1} ×₁ s_t ×₂ r_t) / d_t;   F_t = (F_{t-1} + s_t⊗r_t⊗u_t) / max(1, ‖·‖_F)
        n⁰ = q_t;   nʲ = LN(F_t ×₁ nʲ⁻¹ ×₂ e_{t,j})   (j = 1..hop)

    Args:
        s: ``[batch, pos, head, d_s]`` source keys; r: ``[batch, pos, head, d_r]`` relation keys;
        t: ``[batch, pos, head, d_t]`` targets; beta: ``[batch, pos, head]`` write strengths.
        q: ``[batch, pos, head, d_s]`` first read query; e: ``[batch, pos, head, hop, d_r]`` the read
            relation of each hop (hops after the first query F with a d_t-vector: d_s must equal d_t).
        writes: ``[batch, pos, head, d_t]`` given writes u_t (replacing β(t − v_old)/d_t), or None.
        initial_state: ``[batch, head, d_s, d_r, d_t]`` or None (zeros).
        chunk_size: the stride of ``chunk_states``.
        backend: ``"reference"`` only (no chunkwise form exists, see the module docstring).
        output_final_state / output_chunk_states / output_delta: also return F after the last write,
            F before each chunk ``[batch, n_chunks, head, d_s, d_r, d_t]`` and the writes u.

    Returns:
        :class:`RecurrenceOutput` with ``output`` = every hop's result ``[batch, pos, head, hop, d_t]``
        (the last hop is the read-out); states float32. Differentiable in every input.
    """
    check_reference_only("the fwm kernel", backend, "its norm rescaling after every write has no closed form over a chunk")
    if not isinstance(s, torch.Tensor) or s.dim() != 4:
        got = tuple(s.shape) if isinstance(s, torch.Tensor) else type(s).__name__
        raise ValueError(f"s must have shape [batch, pos, head, d_s] (4 dims), got {got}")
    if not s.is_floating_point():
        raise ValueError(f"s must be a floating-point tensor, got {s.dtype}")
    b, n, h, ds = s.shape
    if n == 0:
        raise ValueError("the sequence is empty (pos = 0); pass at least one position")
    if not isinstance(r, torch.Tensor) or r.dim() != 4 or not isinstance(t, torch.Tensor) or t.dim() != 4:
        raise ValueError("r and t must have shape [batch, pos, head, d_r] and [batch, pos, head, d_t]")
    dr, dt = r.shape[-1], t.shape[-1]
    check_tensor("r", r, (b, n, h, dr), s, "batch, pos, head, d_r", dtype=True)
    check_tensor("t", t, (b, n, h, dt), s, "batch, pos, head, d_t", dtype=True)
    check_tensor("q", q, (b, n, h, ds), s, "batch, pos, head, d_s", dtype=True)
    if not isinstance(e, torch.Tensor) or e.dim() != 5:
        raise ValueError("e must have shape [batch, pos, head, hop, d_r] (one relation per read hop); "
                         "for a single hop use e.unsqueeze(3)")
    check_tensor("e", e, (b, n, h, e.shape[3], dr), s, "batch, pos, head, hop, d_r", dtype=True)
    if e.shape[3] == 0:
        raise ValueError("e has no hops; pass at least one read relation per position")
    if e.shape[3] > 1 and ds != dt:
        raise ValueError(f"with more than one read hop each hop's result (d_t = {dt}) is the next query "
                         f"(d_s = {ds}); make d_s equal d_t or read with one hop")
    if beta is None:
        raise ValueError("beta is required: pass torch.ones(batch, pos, head) for full-strength writes")
    check_per_head("beta", beta, b, n, h, s)
    if writes is not None:
        check_tensor("writes", writes, (b, n, h, dt), s, "batch, pos, head, d_t", dtype=True)
    if initial_state is not None:
        if not isinstance(initial_state, torch.Tensor) or tuple(initial_state.shape) != (b, h, ds, dr, dt):
            got = tuple(initial_state.shape) if isinstance(initial_state, torch.Tensor) else type(initial_state).__name__
            raise ValueError(f"initial_state must have shape [batch, head, d_s, d_r, d_t] = {(b, h, ds, dr, dt)}, "
                             f"got {got}")
    check_chunk_size(chunk_size)
    return fwm_reference(s, r, t, beta, q, e, writes=writes, initial_state=initial_state, chunk_size=chunk_size,
                         output_final_state=output_final_state, output_chunk_states=output_chunk_states,
                         output_delta=output_delta)
