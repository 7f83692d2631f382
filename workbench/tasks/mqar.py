"""Multi-query associative recall (MQAR; Arora, Eyuboglu et al. 2024, "Zoology"), as a next-token task.

A sequence first lists ``num_kv_pairs`` key–value pairs ``k1 v1 k2 v2 …`` (keys drawn without
replacement from [1, V/2), values from [V/2, V)). Each key is then queried once, at an even offset
2·gap after the context, with gaps drawn without replacement from p(gap = i) ∝ a·(i+1)^(a−1) (power law,
a = ``power_a``; small a = short gaps favoured); the bound value follows the query as the next token,
and only those answers are scored. Every other position holds a random token from the whole
vocabulary (``random_non_queries``) or 0. Needs ``seq_len`` even, V > seq_len and 4·kv ≤ seq_len.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import TaskBatch, TaskConfig


@dataclass(frozen=True)
class MQAR(TaskConfig):
    NAME: ClassVar[str] = "mqar"

    vocab_size: int = 64
    seq_len: int = 32
    num_kv_pairs: int = 4
    power_a: float = 0.01
    random_non_queries: bool = True

    def __post_init__(self) -> None:
        if self.seq_len % 2:
            raise ValueError(f"MQAR seq_len must be even, got {self.seq_len}")
        if self.vocab_size <= self.seq_len:
            raise ValueError(f"MQAR needs vocab_size > seq_len, got {self.vocab_size} ≤ {self.seq_len}")
        if self.num_kv_pairs < 1 or 4 * self.num_kv_pairs > self.seq_len:
            raise ValueError(f"MQAR needs 1 ≤ num_kv_pairs and 4·num_kv_pairs ≤ seq_len, got {self.num_kv_pairs}")
        if self.num_kv_pairs > self.vocab_size // 2 - 1:
            raise ValueError(f"MQAR has only {self.vocab_size // 2 - 1} keys for {self.num_kv_pairs} pairs")
        if not self.power_a > 0:
            raise ValueError(f"MQAR power_a must be positive, got {self.power_a}")

    @property
    def d_vocab(self) -> int:
        return self.vocab_size

    @property
    def vocab(self) -> tuple[str, ...]:
        """Token names by id: ``_`` (0, the filler), keys ``k1 … k{V/2−1}`` (ids 1 … V/2−1), values ``v0 … v{V/2−1}``
        (ids V/2 … V−1, numbered from the first value)."""
        half = self.vocab_size // 2
        return ("_",) + tuple(f"k{i}" for i in range(1, half)) + tuple(f"v{i}" for i in range(self.vocab_size - half))

    def gap_probabilities(self) -> torch.Tensor:
        """p(gap = i) for i = 0 … space−1, space = (seq_len − 2·kv) // 2."""
        space = (self.seq_len - 2 * self.num_kv_pairs) // 2
        a = self.power_a
        p = a * torch.arange(1, space + 1, dtype=torch.float64) ** (a - 1)
        return p / p.sum()

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        n, half, T = self.num_kv_pairs, self.vocab_size // 2, self.seq_len
        ctx = 2 * n
        keys = torch.stack([torch.randperm(half - 1, generator=generator)[:n] + 1 for _ in range(batch_size)])
        values = torch.stack([torch.randperm(self.vocab_size - half, generator=generator)[:n] + half
                              for _ in range(batch_size)])
        p = self.gap_probabilities().expand(batch_size, -1)
        gaps = torch.multinomial(p, n, replacement=False, generator=generator)  # [batch, n]
        if self.random_non_queries:
            tokens = torch.randint(0, self.vocab_size, (batch_size, T), generator=generator)
        else:
            tokens = torch.zeros(batch_size, T, dtype=torch.long)
        tokens[:, 0:ctx:2] = keys
        tokens[:, 1:ctx:2] = values
        qpos = ctx + 2 * gaps  # query positions; the answer follows at qpos + 1 < T
        tokens.scatter_(1, qpos, keys)
        tokens.scatter_(1, qpos + 1, values)
        mask = torch.zeros(batch_size, T - 1, dtype=torch.bool)
        mask.scatter_(1, qpos, True)
        pairs = [[(2 * i, 2 * i + 1) for i in range(n)] for _ in range(batch_size)]
        return TaskBatch(tokens=tokens, loss_mask=mask, pairs=pairs)
