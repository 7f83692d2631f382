"""Fast-weight states at chosen positions, and state patches applied inside a mixer's forward.

Every fast-weight mixer owns a :class:`Recurrence` (``run`` over a sequence from an optional initial
state, ``read`` of a state at one position). On that alone this module builds, for any memory:

``states_at`` reads W_t after the write at each requested position from the recurrence's chunk-start
snapshots plus at most ``chunk_size`` reference steps (or, for a chunk with one requested position, one run of
the recurrence's own backend from the snapshot to it), so memory is O(pos/C · d_k · d_v).

A :class:`StateRequest` on a mixer (set by ``HookedFastWeightLM.expose_states``) makes the mixer fire
``hook_state`` with those states; if a hook edits them, the edit is applied in one of two modes:
  - ``readout``: only the outputs that read the patched states change (o_t = read(W'_t, inputs_t); for a
                 read-before-write recurrence, ``read_offset = 1``, W'_t is read by o_{t+1});
  - ``carry``:   the edited W_t is the state from which all later positions are recomputed
                 (one position per run: later states depend on the edit).

Recurrences that feed back their own output. Some memories (the recurrent fast weight programmers of
Irie et al. 2021) compute position t's inputs from the previous output y_{t-1}, so a fast-weight matrix
alone cannot restart them. Such a :class:`Recurrence` sets ``feeds_back_output = True``; ``run`` then
takes ``previous_output`` (y just before the first position; None: zeros, the start of a sequence) and
``read`` takes ``previous_output`` (y_{t-1}). The machinery here passes it generically: ``states_at``
restarts chunk c from its snapshot with the run's own output at c·C − 1; a ``readout`` patch reads with
the unpatched y_{t-1}; a ``carry`` patch restarts after t from the patched state and the *patched*
read-out y_t. Anything else a recurrence must carry (a second fast matrix, a cell state) goes into its
state tensor with a layout its module documents. Recurrences without the flag are called exactly as
before.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping, Optional, Protocol, runtime_checkable

import torch
from jaxtyping import Float

from ..kernels import RecurrenceOutput
from .hook_edits import fire

MODES = ("readout", "carry")


@dataclass(frozen=True)
class RecurrenceInputs:
    """The named tensors a recurrence consumes, each ``[batch, pos, ...]`` (or None when unused).

    The built-in recurrences read ``q [batch, pos, head, d_k]`` (already scaled), ``k [batch, pos, head,
    d_k]``, ``v [batch, pos, head, d_v]``, ``beta`` and ``g`` ``[batch, pos, head]``; a new memory may
    name its own. ``inputs.q`` reads a field; ``inputs.at(slice)`` cuts every field along ``pos``.
    """

    fields: Mapping[str, Optional[torch.Tensor]]

    def __getattr__(self, name: str) -> Optional[torch.Tensor]:
        fields = object.__getattribute__(self, "fields")
        if name in fields:
            return fields[name]
        raise AttributeError(f"these recurrence inputs have no field {name!r} (fields: {sorted(fields)})")

    @property
    def n_pos(self) -> int:
        return next(t for t in self.fields.values() if t is not None).shape[1]

    def at(self, sl: slice) -> "RecurrenceInputs":
        return RecurrenceInputs({n: None if t is None else t[:, sl] for n, t in self.fields.items()})

    def position(self, p: int) -> dict[str, Optional[torch.Tensor]]:
        """Every field at position ``p`` (the ``pos`` axis removed)."""
        return {n: None if t is None else t[:, p] for n, t in self.fields.items()}


@runtime_checkable
class Recurrence(Protocol):
    """A fast-weight recurrence. States are ``[batch, head, d_k, d_v]`` float32.

    Optional attribute ``feeds_back_output`` (default False): True when position t's inputs depend on the
    previous output y_{t-1}; ``run`` and ``read`` then also take ``previous_output`` (module docstring).

    ``read_offset`` (optional attribute, default 0): 0 when o_t is read from W_t, the state after the write
    at t (read after write, every built-in memory); 1 when o_t is read from W_{t-1}, before t's write
    (the self-referential weight matrix), so the state after the write at t is first read at t+1.
    """

    def run(self, inputs: RecurrenceInputs, *, initial_state: Optional[torch.Tensor] = None,
            chunk_size: int = 64, backend: str = "chunk", output_final_state: bool = False,
            output_chunk_states: bool = False, output_delta: bool = False) -> RecurrenceOutput:
        """Outputs ``[batch, pos, head, d_out]`` (and the requested states / per-position writes)."""

    def read(self, inputs_t: dict[str, Optional[torch.Tensor]], state: torch.Tensor) -> torch.Tensor:
        """The output at one position ``[batch, head, d_out]`` read from ``state`` with that position's inputs."""

    def effective_attention(self, inputs: RecurrenceInputs) -> torch.Tensor:
        """``[batch, head, pos, pos]`` A with output = A · v, or raise ``NotDefinedForMixer``."""


def run_steps(write: Callable, read: Callable, inputs: RecurrenceInputs, initial_state: torch.Tensor,
              chunk_size: int, output_final_state: bool = False, output_chunk_states: bool = False
              ) -> RecurrenceOutput:
    """A reference loop for a recurrence given by one step: ``state = write(state, inputs_t)`` then
    ``o_t = read(inputs_t, state)`` (read after write). Snapshots every ``chunk_size`` steps."""
    state, outs, snaps = initial_state.float(), [], []
    for t in range(inputs.n_pos):
        if t % chunk_size == 0:
            snaps.append(state)
        x_t = inputs.position(t)
        state = write(state, x_t)
        outs.append(read(x_t, state))
    return RecurrenceOutput(torch.stack(outs, 1), state if output_final_state else None,
                            torch.stack(snaps, 1) if output_chunk_states else None)


def feeds_back_output(recurrence: Recurrence) -> bool:
    """Whether ``recurrence`` needs the previous output to continue (see the module docstring)."""
    return bool(getattr(recurrence, "feeds_back_output", False))


def previous_output(recurrence: Recurrence, output: torch.Tensor, p: int) -> dict[str, Optional[torch.Tensor]]:
    """Keyword arguments that continue ``recurrence`` at position ``p`` of a run with outputs ``output
    [batch, pos, head, d_out]``: ``{"previous_output": y_{p-1}}`` (None at p = 0) for a recurrence that
    feeds back its output, ``{}`` for any other."""
    if not feeds_back_output(recurrence):
        return {}
    return {"previous_output": None if p == 0 else output[:, p - 1]}


@dataclass(frozen=True)
class StateRequest:
    positions: tuple[int, ...]  # as given; negative positions count from the end
    mode: str = "readout"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode == "carry" and len(self.positions) != 1:
            raise ValueError(
                "carry mode takes exactly one position (the states after it depend on the edit); "
                "patch one position per run, or use mode='readout'"
            )
        check_positions(self.positions, None)

    def resolve(self, n_pos: int) -> list[int]:
        return check_positions(self.positions, n_pos)


def check_positions(positions, n_pos: Optional[int]) -> list[int]:
    """Positions (an int, a list of ints or a tensor) as ints in [0, n_pos); negative ones count from the
    end. With ``n_pos`` None only the types are checked. ValueError names the bad position."""
    if isinstance(positions, torch.Tensor):
        positions = positions.tolist()
    if isinstance(positions, int) and not isinstance(positions, bool):
        positions = [positions]
    try:
        positions = list(positions)
    except TypeError:
        raise ValueError(f"positions must be an int or a list of ints, got {positions!r}") from None
    if not positions:
        raise ValueError("positions is empty; pass at least one position")
    out = []
    for p in positions:
        if not isinstance(p, int) or isinstance(p, bool):
            raise ValueError(f"positions must be ints, got {p!r}")
        if n_pos is not None:
            if not -n_pos <= p < n_pos:
                raise ValueError(f"position {p} is outside the sequence of {n_pos} tokens (valid: 0..{n_pos - 1})")
            p %= n_pos
        out.append(p)
    return out


# From this many steps on, one run of the chunk kernel to a single wanted position (≈ 0.8 ms at 4 heads of 64×64)
# beats the reference loop's steps (≈ 66 µs each) from the chunk start (benchmarks/bench_kernels.py, fast_weights).
_KERNEL_FROM = 16


def states_at(recurrence: Recurrence, inputs: RecurrenceInputs, positions: list[int], chunk_size: int,
              backend: str = "chunk") -> Float[torch.Tensor, "batch n_positions head d_k d_v"]:
    """States after the write at each position (float32)."""
    full = recurrence.run(inputs, chunk_size=chunk_size, backend=backend, output_chunk_states=True)
    starts = full.chunk_states
    out: list[Optional[torch.Tensor]] = [None] * len(positions)
    for c in sorted({p // chunk_size for p in positions}):
        want = [i for i, p in enumerate(positions) if p // chunk_size == c]
        lo = c * chunk_size
        ends = {positions[i] for i in want}
        if len(ends) == 1 and next(iter(ends)) - lo + 1 >= _KERNEL_FROM:  # one state: the run's own backend
            hi = next(iter(ends)) + 1
            res = recurrence.run(inputs.at(slice(lo, hi)), initial_state=starts[:, c], chunk_size=chunk_size,
                                 backend=backend, output_final_state=True, **previous_output(recurrence, full.output, lo))
            for i in want:
                out[i] = res.final_state
            continue
        res = recurrence.run(inputs.at(slice(lo, max(positions[i] for i in want) + 1)), initial_state=starts[:, c],
                             chunk_size=1, backend="reference", output_chunk_states=True, output_final_state=True,
                             **previous_output(recurrence, full.output, lo))
        after = torch.cat([res.chunk_states[:, 1:], res.final_state[:, None]], dim=1)
        for i in want:
            out[i] = after[:, positions[i] - lo]
    return torch.stack(out, dim=1)


def start_state(recurrence: Recurrence, inputs: RecurrenceInputs) -> Float[torch.Tensor, "batch head d_k d_v"]:
    """The state before the first write, W_{-1} (float32): zeros for a memory that starts empty, the learned
    start of one that does not (the self-referential weight matrix starts from its slow weights W_0)."""
    first = recurrence.run(inputs.at(slice(0, 1)), chunk_size=1, backend="reference", output_chunk_states=True)
    return first.chunk_states[:, 0].float()


def apply_state_patch(recurrence: Recurrence, inputs: RecurrenceInputs, base: RecurrenceOutput,
                      positions: list[int], states: torch.Tensor, mode: str, chunk_size: int, backend: str
                      ) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Output (and per-position writes) of the layer when W at ``positions`` is replaced by ``states``.
    A recurrence that feeds back its output reads with the unpatched y_{p-1} and, in ``carry`` mode,
    continues from the patched state and the patched read-out y_p."""
    out = base.output.clone()
    offset = getattr(recurrence, "read_offset", 0)  # 1: W_t is read at t+1 (read before write)
    for i, p in enumerate(positions):
        if p + offset < inputs.n_pos:
            out[:, p + offset] = recurrence.read(inputs.position(p + offset), states[:, i],
                                                 **previous_output(recurrence, base.output, p + offset)).to(out.dtype)
    delta = base.delta
    p = positions[0]
    if mode == "carry" and p + 1 < inputs.n_pos:
        rest = recurrence.run(inputs.at(slice(p + 1, None)), initial_state=states[:, 0].float(),
                              chunk_size=chunk_size, backend=backend, output_delta=delta is not None,
                              **previous_output(recurrence, out, p + 1))
        out = torch.cat([out[:, : p + 1], rest.output], dim=1)
        if delta is not None:
            delta = torch.cat([delta[:, : p + 1], rest.delta], dim=1)
    return out, delta


def expose_and_patch(mixer, inputs: RecurrenceInputs, base: RecurrenceOutput
                     ) -> tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """Fire ``mixer.hook_state`` if states were requested; apply an edit. Returns (output, delta, patched)."""
    request: Optional[StateRequest] = mixer.state_request
    if request is None:
        return base.output, base.delta, False
    if not isinstance(request, StateRequest):  # another request on the state, e.g. a write knockout (.knockout)
        out, delta = request.apply(mixer, inputs, base)
        return out, delta, True
    cfg = mixer.model_cfg
    positions = request.resolve(inputs.n_pos)
    states = states_at(mixer.recurrence, inputs, positions, cfg.chunk_size, cfg.backend)
    patched, edited = fire(mixer.hook_state, states)
    if not edited:
        return base.output, base.delta, False
    if not isinstance(patched, torch.Tensor) or patched.shape != states.shape:
        got = tuple(patched.shape) if isinstance(patched, torch.Tensor) else type(patched).__name__
        raise ValueError(f"a hook_state patch must keep the shape {tuple(states.shape)}, got {got}")
    out, delta = apply_state_patch(mixer.recurrence, inputs, base, positions, patched, request.mode,
                                   cfg.chunk_size, cfg.backend)
    return out, delta, True
