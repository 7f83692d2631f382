"""What every task provides: seeded batches of token sequences and which predictions count."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Protocol, runtime_checkable

import torch


@dataclass
class TaskBatch:
    """tokens ``[batch, pos]`` (long); loss_mask ``[batch, pos-1]`` (bool): entry t marks the prediction
    of tokens[:, t+1] from logits[:, t]; pairs: per sequence, the (key_pos, value_pos) associations the
    sequence asks the model to store (for the recall probes), or None."""

    tokens: torch.Tensor
    loss_mask: torch.Tensor
    pairs: Optional[list[list[tuple[int, int]]]] = field(default=None)

    def __post_init__(self) -> None:
        b, t = self.tokens.shape
        if tuple(self.loss_mask.shape) != (b, t - 1):
            raise ValueError(f"loss_mask must be [batch, pos-1] = {(b, t - 1)}, got {tuple(self.loss_mask.shape)}")


class TaskConfig:
    """``to_dict`` of a task dataclass: ``{"name": NAME, **its fields}``, tuples as lists (what JSON reads
    back); :func:`workbench.tasks.task_from_dict` inverts it."""

    NAME: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        fields = dataclasses.asdict(self)
        return {"name": self.NAME, **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()}}


@runtime_checkable
class Task(Protocol):
    """A seeded source of :class:`TaskBatch` es: ``sample(batch_size, generator)`` must depend only on the
    generator's state. ``d_vocab`` and ``seq_len`` size the model."""

    d_vocab: int
    seq_len: int

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch: ...

    def to_dict(self) -> dict: ...
