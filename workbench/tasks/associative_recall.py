"""Associative recall: store key–value pairs, then answer queries for some of the keys.

    k1 v1 k2 v2 … kn vn   q1 a1 q2 a2 … qm am          (n = num_pairs, m = num_queries)

Token ids: keys are ``0 … num_keys−1``, values ``num_keys … num_keys+num_values−1``. Within a sequence the
keys are distinct (drawn without replacement); each value is drawn uniformly (with replacement), so a
model that ignores the context scores at best chance = ln(num_values), and one that copies a stored
value without matching keys about ln(num_pairs). Each of the ``num_queries`` queries is a stored key
drawn uniformly and independently (so no answer follows by elimination); it is followed by its bound
value aᵢ, and only those predictions (logits at qᵢ → aᵢ) are scored. ``seq_len = 2·(num_pairs + num_queries)``.
With ``num_queries=1`` this is the retrieval task of Schlag, Irie & Schmidhuber (2021).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig


@dataclass(frozen=True)
class AssociativeRecall(TaskConfig):
    NAME: ClassVar[str] = "associative_recall"

    num_pairs: int = 4
    num_keys: int = 16
    num_values: int = 16
    num_queries: int = 4

    def __post_init__(self) -> None:
        check_int_fields(self, ("num_pairs", "num_keys", "num_values", "num_queries"))
        if self.num_pairs > self.num_keys:
            raise ValueError(
                f"AssociativeRecall stores {self.num_pairs} distinct keys but has only num_keys={self.num_keys}; "
                "raise num_keys or lower num_pairs"
            )

    @property
    def d_vocab(self) -> int:
        return self.num_keys + self.num_values

    @property
    def vocab(self) -> tuple[str, ...]:
        """Token names by id: keys ``k0 … k{num_keys−1}``, then values ``v0 … v{num_values−1}``."""
        return tuple(f"k{i}" for i in range(self.num_keys)) + tuple(f"v{i}" for i in range(self.num_values))

    @property
    def seq_len(self) -> int:
        return 2 * (self.num_pairs + self.num_queries)

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """tokens ``[batch, pos]`` as in the module docstring; loss_mask ``[batch, pos-1]`` true at the queries."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        n, m, ctx = self.num_pairs, self.num_queries, 2 * self.num_pairs
        # distinct keys: the first n of a random permutation per sequence (argsort of uniform noise)
        noise = torch.rand(batch_size, self.num_keys, generator=generator)
        keys = noise.argsort(dim=-1, stable=True)[:, :n]  # [batch, n]
        values = torch.randint(self.num_keys, self.d_vocab, (batch_size, n), generator=generator)  # [batch, n]
        which = torch.randint(0, n, (batch_size, m), generator=generator)  # [batch, m]  queried pair indices
        tokens = torch.empty(batch_size, self.seq_len, dtype=torch.long)
        tokens[:, 0:ctx:2] = keys
        tokens[:, 1:ctx:2] = values
        tokens[:, ctx::2] = keys.gather(1, which)
        tokens[:, ctx + 1::2] = values.gather(1, which)
        loss_mask = torch.zeros(batch_size, self.seq_len - 1, dtype=torch.bool)
        loss_mask[:, ctx::2] = True  # the logits at each query predict its answer
        pairs = [[(2 * i, 2 * i + 1) for i in range(n)] for _ in range(batch_size)]
        return TaskBatch(tokens=tokens, loss_mask=loss_mask, pairs=pairs)
