"""Did a hook change what it was given? One home for the test every mixer needs.

A TransformerLens hook may return a new tensor or edit its input in place; both are patches. Mixers ask
:func:`fire` and then act on a patch (re-read the memory from patched writes, apply a state patch), or call
:func:`read_only` for a quantity computed inside a recurrence, where a patch could not reach the run and is
refused with the mixer's own explanation rather than silently ignored.
"""

from __future__ import annotations

import torch
from transformer_lens.hook_points import HookPoint


def fire(hook: HookPoint, x: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """Run ``hook`` on ``x``; return what it returned and whether that is a patch (a new tensor, or ``x``
    edited in place)."""
    version = x._version
    out = hook(x)
    return out, out is not x or x._version != version


def read_only(hook: HookPoint, x: torch.Tensor, why: str) -> None:
    """Fire ``hook`` on ``x`` for reading; a patch raises ValueError naming the hook, followed by ``why``
    (what the quantity is and what to patch instead)."""
    if fire(hook, x)[1]:
        raise ValueError(f"{hook.name or 'this hook'} {why}")
