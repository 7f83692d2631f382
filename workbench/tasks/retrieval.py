"""The two synthetic retrieval settings of Schlag, Irie & Schmidhuber (2021), "Linear Transformers Are
Secretly Fast Weight Programmers", Sec. 6.1.

S = ``num_keys`` keys and S values. A sequence stores L (key, value) pairs, then asks for queries:

    setting 1 (capacity):  L = S, every key exactly once (a random permutation of the S keys), each bound
                           to a distinct value (a random permutation of the S values).
    setting 2 (updates):   L = 2S, keys and values drawn uniformly *with* replacement, so keys recur with
                           new values; the answer for a key is the value of its LAST occurrence.

``length`` overrides L (setting 1: L ≤ S distinct keys). The paper's code evaluates setting 2 on sequences
of length S (``length=S``), shorter than the 2S it trains on.

A query is drawn as in the paper: a stored position uniformly at random; its key is asked and the answer
is the value bound at that key's last occurrence (so in setting 2 keys that recur more are asked more).
``sample(..., all_queries=True)`` instead asks every distinct stored key once, in increasing key id (the
paper's evaluation); in setting 2 the number of distinct keys varies, so the query axis is padded to S
and ``query_mask`` marks the real queries.

Token form (for language models and the recall probes), with key ids ``0 … S−1`` and value tokens
``S … 2S−1``:   k₁ v₁ k₂ v₂ … k_L v_L  q₁ a₁ … q_m a_m  — the logits at qⱼ are scored (loss_mask).
The retrieval model of the paper reads the structured fields of :class:`RetrievalBatch` instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig


@dataclass(kw_only=True)
class RetrievalBatch(TaskBatch):
    """A :class:`TaskBatch` plus the structured form (value *indices* 0 … S−1, not tokens):

    keys, values      ``[batch, pos]``    long: the stored pairs (pos = L)
    queries, targets  ``[batch, query]``  long: asked key ids and their answers' value indices
    target_pos        ``[batch, query]``  long: the store position holding each answer (its last occurrence)
    query_mask        ``[batch, query]``  bool: False marks padding (only in setting 2 with all_queries)
    ``pairs`` lists, per sequence, the token positions (2p, 2p+1) of every answer position p, in order of p.
    """

    keys: torch.Tensor
    values: torch.Tensor
    queries: torch.Tensor
    targets: torch.Tensor
    target_pos: torch.Tensor
    query_mask: torch.Tensor


def last_occurrence(keys: torch.Tensor, num_keys: int) -> torch.Tensor:
    """``[batch, num_keys]``: the last position of each key id in ``keys: [batch, pos]``, −1 if absent."""
    b, length = keys.shape
    pos = torch.arange(length).expand(b, length)
    last = torch.full((b, num_keys), -1, dtype=torch.long)
    return last.scatter_reduce(1, keys, pos, reduce="amax", include_self=True)


@dataclass(frozen=True)
class Retrieval(TaskConfig):
    NAME: ClassVar[str] = "retrieval"

    num_keys: int = 20
    setting: int = 1
    num_queries: int = 1
    length: Optional[int] = None

    def __post_init__(self) -> None:
        check_int_fields(self, ("num_keys", "num_queries"))
        if self.num_keys < 2:
            raise ValueError(f"Retrieval needs at least 2 keys, got num_keys={self.num_keys}")
        if self.setting not in (1, 2):
            raise ValueError(
                f"Retrieval.setting must be 1 (each key once: capacity) or 2 (keys re-bound: the last value "
                f"counts), got {self.setting!r}"
            )
        if self.length is not None:
            if not isinstance(self.length, int) or isinstance(self.length, bool) or self.length < 1:
                raise ValueError(f"Retrieval.length must be a positive int or None, got {self.length!r}")
            if self.setting == 1 and self.length > self.num_keys:
                raise ValueError(f"setting 1 stores each key at most once: length ≤ num_keys = {self.num_keys}, "
                                 f"got {self.length}; use setting=2 for longer sequences")

    @property
    def num_values(self) -> int:
        return self.num_keys

    @property
    def num_stores(self) -> int:
        """L, the number of stored (key, value) pairs per sequence: ``length``, or S (setting 1) / 2S (setting 2)."""
        if self.length is not None:
            return self.length
        return self.num_keys if self.setting == 1 else 2 * self.num_keys

    @property
    def d_vocab(self) -> int:
        return self.num_keys + self.num_values

    @property
    def seq_len(self) -> int:
        """Token length with ``num_queries`` queries (with ``all_queries`` it is 2·(L + S))."""
        return 2 * (self.num_stores + self.num_queries)

    def sample(self, batch_size: int, generator: torch.Generator, all_queries: bool = False) -> RetrievalBatch:
        """A batch as in the module docstring; depends only on the generator's state."""
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        S, L = self.num_keys, self.num_stores
        if self.setting == 1:  # (truncated) permutations: argsort of uniform noise, one per sequence
            keys = torch.rand(batch_size, S, generator=generator).argsort(dim=-1, stable=True)[:, :L]
            values = torch.rand(batch_size, S, generator=generator).argsort(dim=-1, stable=True)[:, :L]
        else:
            keys = torch.randint(0, S, (batch_size, L), generator=generator)
            values = torch.randint(0, S, (batch_size, L), generator=generator)
        last = last_occurrence(keys, S)  # [batch, S]
        if all_queries:
            present = last >= 0
            order = (~present).long().argsort(dim=-1, stable=True)  # present key ids first, ascending
            queries, query_mask = order, present.gather(1, order)
            queries = torch.where(query_mask, queries, queries[:, :1])  # pad with the first real query
        else:
            picked = torch.randint(0, L, (batch_size, self.num_queries), generator=generator)
            queries = keys.gather(1, picked)
            query_mask = torch.ones_like(queries, dtype=torch.bool)
        target_pos = last.gather(1, queries)
        targets = values.gather(1, target_pos)
        m = queries.shape[1]
        tokens = torch.empty(batch_size, 2 * (L + m), dtype=torch.long)
        tokens[:, 0:2 * L:2] = keys
        tokens[:, 1:2 * L:2] = values + S
        tokens[:, 2 * L::2] = queries
        tokens[:, 2 * L + 1::2] = targets + S
        loss_mask = torch.zeros(batch_size, tokens.shape[1] - 1, dtype=torch.bool)
        loss_mask[:, 2 * L::2] = query_mask
        answer_pos = [sorted(p for p in row if p >= 0) for row in last.tolist()]
        pairs = [[(2 * p, 2 * p + 1) for p in row] for row in answer_pos]
        return RetrievalBatch(
            tokens=tokens, loss_mask=loss_mask, pairs=pairs, keys=keys, values=values, queries=queries,
            targets=targets, target_pos=target_pos, query_mask=query_mask,
        )
