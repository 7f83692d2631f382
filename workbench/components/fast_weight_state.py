"""Fast-weight states at chosen positions, and state patches applied inside a mixer's forward.

``states_at`` reads W_t after the write at each requested position from the kernel's chunk-start
snapshots plus at most ``chunk_size`` reference steps, so memory is O(pos/C · d_key · d_v).

A :class:`StateRequest` on a mixer (set by ``HookedFastWeightLM.expose_states``) makes the mixer fire
``hook_state`` with those states; if a hook edits them, the edit is applied in one of two modes:
  - ``readout``: only the outputs at the patched positions change (o_t = W'_tᵀ q_t);
  - ``carry``:   the edited W_t is the state from which all later positions are recomputed
                 (one position per run: later states depend on the edit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..kernels import RecurrenceOutput, delta_rule, linear_attention

MODES = ("readout", "carry")


@dataclass(frozen=True)
class StateRequest:
    positions: tuple[int, ...]  # as given; negative positions count from the end
    mode: str = "readout"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not self.positions:
            raise ValueError("positions is empty; pass at least one position")
        for p in self.positions:
            if not isinstance(p, int) or isinstance(p, bool):
                raise ValueError(f"positions must be ints, got {p!r}")
        if self.mode == "carry" and len(self.positions) != 1:
            raise ValueError(
                "carry mode takes exactly one position (the states after it depend on the edit); "
                "patch one position per run, or use mode='readout'"
            )

    def resolve(self, n_pos: int) -> list[int]:
        out = []
        for p in self.positions:
            if not -n_pos <= p < n_pos:
                raise ValueError(f"state position {p} is outside the sequence of {n_pos} tokens")
            out.append(p % n_pos)
        return out


def run_kernel(rule: str, q, k, v, beta, g, normalize: bool, **kwargs) -> RecurrenceOutput:
    if rule == "delta":
        return delta_rule(q, k, v, beta, g=g, **kwargs)
    kwargs.pop("output_delta", None)
    return linear_attention(q, k, v, normalize=normalize, **kwargs)


def states_at(rule: str, q, k, v, beta, g, normalize: bool, positions: list[int], chunk_size: int,
              backend: str = "chunk") -> torch.Tensor:
    """States after the write at each position: ``[batch, n_positions, head, d_key, d_v]`` float32.

    q is the scaled query. With ``normalize`` (sum-normalised linear attention) the last value column
    is the normaliser z_t.
    """
    starts = run_kernel(rule, q, k, v, beta, g, normalize, chunk_size=chunk_size, backend=backend,
                        output_chunk_states=True).chunk_states
    out: list[Optional[torch.Tensor]] = [None] * len(positions)
    for c in sorted({p // chunk_size for p in positions}):
        want = [i for i, p in enumerate(positions) if p // chunk_size == c]
        lo = c * chunk_size
        sl = slice(lo, max(positions[i] for i in want) + 1)
        res = run_kernel(
            rule, q[:, sl], k[:, sl], v[:, sl], None if beta is None else beta[:, sl],
            None if g is None else g[:, sl], normalize, initial_state=starts[:, c], chunk_size=1,
            backend="reference", output_chunk_states=True, output_final_state=True,
        )
        after = torch.cat([res.chunk_states[:, 1:], res.final_state[:, None]], dim=1)
        for i in want:
            out[i] = after[:, positions[i] - lo]
    return torch.stack(out, dim=1)


def read_out(q_t: torch.Tensor, state: torch.Tensor, normalize: bool, eps: float = 1e-6) -> torch.Tensor:
    """o_t = W_tᵀ q_t for ``q_t: [batch, head, d_key]``, ``state: [batch, head, d_key, d_v]``."""
    o = torch.einsum("bhk,bhkv->bhv", q_t.float(), state.float())
    if normalize:
        o = o[..., :-1] / (o[..., -1:] + eps)
    return o


def apply_state_patch(
    rule: str, q, k, v, beta, g, normalize: bool, base: RecurrenceOutput, positions: list[int],
    states: torch.Tensor, mode: str, chunk_size: int, backend: str,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Output (and delta errors) of the layer when W at ``positions`` is replaced by ``states``."""
    out = base.output.clone()
    for i, p in enumerate(positions):
        out[:, p] = read_out(q[:, p], states[:, i], normalize).to(out.dtype)
    delta = base.delta
    p = positions[0]
    if mode == "carry" and p + 1 < q.shape[1]:
        sl = slice(p + 1, None)
        rest = run_kernel(
            rule, q[:, sl], k[:, sl], v[:, sl], None if beta is None else beta[:, sl],
            None if g is None else g[:, sl], normalize, initial_state=states[:, 0].float(),
            chunk_size=chunk_size, backend=backend, output_delta=rule == "delta",
        )
        out = torch.cat([out[:, : p + 1], rest.output], dim=1)
        if delta is not None:
            delta = torch.cat([delta[:, : p + 1], rest.delta], dim=1)
    return out, delta


def expose_and_patch(mixer, rule: str, q, k, v, beta, g, normalize: bool,
                     base: RecurrenceOutput) -> tuple[torch.Tensor, Optional[torch.Tensor], bool]:
    """Fire ``mixer.hook_state`` if states were requested; apply an edit. Returns (output, delta, patched)."""
    request: Optional[StateRequest] = mixer.state_request
    if request is None:
        return base.output, base.delta, False
    cfg = mixer.cfg
    positions = request.resolve(q.shape[1])
    states = states_at(rule, q, k, v, beta, g, normalize, positions, cfg.chunk_size, cfg.backend)
    version = states._version
    patched = mixer.hook_state(states)
    if patched is states and patched._version == version:
        return base.output, base.delta, False
    if not isinstance(patched, torch.Tensor) or patched.shape != states.shape:
        got = tuple(patched.shape) if isinstance(patched, torch.Tensor) else type(patched).__name__
        raise ValueError(f"a hook_state patch must keep the shape {tuple(states.shape)}, got {got}")
    out, delta = apply_state_patch(rule, q, k, v, beta, g, normalize, base, positions, patched,
                                   request.mode, cfg.chunk_size, cfg.backend)
    return out, delta, True
