"""A synthetic memorization task: canary sequences repeated at controlled rates among learnable text.

Background rows follow a seeded sparse Markov chain (each token has ``branching`` possible successors
with seeded random probabilities), so a model can learn shared structure and held-out perplexity
measures it. ``canaries_per_level`` canaries per entry of ``repetitions`` are fixed uniform-random
sequences of ``canary_len`` tokens (nothing but memorization can recite them). Each training row
holds canary i with probability ``repetitions[i] / n_sequences`` (else background only), written at
position ``offset`` over a background row: over a run of ``n_sequences`` rows (steps × batch size)
canary i appears ``repetitions[i]`` times in expectation; :func:`realized_repetitions` counts the
exact number in a seeded run. Every next-token prediction is scored.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig


@functools.lru_cache(maxsize=8)
def _transitions(vocab_size: int, branching: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed * 1_000_003 + 2)
    P = torch.zeros(vocab_size, vocab_size, dtype=torch.float64)
    for t in range(vocab_size):
        succ = torch.randperm(vocab_size, generator=g)[:branching]
        w = torch.rand(branching, generator=g, dtype=torch.float64) + 0.2
        P[t, succ] = w / w.sum()
    return P


@dataclass(frozen=True)
class Canaries(TaskConfig):
    NAME: ClassVar[str] = "canaries"

    vocab_size: int = 64
    seq_len: int = 32
    canary_len: int = 24
    repetitions: tuple[int, ...] = (1, 4, 16, 64)
    canaries_per_level: int = 4
    n_sequences: int = 32_000
    offset: int = 0
    branching: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "repetitions", tuple(self.repetitions))
        check_int_fields(self, ("vocab_size", "seq_len", "canary_len", "canaries_per_level", "n_sequences",
                                "branching"))
        if not self.repetitions or any(not isinstance(r, int) or r < 1 for r in self.repetitions):
            raise ValueError(f"Canaries.repetitions must be positive ints, got {self.repetitions!r}")
        if not isinstance(self.offset, int) or self.offset < 0 or self.offset + self.canary_len > self.seq_len:
            raise ValueError(f"Canaries needs 0 ≤ offset and offset + canary_len ≤ seq_len, got offset={self.offset}, "
                             f"canary_len={self.canary_len}, seq_len={self.seq_len}")
        if self.branching > self.vocab_size:
            raise ValueError(f"Canaries.branching ({self.branching}) cannot exceed vocab_size ({self.vocab_size})")
        if sum(self.repetitions) * self.canaries_per_level > self.n_sequences:
            raise ValueError("the canaries' repetitions add up to more rows than n_sequences; raise n_sequences")

    @property
    def d_vocab(self) -> int:
        return self.vocab_size

    @property
    def vocab(self) -> tuple[str, ...]:
        """Token names by id: ``t0 … t{V−1}`` (the states of the background chain; canaries use them too)."""
        return tuple(f"t{i}" for i in range(self.vocab_size))

    @property
    def n_canaries(self) -> int:
        return len(self.repetitions) * self.canaries_per_level

    # ------------------------------------------------------------------ fixed by the seed
    def canaries(self) -> torch.Tensor:
        """``[n_canaries, canary_len]`` uniform-random tokens; canary i has repetitions ``canary_table()``."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 1)
        return torch.randint(0, self.vocab_size, (self.n_canaries, self.canary_len), generator=g)

    def canary_table(self) -> pd.DataFrame:
        """One row per canary: ``canary, repetitions`` (expected count in a run of n_sequences rows)."""
        reps = [r for r in self.repetitions for _ in range(self.canaries_per_level)]
        return pd.DataFrame({"canary": range(self.n_canaries), "repetitions": reps})

    def transitions(self) -> torch.Tensor:
        """``[vocab, vocab]`` transition probabilities of the background chain (rows sum to 1)."""
        return _transitions(self.vocab_size, self.branching, self.seed).clone()

    def rates(self) -> torch.Tensor:
        """Per-row probability of each canary ``[n_canaries]``."""
        return torch.tensor(self.canary_table().repetitions.tolist(), dtype=torch.float64) / self.n_sequences

    # ------------------------------------------------------------------ sampling
    def background(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``[n, seq_len]`` rows of the Markov chain (first token uniform)."""
        cdf = _transitions(self.vocab_size, self.branching, self.seed).cumsum(1)
        tokens = torch.empty(n, self.seq_len, dtype=torch.long)
        tokens[:, 0] = torch.randint(0, self.vocab_size, (n,), generator=generator)
        u = torch.rand(n, self.seq_len - 1, generator=generator, dtype=torch.float64)
        for t in range(1, self.seq_len):  # inverse-CDF draw from row tokens[:, t-1]
            nxt = torch.searchsorted(cdf[tokens[:, t - 1]], u[:, t - 1, None].contiguous(), right=True)[:, 0]
            tokens[:, t] = nxt.clamp_max(self.vocab_size - 1)
        return tokens

    def _choose(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """Which canary each row holds (``n_canaries`` = none)."""
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        return torch.searchsorted(self.rates().cumsum(0), u, right=True)

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        tokens = self.background(batch_size, generator)
        which = self._choose(batch_size, generator)
        rows = (which < self.n_canaries).nonzero()[:, 0]
        tokens[rows, self.offset:self.offset + self.canary_len] = self.canaries()[which[rows]]
        return TaskBatch(tokens=tokens, loss_mask=torch.ones(batch_size, self.seq_len - 1, dtype=torch.bool))


def realized_repetitions(task: Canaries, steps: int, batch_size: int, seed: int) -> pd.DataFrame:
    """``canary_table()`` plus ``realized``: how often each canary occurs in the rows a run draws with
    ``task.sample(batch_size, g)`` ``steps`` times from ``g = Generator().manual_seed(seed)`` — the
    stream :func:`workbench.training.train` trains on (its data generator is seeded with TrainConfig.seed)."""
    g = torch.Generator().manual_seed(seed)
    counts = torch.zeros(task.n_canaries + 1, dtype=torch.long)
    for _ in range(steps):
        task.background(batch_size, g)  # advance the generator exactly as sample() does
        counts += torch.bincount(task._choose(batch_size, g), minlength=task.n_canaries + 1)
    return task.canary_table().assign(realized=counts[:-1].tolist())
