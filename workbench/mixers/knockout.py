"""Path knockout inside a recurrence: remove what chosen source positions write into one head's memory.

A :class:`WriteKnockout` on a mixer (set only inside :func:`knocked_out`) makes its next run read, for one
head, from a memory that never received the source positions' writes; every other head is the run's own.
The mixer decides what "its writes" are (:meth:`~workbench.mixers.base.Mixer.knockout_inputs`):

  - ``"values"``: the content the source positions write is zeroed in the recurrence's inputs (the values
    v_s, and any other written content the mixer names), and the recurrence re-runs with everything else
    — keys, rates, decays, queries — held fixed. For a mixer whose output is linear in the values
    (``hook_z = A · hook_v``) this is exactly zeroing the columns A[:, s] of its effective attention;
  - ``"skip"`` (the mixer's ``knockout_inputs`` returns None: a memory that generates its own values, or
    whose values also read its previous output): the write at each source position is dropped,
    W_s := W_{s-1} for that head, and the recurrence continues from there (a recurrence that feeds back
    its output continues with the knocked-out read-out). Built on the :class:`~.state.Recurrence`
    protocol alone (``run``, ``read``, ``read_offset``, ``previous_output``), so it needs nothing of the
    mixer.

The mixer's forward treats the re-run's output as a patched output (as after a ``carry`` state patch):
its read-out hooks (``hook_z``) show the knocked-out run. The analysis in
:mod:`workbench.analysis.knockout` splices that read-out into a clean run at the target positions only.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional

import torch

from ..kernels import RecurrenceOutput
from .state import RecurrenceInputs, check_positions, previous_output, start_state, states_at

__all__ = ["WriteKnockout", "knocked_out", "knockout_output", "skip_writes", "zero_at"]


@dataclass(frozen=True)
class WriteKnockout:
    """Remove the writes of ``sources`` (positions, as given; negative count from the end) into ``head``'s
    memory for one run. ``mode`` is "carry" for the mixers' bookkeeping: the re-run's outputs are the ones
    fed back."""

    sources: tuple[int, ...]
    head: int
    mode: str = "carry"

    @property
    def positions(self) -> tuple[int, ...]:
        return self.sources

    def resolve(self, n_pos: int) -> list[int]:
        return sorted(set(check_positions(self.sources, n_pos)))

    def apply(self, mixer, inputs: RecurrenceInputs, base: RecurrenceOutput
              ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        cfg = mixer.model_cfg
        return knockout_output(mixer, inputs, base, self.resolve(inputs.n_pos), self.head, cfg.chunk_size,
                               cfg.backend)


def zero_at(t: Optional[torch.Tensor], positions: list[int], head: int) -> Optional[torch.Tensor]:
    """A copy of ``t [batch, pos, head, ...]`` with ``t[:, positions, head]`` zeroed (None stays None)."""
    if t is None:
        return None
    out = t.clone()
    out[:, positions, head] = 0
    return out


def knockout_output(mixer, inputs: RecurrenceInputs, base: RecurrenceOutput, sources: list[int], head: int,
                    chunk_size: int, backend: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The layer's recurrence output (and per-position records) with ``head`` reading a memory without the
    writes of ``sources``; the other heads keep ``base``'s."""
    recurrence = mixer.recurrence
    knocked = mixer.knockout_inputs(inputs, sources, head)
    if knocked is not None:
        res = recurrence.run(knocked, chunk_size=chunk_size, backend=backend, output_delta=base.delta is not None)
        out_h, delta_h = res.output, res.delta
    else:
        out_h, delta_h = skip_writes(recurrence, inputs, base, sources, head, chunk_size, backend)
    out = base.output.clone()
    out[:, :, head] = out_h[:, :, head].to(out.dtype)
    delta = base.delta
    if delta is not None and delta_h is not None:
        delta = delta.clone()
        delta[:, :, head] = delta_h[:, :, head].to(delta.dtype)
    return out, delta


def skip_writes(recurrence, inputs: RecurrenceInputs, base: RecurrenceOutput, sources: list[int], head: int,
                chunk_size: int, backend: str) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Re-run ``recurrence`` with the write at each of ``sources`` dropped for ``head`` (W_s := W_{s-1}),
    continuing from there; returns (output, records) of every head (the others equal the run's). The
    record at a skipped position is that of the step whose write was dropped."""
    n_pos = inputs.n_pos
    offset = getattr(recurrence, "read_offset", 0)
    want_delta = base.delta is not None
    out = base.output.clone()
    delta = base.delta.clone() if want_delta else None
    first = sources[0]
    state = (start_state(recurrence, inputs) if first == 0
             else states_at(recurrence, inputs, [first - 1], chunk_size, backend)[:, 0]).float()
    skip, p = set(sources), first
    while p < n_pos:
        if p in skip:
            res = recurrence.run(inputs.at(slice(p, p + 1)), initial_state=state, chunk_size=1, backend="reference",
                                 output_final_state=True, output_delta=want_delta,
                                 **previous_output(recurrence, out, p))
            after = res.final_state.float().clone()
            after[:, head] = state[:, head]
            step = res.output[:, 0].clone()
            if offset == 0:  # read after write: the read-out at p reads the state without p's write
                step[:, head] = recurrence.read(inputs.position(p), after,
                                                **previous_output(recurrence, out, p))[:, head].to(step.dtype)
            out[:, p] = step.to(out.dtype)
            if want_delta:
                delta[:, p] = res.delta[:, 0].to(delta.dtype)
            state, p = after, p + 1
            continue
        stop = min([s for s in sources if s > p], default=n_pos)
        res = recurrence.run(inputs.at(slice(p, stop)), initial_state=state, chunk_size=chunk_size, backend=backend,
                             output_final_state=True, output_delta=want_delta, **previous_output(recurrence, out, p))
        out[:, p:stop] = res.output.to(out.dtype)
        if want_delta:
            delta[:, p:stop] = res.delta.to(delta.dtype)
        state, p = res.final_state.float(), stop
    return out, delta


@contextmanager
def knocked_out(mixer, sources, head: int) -> Iterator[None]:
    """Inside this context ``mixer``'s runs read ``head``'s memory without the writes of ``sources``
    (:class:`WriteKnockout`); never active outside it. Not combined with ``expose_states`` on the same layer."""
    if not mixer.has_fast_weights:
        raise ValueError(f"a {mixer.label(mixer.cfg)} layer keeps no fast-weight memory to knock writes out of")
    if not isinstance(head, int) or isinstance(head, bool) or not 0 <= head < mixer.n_heads:
        raise ValueError(f"head must be an int in [0, {mixer.n_heads - 1}], got {head!r}")
    request = WriteKnockout(tuple(check_positions(sources, None)), head)
    if mixer.state_request is not None:
        raise RuntimeError("a write knockout cannot run inside expose_states (or another knockout) on the same layer")
    try:
        mixer.state_request = request
        yield
    finally:
        mixer.state_request = None
