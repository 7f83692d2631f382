"""Shared pieces of the recurrence kernels: the output record and argument validation.

Axis vocabulary (shared with the rest of the workbench): ``batch, pos, head, d_k, d_v, chunk``.
Every kernel takes ``q, k: [batch, pos, head, d_k]``, ``v: [batch, pos, head, d_v]`` and states
``S: [batch, head, d_k, d_v]`` (the fast-weight matrix; a key indexes a row, ``o_t = S_tᵀ q_t``).
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import torch

BACKENDS = ("reference", "chunk")


class RecurrenceOutput(NamedTuple):
    """What every recurrence kernel returns.

    output:        [batch, pos, head, d_v]          o_t = S_tᵀ q_t (read after write)
    final_state:   [batch, head, d_k, d_v] or None  S_{T-1}, if ``output_final_state``
    chunk_states:  [batch, n_chunks, head, d_k, d_v] or None, if ``output_chunk_states``:
                   entry c is the state *before* position c·chunk_size is written
                   (entry 0 is the initial state, zeros if none); n_chunks = ceil(pos / chunk_size)
    delta:         [batch, pos, head, d_v] or None  the value actually written at each position
                   (delta rule: u_t = β_t (v_t − (α_t S_{t-1})ᵀ k_t)), if ``output_delta``
    """

    output: torch.Tensor
    final_state: Optional[torch.Tensor] = None
    chunk_states: Optional[torch.Tensor] = None
    delta: Optional[torch.Tensor] = None


def check_backend(backend: str, allowed: tuple[str, ...] = BACKENDS) -> None:
    if backend not in allowed:
        raise ValueError(f"backend must be one of {allowed}, got {backend!r}")


def check_qkv(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[int, int, int, int, int]:
    """Validate ``[batch, pos, head, dim]`` inputs; return (batch, pos, head, d_k, d_v)."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 4:
            raise ValueError(
                f"{name} must have shape [batch, pos, head, dim] (4 dims), got {tuple(x.shape)}; "
                "add a batch axis with x.unsqueeze(0) or move the head axis with x.transpose(1, 2)"
            )
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if q.shape != k.shape:
        raise ValueError(f"q and k must have the same shape, got q {tuple(q.shape)} and k {tuple(k.shape)}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must share [batch, pos, head] with q, got v {tuple(v.shape)} and q {tuple(q.shape)}"
        )
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"q, k, v must share a dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if not (q.device == k.device == v.device):
        raise ValueError(f"q, k, v must be on one device, got {q.device}, {k.device}, {v.device}")
    b, t, h, dk = q.shape
    if t == 0:
        raise ValueError("the sequence is empty (pos = 0); pass at least one position")
    return b, t, h, dk, v.shape[-1]


def check_per_head(name: str, x: Optional[torch.Tensor], b: int, t: int, h: int, ref: torch.Tensor) -> None:
    """Validate a per-position, per-head scalar such as β or the log decay g: ``[batch, pos, head]``."""
    if x is None:
        return
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != (b, t, h):
        raise ValueError(f"{name} must have shape [batch, pos, head] = {(b, t, h)}, got {tuple(x.shape)}")
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but q is on {ref.device}")


def check_gate(g: Optional[torch.Tensor], b: int, t: int, h: int, dk: int, ref: torch.Tensor) -> None:
    """A log decay per head ``[batch, pos, head]`` or per key channel ``[batch, pos, head, d_k]``."""
    if g is not None and isinstance(g, torch.Tensor) and g.dim() == 4:
        if tuple(g.shape) != (b, t, h, dk):
            raise ValueError(f"a per-channel g must have shape [batch, pos, head, d_k] = {(b, t, h, dk)}, got "
                             f"{tuple(g.shape)}")
        if g.device != ref.device:
            raise ValueError(f"g is on {g.device} but q is on {ref.device}")
    else:
        try:
            check_per_head("g", g, b, t, h, ref)
        except ValueError as e:
            raise ValueError(f"{e} (or [batch, pos, head, d_k] = {(b, t, h, dk)} for a per-key-channel decay)") from None
    check_log_decay(g)


def check_log_decay(g: Optional[torch.Tensor]) -> None:
    """Log decays g = log α must be ≤ 0: finite, or −inf (a hard reset: forget everything). A positive g (α
    passed where log α is expected, or a patched ``hook_log_decay``) or a NaN would silently grow or poison
    the memory, so it is refused with the count and the worst value."""
    if g is None:
        return
    g = g.detach()
    bad = torch.isnan(g) | (g > 0)
    if bool(bad.any()):
        n = int(bad.sum())
        worst = "nan" if bool(torch.isnan(g).any()) else f"{float(g.max()):.4g}"
        raise ValueError(
            f"g holds log decays (log α ≤ 0; −inf is a hard reset), but {n} of {g.numel()} entries are positive or "
            f"NaN (worst: {worst}); pass log α, not α — e.g. g = torch.log(alpha) or −softplus(·)"
        )


def check_state(initial_state: Optional[torch.Tensor], b: int, h: int, dk: int, dv: int, ref: torch.Tensor) -> None:
    if initial_state is None:
        return
    if not isinstance(initial_state, torch.Tensor):
        raise TypeError(f"initial_state must be a torch.Tensor, got {type(initial_state).__name__}")
    if tuple(initial_state.shape) != (b, h, dk, dv):
        raise ValueError(
            f"initial_state must have shape [batch, head, d_k, d_v] = {(b, h, dk, dv)}, "
            f"got {tuple(initial_state.shape)}"
        )
    if initial_state.device != ref.device:
        raise ValueError(f"initial_state is on {initial_state.device} but q is on {ref.device}")


def check_reference_only(kernel: str, backend: str, why: str) -> None:
    """For a recurrence with no chunkwise form: ``backend`` must be ``"reference"``; ``why`` says what makes
    it sequential (never a silent switch to another backend)."""
    check_backend(backend)
    if backend != "reference":
        raise ValueError(f"{kernel} has no chunkwise form ({why}); pass backend='reference'")


def check_tensor(name: str, x, shape: tuple[int, ...], ref: torch.Tensor, axes: str = "", dtype: bool = False) -> None:
    """``x`` is a tensor of ``shape`` (named ``[axes]`` in the message) on ``ref``'s device (and of its dtype
    with ``dtype``); else TypeError / ValueError naming ``name``."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if tuple(x.shape) != tuple(shape):
        named = f"[{axes}] = " if axes else ""
        raise ValueError(f"{name} must have shape {named}{tuple(shape)}, got {tuple(x.shape)}")
    if x.device != ref.device:
        raise ValueError(f"{name} is on {x.device} but the inputs are on {ref.device}")
    if dtype and x.dtype != ref.dtype:
        raise ValueError(f"{name} must have the inputs' dtype {ref.dtype}, got {x.dtype}")


def check_chunk_size(chunk_size: int) -> None:
    if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int, got {chunk_size!r}")
