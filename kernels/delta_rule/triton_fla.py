"""``backend="fla"``: the (gated) delta rule on flash-linear-attention's Triton kernels (CUDA only).

Our recurrence and fla's chunk kernels compute the same thing in the same ``[batch, pos, head, dim]`` layout and
the same ``[batch, head, d_k, d_v]`` state; the differences this file maps (read from the installed package:
``fla/ops/gated_delta_rule/chunk.py`` ``chunk_gated_delta_rule`` and ``fla/ops/kda/chunk.py`` ``chunk_kda``):

- fla scales the query by ``scale`` (default d_k^-1/2); ours applies no scale, so ``scale=1.0`` is passed;
- the ungated rule is the gated one with ``g = 0`` (fla's own ungated ``chunk_delta_rule`` takes bf16 only);
  a per-key-channel decay goes to ``chunk_kda`` (Kimi Delta Attention), a per-head one to ``chunk_gated_delta_rule``;
- fla returns the output and the final state only: the chunk states and the written values (``output_chunk_states``,
  ``output_delta``, what ``fast_weights`` and the write hooks read) are refused with a pointer to ``"chunk"``;
- fla forms decays from differences of cumulative log decays, where a hard reset (g = −inf) has no exact form;
  it is refused rather than approximated.
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from .._common import RecurrenceOutput

CHUNK_SIZES = {"head": (16, 32, 64), "channel": (32, 64)}  # what fla's chunk kernels accept, by gate


def fla_kernels() -> dict[str, Callable]:
    """fla's chunk kernels by the gate they take: ``"head"`` (gated delta rule) and ``"channel"`` (KDA).
    ImportError with the install line when fla or triton is missing (tests replace this function to run the
    mapping on CPU against fla's pure-torch references)."""
    try:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.kda import chunk_kda
    except ImportError as e:
        raise ImportError(
            f"backend='fla' needs flash-linear-attention with triton and a CUDA device ({e}); "
            "pip install flash-linear-attention triton, or use backend='chunk'") from e
    return {"head": chunk_gated_delta_rule, "channel": chunk_kda}


def check_fla_call(q: torch.Tensor, g: Optional[torch.Tensor], chunk_size: int, output_chunk_states: bool,
                   output_delta: bool, require_cuda: bool = True) -> None:
    """What ``backend="fla"`` cannot do, as a ValueError that says what to use instead."""
    if require_cuda and q.device.type != "cuda":
        raise ValueError(f"backend='fla' runs flash-linear-attention's Triton kernels, which need CUDA tensors; got "
                         f"{q.device.type} tensors (use backend='chunk' on CPU)")
    gate = "channel" if g is not None and g.dim() == 4 else "head"
    if chunk_size not in CHUNK_SIZES[gate]:
        raise ValueError(f"backend='fla' takes chunk_size in {CHUNK_SIZES[gate]} for a per-{gate} decay, got "
                         f"{chunk_size}")
    if output_chunk_states or output_delta:
        raise ValueError("backend='fla' returns the output and the final state only; fla's kernels expose neither "
                         "the chunk states nor the written values: use backend='chunk' for output_chunk_states / "
                         "output_delta (fast_weights, the write hooks)")
    if g is not None and bool(torch.isinf(g.detach()).any()):
        raise ValueError("backend='fla' cannot take a hard reset (g = −inf): fla's kernels form decays from "
                         "differences of cumulative log decays, which −inf turns into NaN; use backend='chunk'")


def delta_rule_fla(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, beta: torch.Tensor, *, g: Optional[torch.Tensor] = None,
    initial_state: Optional[torch.Tensor] = None, chunk_size: int = 64, output_final_state: bool = False,
    output_chunk_states: bool = False, output_delta: bool = False,
    kernels: Optional[dict[str, Callable]] = None,
) -> RecurrenceOutput:
    """:func:`kernels.delta_rule` on fla's kernels (arguments validated by the caller). ``kernels`` replaces
    :func:`fla_kernels` (and lifts the CUDA requirement): the tests pass fla's pure-torch references to check
    this mapping on CPU."""
    check_fla_call(q, g, chunk_size, output_chunk_states, output_delta, require_cuda=kernels is None)
    ops = fla_kernels() if kernels is None else kernels
    per_channel = g is not None and g.dim() == 4
    gate = g if g is not None else torch.zeros_like(beta)
    state = None if initial_state is None else initial_state.float()
    out, final = ops["channel" if per_channel else "head"](
        q, k, v, gate, beta, scale=1.0, initial_state=state, output_final_state=output_final_state,
        chunk_size=chunk_size)
    return RecurrenceOutput(out.to(q.dtype), None if final is None else final.float(), None, None)
