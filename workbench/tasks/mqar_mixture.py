"""Training on several MQAR settings at once: each batch comes from one setting, chosen at random."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import TaskBatch, TaskConfig
from .mqar import MQAR


@dataclass(frozen=True)
class MQARMixture(TaskConfig):
    """A task drawing each batch from one of ``tasks`` (uniformly, with the batch's generator).
    ``batch_size`` counts sequences of the longest task; a task of length T gets
    ``batch_size · T_max // T`` sequences, so every batch holds the same number of tokens.
    ``tasks`` may be given as MQAR objects or as their ``to_dict()`` (as in a run config)."""

    NAME: ClassVar[str] = "mqar_mixture"

    tasks: tuple[MQAR, ...]

    def __post_init__(self) -> None:
        tasks = []
        for t in self.tasks:
            if isinstance(t, dict):
                fields = {k: v for k, v in t.items() if k != "name"}
                if t.get("name", "mqar") != "mqar":
                    raise ValueError(f"MQARMixture mixes MQAR tasks only, got a {t.get('name')!r} task")
                t = MQAR(**fields)
            if not isinstance(t, MQAR):
                raise ValueError(f"MQARMixture needs MQAR tasks, got {type(t).__name__}")
            tasks.append(t)
        if not tasks:
            raise ValueError("MQARMixture needs at least one MQAR task, e.g. tasks=[MQAR(seq_len=64, num_kv_pairs=4)]")
        vocab = {t.vocab_size for t in tasks}
        if len(vocab) != 1:
            raise ValueError(f"MQARMixture tasks must share one vocab_size, got {sorted(vocab)}")
        object.__setattr__(self, "tasks", tuple(tasks))

    @property
    def d_vocab(self) -> int:
        return self.tasks[0].vocab_size

    @property
    def vocab(self) -> tuple[str, ...]:
        """The token names of its MQAR tasks (they share one vocabulary)."""
        return self.tasks[0].vocab

    @property
    def seq_len(self) -> int:
        return max(t.seq_len for t in self.tasks)

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        task = self.tasks[int(torch.randint(len(self.tasks), (1,), generator=generator))]
        return task.sample(max(1, batch_size * self.seq_len // task.seq_len), generator)

    def to_dict(self) -> dict:
        return {"name": self.NAME, "tasks": [t.to_dict() for t in self.tasks]}
