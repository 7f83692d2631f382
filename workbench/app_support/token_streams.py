"""A stream of token batches for the analyses that average over many sequences (outliers, K-FAC).

A :class:`TokenStream` is either the sidebar's one sequence or seeded batches of a task; it holds the
tokens as nested tuples, so it is hashable and results cache under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Optional

import torch

from .sequences import TokenSequence, default_task, fit_task

MAX_STREAM_TOKENS = 32_768  # the pages run on a shared CPU; bigger streams belong in a notebook


@dataclass(frozen=True)
class TokenStream:
    """``batches[i]``: one ``[batch, pos]`` block of token ids (all batches of one length); ``scored[i]``:
    its task's loss mask ``[batch, pos-1]`` (which next-token predictions count), None when all do."""

    batches: tuple[tuple[tuple[int, ...], ...], ...]
    label: str
    scored: Optional[tuple[tuple[tuple[bool, ...], ...], ...]] = None

    def tensors(self) -> list[torch.Tensor]:
        """The batches as ``[batch, pos]`` long tensors."""
        return [torch.tensor(b, dtype=torch.long) for b in self.batches]

    def masks(self) -> list[torch.Tensor]:
        """The loss masks as ``[batch, pos-1]`` bool tensors (all True when the stream has none)."""
        if self.scored is None:
            return [torch.ones(len(b), len(b[0]) - 1, dtype=torch.bool) for b in self.batches]
        return [torch.tensor(m, dtype=torch.bool).reshape(len(b), len(b[0]) - 1)
                for m, b in zip(self.scored, self.batches)]

    def stacked(self) -> torch.Tensor:
        """Every sequence of the stream, ``[batch, pos]`` (batches concatenated)."""
        return torch.cat(self.tensors(), 0)

    @property
    def n_sequences(self) -> int:
        return sum(len(b) for b in self.batches)

    @property
    def seq_len(self) -> int:
        return len(self.batches[0][0])

    @property
    def n_tokens(self) -> int:
        return self.n_sequences * self.seq_len


def sequence_stream(seq: TokenSequence) -> TokenStream:
    """The sidebar's sequence as a stream of one batch of one sequence."""
    return TokenStream(((tuple(seq.tokens),),), f"the {seq.source} ({len(seq)} tokens)")


def stream_task(cfg, seq: TokenSequence, recipe_task: Optional[dict] = None) -> Optional[dict]:
    """The task to draw batches from: the one the sidebar's sequence came from, else the model's own
    (its recipe), else an MQAR sized to the model; None when no task fits the model. A stream has one
    sequence length, so an ``mqar_mixture`` is represented by its longest setting."""
    if seq.task_json is not None:
        task = json.loads(seq.task_json)
    else:
        try:
            task = default_task(cfg, recipe_task)
        except ValueError:
            return None
    if task.get("name") == "mqar_mixture" and task.get("tasks"):
        task = max(task["tasks"], key=lambda t: t.get("seq_len", 0))
        task = {"name": "mqar", **{k: v for k, v in task.items() if k != "name"}}
    return task


def fitting_batch_size(cfg, task: dict, n_batches: int, wanted: int) -> int:
    """``wanted``, or fewer sequences per batch so that ``n_batches`` batches stay within the app's tokens."""
    return max(1, min(wanted, MAX_STREAM_TOKENS // (max(1, n_batches) * fit_task(cfg, task).seq_len)))


def task_stream(cfg, task: dict, n_batches: int, batch_size: int, seed: int = 0) -> TokenStream:
    """``n_batches`` batches of ``batch_size`` sequences of ``task``, drawn from one generator seeded
    with ``seed``; ValueError with the fix when the sizes are bad or the model cannot run the task."""
    for name, v in (("the number of batches", n_batches), ("the batch size", batch_size)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"the seed must be a non-negative integer, got {seed!r}")
    obj = fit_task(cfg, task)
    if n_batches * batch_size * obj.seq_len > MAX_STREAM_TOKENS:
        raise ValueError(f"{n_batches} batches × {batch_size} sequences × {obj.seq_len} tokens is more than the "
                         f"app's {MAX_STREAM_TOKENS:,} tokens: take fewer or smaller batches")
    g = torch.Generator().manual_seed(seed)
    drawn = [obj.sample(batch_size, g) for _ in range(n_batches)]
    batches = tuple(tuple(map(tuple, b.tokens.tolist())) for b in drawn)
    every = all(bool(b.loss_mask.all()) for b in drawn)
    scored = None if every else tuple(tuple(map(tuple, b.loss_mask.tolist())) for b in drawn)
    name = task.get("name", "task")
    return TokenStream(batches, f"{n_batches} × {batch_size} {name} sequences of {obj.seq_len} tokens (seed {seed})",
                       scored)
