"""Fast Weight Memory (Schlag, Munkhdalai & Schmidhuber, ICLR 2021), one position at a time: the reference.

Followed (read, not copied): ischlag/Fast-Weight-Memory-public, ``catbAbI/models/lm_fwm.py``,
``TPRRNNCell.forward``. Per head, the state is a third-order tensor F ``[d_s, d_r, d_t]``:

    v_old_t = F_{t-1} ×₁ s_t ×₂ r_t                     what the memory returns for the key s_t ⊗ r_t
    u_t     = β_t (t_t − v_old_t) / d_t                  the write (the code divides by t_size)
    F'_t    = F_{t-1} + s_t ⊗ r_t ⊗ u_t
    F_t     = F'_t / max(1, ‖F'_t‖_F)                    (the code: F / (relu(‖F‖ − 1) + 1))
    n⁰_t    = q_t;   nʲ_t = LN(F_t ×₁ nʲ⁻¹_t ×₂ e_{t,j})  for j = 1..n_hops (read after write;
                                                         LN without affine, eps 1e-5, as nn.LayerNorm)

``writes`` (given) replaces u_t (then v_old is not used): how a patch of the writes is fed back.
Computes in float32 (float64 inputs stay float64, for gradcheck) and returns the dtype of ``s``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .._common import RecurrenceOutput

LN_EPS = 1e-5  # torch.nn.LayerNorm's default, which the authors' ln_read uses
STATES_KEPT_PER_POSITION = 6  # what autograd saves per position without checkpoints (tests/test_fwm.py counts it)
CHECKPOINT_ABOVE_BYTES = 1 << 30  # checkpoint the training loop when plain autograd would keep more than 1 GiB


def fwm_read(state: torch.Tensor, q: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """Every hop's result ``[..., hop, d_t]`` from ``state [..., d_s, d_r, d_t]``, the first query
    ``q [..., d_s]`` and the hop relations ``e [..., hop, d_r]`` (broadcasting over leading axes)."""
    ct = torch.promote_types(torch.promote_types(state.dtype, q.dtype), torch.float32)
    n, hops = q.to(ct), []
    for j in range(e.shape[-2]):
        n = torch.einsum("...srt,...s,...r->...t", state.to(ct), n, e[..., j, :].to(ct))
        n = F.layer_norm(n, n.shape[-1:], eps=LN_EPS)
        hops.append(n)
    return torch.stack(hops, dim=-2)


def fwm_reference(
    s: torch.Tensor,  # [batch, pos, head, d_s]
    r: torch.Tensor,  # [batch, pos, head, d_r]
    t: torch.Tensor,  # [batch, pos, head, d_t]
    beta: torch.Tensor,  # [batch, pos, head]
    q: torch.Tensor,  # [batch, pos, head, d_s]
    e: torch.Tensor,  # [batch, pos, head, hop, d_r]
    writes: Optional[torch.Tensor] = None,  # [batch, pos, head, d_t]
    initial_state: Optional[torch.Tensor] = None,  # [batch, head, d_s, d_r, d_t]
    chunk_size: int = 64,
    output_final_state: bool = False,
    output_chunk_states: bool = False,
    output_delta: bool = False,
) -> RecurrenceOutput:
    b, t_len, h, ds = s.shape
    dr, dt = r.shape[-1], t.shape[-1]
    dtype = s.dtype
    ct = torch.promote_types(dtype, torch.float32)  # the compute dtype
    s, r, t, beta = s.to(ct), r.to(ct), t.to(ct), beta.to(ct)
    Fw = s.new_zeros(b, h, ds, dr, dt) if initial_state is None else initial_state.to(ct)
    tensors = (s, r, t, beta, q, e, writes)
    # training memory: autograd through the loop keeps ~6 states per position (O(pos · d_s·d_r·d_t)); when that
    # would pass CHECKPOINT_ABOVE_BYTES the loop is checkpointed — each chunk of ``chunk_size`` positions keeps only
    # its start state and is recomputed in the backward pass, one position at a time — so it holds ~pos/C + C + 4
    # states instead, at the price of recomputing every position twice in the backward pass. Same gradients.
    checkpointed = torch.is_grad_enabled() and any(
        x is not None and x.requires_grad for x in (*tensors, initial_state)) and (
        STATES_KEPT_PER_POSITION * t_len * Fw.numel() * Fw.element_size() > CHECKPOINT_ABOVE_BYTES)
    outs, deltas, snaps = [], [], []
    for lo in range(0, t_len, chunk_size):
        snaps.append(Fw)
        chunk = tuple(None if x is None else x[:, lo:lo + chunk_size] for x in tensors)
        if checkpointed:
            Fw, o, u = checkpoint(_chunk, Fw, *chunk, dt, ct, True, use_reentrant=False)
        else:
            Fw, o, u = _chunk(Fw, *chunk, dt, ct, False)
        outs.append(o)
        deltas.append(u)
    return RecurrenceOutput(
        output=torch.cat(outs, dim=1).to(dtype),
        final_state=Fw if output_final_state else None,
        chunk_states=torch.stack(snaps, dim=1) if output_chunk_states else None,
        delta=torch.cat(deltas, dim=1).to(dtype) if output_delta else None,
    )


def _step(Fw, s_i, r_i, t_i, beta_i, q_i, e_i, w_i, dt: int, ct: torch.dtype):
    """One position: the write (given ``w_i`` or the delta error), the norm rescaling, the hops' read."""
    if w_i is None:
        v_old = torch.einsum("bhsrt,bhs,bhr->bht", Fw, s_i, r_i)  # what the memory returns for s ⊗ r
        u = beta_i[..., None] * (t_i - v_old) / dt
    else:
        u = w_i.to(ct)
    Fw = Fw + torch.einsum("bhs,bhr,bht->bhsrt", s_i, r_i, u)
    norm = Fw.flatten(2).norm(dim=-1)  # [batch, head]
    Fw = Fw / norm.clamp_min(1.0)[..., None, None, None]
    return Fw, fwm_read(Fw, q_i, e_i), u


def _chunk(Fw, s, r, t, beta, q, e, writes, dt: int, ct: torch.dtype, per_step_checkpoint: bool):
    """The positions of one chunk from state ``Fw``: (state after the last, outputs, writes) with a ``pos`` axis;
    with ``per_step_checkpoint`` each position is recomputed in the backward pass (only its input state kept)."""
    outs, deltas = [], []
    for i in range(s.shape[1]):
        args = (Fw, s[:, i], r[:, i], t[:, i], beta[:, i], q[:, i], e[:, i], None if writes is None else writes[:, i],
                dt, ct)
        Fw, o, u = checkpoint(_step, *args, use_reentrant=False) if per_step_checkpoint else _step(*args)
        outs.append(o)
        deltas.append(u)
    return Fw, torch.stack(outs, dim=1), torch.stack(deltas, dim=1)
