"""Real text with canaries injected at exact repetition counts and positions: a memorization benchmark.

The training set is a fixed list of ``n_rows`` rows of ``seq_len`` tokens, each a window of the
training documents of :class:`~workbench.tasks.text.TextLM` at a seeded random start. The canaries are
``canaries_per_level`` uniform-random token sequences of ``canary_len`` tokens for every pair
(repetition count r in ``repetitions``, position p in ``positions``): such a canary is written over
exactly r distinct rows, at tokens ``[p, p + canary_len)`` of each (position 0 is the start of the
training context). A row holds at most one canary; which rows is a seeded permutation, so the
occurrences are spread over the run. The validation documents are never touched.

Training sees the rows in order (:meth:`TextCanaries.train_batch`, one slice of ``batch_size`` rows
per step, passed to :func:`workbench.training.train` as ``batches``), so with
``n_rows = steps × batch_size`` every canary is seen exactly r times. :meth:`TextCanaries.sample`
draws rows uniformly from the same training set (the Task protocol: K-FAC statistics, training-set
loss). Everything is a function of the config; the config is frozen and JSON round-trippable.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import pandas as pd
import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig
from .text import TOKENIZERS, TextData, text_data


@functools.lru_cache(maxsize=4)
def _layout(task: "TextCanaries") -> tuple[torch.Tensor, torch.Tensor]:
    """(window start of every row ``[n_rows]``, canary of every row ``[n_rows]``, −1 = none)."""
    n_train = len(task.data.train_ids)
    g = torch.Generator().manual_seed(task.seed * 1_000_003 + 3)
    starts = torch.randint(0, n_train - task.seq_len + 1, (task.n_rows,), generator=g)
    reps = torch.tensor(task.canary_table().repetitions.tolist())
    slots = torch.repeat_interleave(torch.arange(task.n_canaries), reps)  # canary i, r_i times
    which = torch.full((task.n_rows,), -1, dtype=torch.long)
    which[torch.randperm(task.n_rows, generator=g)[:len(slots)]] = slots
    return starts, which


@dataclass(frozen=True)
class TextCanaries(TaskConfig):
    NAME: ClassVar[str] = "text_canaries"

    corpus: str = "python-topics"
    tokenizer: str = "bpe"
    vocab_size: int = 1024
    seq_len: int = 128
    val_fraction: float = 0.1
    canary_len: int = 32
    repetitions: tuple[int, ...] = (1, 4, 16, 64)
    positions: tuple[int, ...] = (0, 64)
    canaries_per_level: int = 4
    n_rows: int = 16_000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "repetitions", tuple(self.repetitions))
        object.__setattr__(self, "positions", tuple(self.positions))
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"TextCanaries.tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.tokenizer == "bytes" and self.vocab_size != 256:
            object.__setattr__(self, "vocab_size", 256)
        check_int_fields(self, ("seq_len", "canary_len", "canaries_per_level", "n_rows"))
        if not self.repetitions or any(not isinstance(r, int) or isinstance(r, bool) or r < 1
                                       for r in self.repetitions):
            raise ValueError(f"TextCanaries.repetitions must be positive ints, got {self.repetitions!r}")
        if not self.positions or any(not isinstance(p, int) or isinstance(p, bool) or p < 0 for p in self.positions):
            raise ValueError(f"TextCanaries.positions must be ints ≥ 0, got {self.positions!r}")
        if max(self.positions) + self.canary_len > self.seq_len:
            raise ValueError(f"a canary at position {max(self.positions)} of length {self.canary_len} does not fit in "
                             f"seq_len = {self.seq_len}; lower the position or raise seq_len")
        needed = sum(self.repetitions) * len(self.positions) * self.canaries_per_level
        if needed > self.n_rows:
            raise ValueError(f"the canaries need {needed} rows (one canary per row) but n_rows = {self.n_rows}; "
                             "raise n_rows")

    # ------------------------------------------------------------------ the text
    @property
    def data(self) -> TextData:
        return text_data(self.corpus, self.tokenizer, self.vocab_size, self.val_fraction)

    @property
    def d_vocab(self) -> int:
        return self.data.tokenizer.vocab_size

    @property
    def n_canaries(self) -> int:
        return len(self.repetitions) * len(self.positions) * self.canaries_per_level

    # ------------------------------------------------------------------ the canaries
    def canary_table(self) -> pd.DataFrame:
        """One row per canary: ``canary, repetitions, position`` (rows of the training set that hold it,
        and where in those rows it starts)."""
        rows = [(r, p) for r in self.repetitions for p in self.positions for _ in range(self.canaries_per_level)]
        return pd.DataFrame({"canary": range(len(rows)), "repetitions": [r for r, _ in rows],
                             "position": [p for _, p in rows]})

    def canaries(self) -> torch.Tensor:
        """``[n_canaries, canary_len]`` uniform-random token ids (the same order as :meth:`canary_table`)."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + 1)
        return torch.randint(0, self.d_vocab, (self.n_canaries, self.canary_len), generator=g)

    def row_canaries(self) -> torch.Tensor:
        """``[n_rows]``: the canary each training row holds (−1: none)."""
        return _layout(self)[1].clone()

    # ------------------------------------------------------------------ the training set
    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Training rows ``index [n]`` → tokens ``[n, seq_len]`` (text window, canary written over it)."""
        index = torch.as_tensor(index, dtype=torch.long)
        if index.dim() != 1 or (len(index) and (int(index.min()) < 0 or int(index.max()) >= self.n_rows)):
            raise ValueError(f"row indices must be a 1-D tensor in [0, {self.n_rows})")
        starts, which = _layout(self)
        tokens = self.data.train_ids[starts[index, None] + torch.arange(self.seq_len)]
        cans = self.canaries()
        for k in (which[index] >= 0).nonzero()[:, 0].tolist():
            c = int(which[index[k]])
            p = self.positions[(c // self.canaries_per_level) % len(self.positions)]
            tokens[k, p:p + self.canary_len] = cans[c]
        return tokens

    def _batch(self, index: torch.Tensor) -> TaskBatch:
        return TaskBatch(self.rows(index), torch.ones(len(index), self.seq_len - 1, dtype=torch.bool))

    def train_batch(self, step: int, batch_size: int) -> TaskBatch:
        """Rows ``[step·batch_size, (step+1)·batch_size)`` — the batch of training step ``step`` (the run
        must have ``steps · batch_size ≤ n_rows``)."""
        if not isinstance(step, int) or step < 0 or (step + 1) * batch_size > self.n_rows:
            raise ValueError(f"step {step} × batch_size {batch_size} runs past n_rows = {self.n_rows}; "
                             "set n_rows = steps × batch_size")
        return self._batch(torch.arange(step * batch_size, (step + 1) * batch_size))

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """``batch_size`` rows drawn uniformly (with replacement) from the training set."""
        return self._batch(torch.randint(0, self.n_rows, (batch_size,), generator=generator))

    def validation(self, batch_size: int = 16) -> list[torch.Tensor]:
        """The validation documents (no canaries) as ``[≤batch_size, seq_len]`` batches of consecutive,
        non-overlapping full windows."""
        ids = self.data.val_ids
        n = len(ids) // self.seq_len
        if n == 0:
            raise ValueError(f"the validation text has {len(ids)} tokens, fewer than seq_len = {self.seq_len}")
        windows = ids[:n * self.seq_len].view(n, self.seq_len)
        return list(windows.split(batch_size))


def occurrences(task: TextCanaries, tokens: torch.Tensor) -> pd.DataFrame:
    """Every place a canary occurs verbatim in ``tokens [n, seq_len]``: ``row, canary, position``
    (an independent check of the layout, by search rather than by construction)."""
    cans = task.canaries()
    L = task.canary_len
    if tokens.shape[1] < L:
        return pd.DataFrame({"row": [], "canary": [], "position": []})
    win = tokens.unfold(1, L, 1)  # [n, seq_len - L + 1, L]
    hits = (win[:, :, None, :] == cans[None, None]).all(-1).nonzero()  # [k, (row, position, canary)]
    return pd.DataFrame({"row": hits[:, 0].tolist(), "canary": hits[:, 2].tolist(), "position": hits[:, 1].tolist()})
