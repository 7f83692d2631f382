"""Sequential ListOps (Nangia & Bowman 2018; the unparenthesised variant of Irie et al. 2021), as a next-token task.

    [MAX 2 [MIN 7 4 ] [SM 3 9 1 ] 0 ] 3            the expression, then its value (scored)

An expression is a list ``[OP a1 … an ]`` of 2 … ``max_args`` arguments, each a digit or (with probability
``list_p``, below the maximum depth) a nested list; OP is one of ``operators``: MAX, MIN, MED (the median,
rounded down to an integer as ``int(numpy.median)``), SM (sum modulo 10), FIRST, LAST. The value is a digit.
Trees are drawn as in the authors' generator (IDSIA/recurrent-fwp ``algorithmic/utils/nyu_listops.py``:
the root is a list, no singleton lists, no parentheses) and kept only if their nesting ``depth`` (number of
list levels: ``[MAX 1 2 ]`` has depth 1) is exactly ``depth`` and their length (tokens, brackets included) is
in [``min_length``, ``max_length``]. The sequence is left-padded with ``PAD`` to ``max_length + 1``; the
logits at the final ``]`` predict the value. ``evaluate`` computes the value of a token list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig

OPERATORS = ("MAX", "MIN", "MED", "SM", "FIRST", "LAST")
DIGITS = tuple(str(d) for d in range(10))
MAX_TRIES = 100_000


@dataclass(frozen=True)
class ListOps(TaskConfig):
    NAME: ClassVar[str] = "listops"

    depth: int = 3
    max_args: int = 5
    min_length: int = 8
    max_length: int = 48
    list_p: float = 0.25
    operators: tuple[str, ...] = ("MAX", "MIN", "MED", "SM")

    def __post_init__(self) -> None:
        object.__setattr__(self, "operators", tuple(self.operators))
        check_int_fields(self, ("depth", "min_length", "max_length"))
        if self.max_args < 2:
            raise ValueError(f"ListOps.max_args must be ≥ 2 (no singleton lists), got {self.max_args}")
        unknown = sorted(set(self.operators) - set(OPERATORS))
        if not self.operators or unknown:
            raise ValueError(f"ListOps.operators must be a non-empty subset of {OPERATORS}, got {self.operators}")
        if not 0 < self.list_p < 1:
            raise ValueError(f"ListOps.list_p must be in (0, 1), got {self.list_p}")
        shortest = 4 * self.depth  # a chain of depth lists of two arguments
        if self.max_length < max(shortest, self.min_length):
            raise ValueError(f"ListOps.max_length={self.max_length} is below the shortest expression of depth "
                             f"{self.depth} ({shortest} tokens) or below min_length={self.min_length}")

    @property
    def vocab(self) -> tuple[str, ...]:
        return ("PAD", "]") + tuple(f"[{op}" for op in OPERATORS) + DIGITS

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        return self.max_length + 1

    def decode(self, ids) -> list[str]:
        vocab = self.vocab
        return [vocab[int(i)] for i in ids]

    def token_kind(self, ids: torch.Tensor) -> torch.Tensor:
        """A small integer per token: 0 PAD, 1 ``]``, 2 operator, 3 digit."""
        ids = torch.as_tensor(ids)
        return torch.where(ids == 0, 0, torch.where(ids == 1, 1, torch.where(ids < 2 + len(OPERATORS), 2, 3)))

    def _tree(self, rng: random.Random, level: int) -> tuple[list[str], int]:
        """(tokens, depth) of a list at nesting ``level`` (1 = the root)."""
        words = ["[" + rng.choice(self.operators)]
        deepest = level
        for _ in range(rng.randint(2, self.max_args)):
            if level < self.depth and rng.random() < self.list_p:
                sub, d = self._tree(rng, level + 1)
                words += sub
                deepest = max(deepest, d)
            else:
                words.append(rng.choice(DIGITS))
        words.append("]")
        return words, deepest

    def sample_expression(self, rng: random.Random) -> list[str]:
        for _ in range(MAX_TRIES):
            words, depth = self._tree(rng, 1)
            if depth == self.depth and self.min_length <= len(words) <= self.max_length:
                return words
        raise RuntimeError(f"no ListOps expression of depth {self.depth} and length in [{self.min_length}, "
                           f"{self.max_length}] in {MAX_TRIES} draws; raise list_p or max_length")

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """tokens ``[batch, pos]`` (left-padded expression, then its value); loss_mask ``[batch, pos-1]``
        true at the final ``]``."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        tokens = torch.zeros(batch_size, self.seq_len, dtype=torch.long)
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator).tolist()
        index = {w: i for i, w in enumerate(self.vocab)}
        for b, seed in enumerate(seeds):
            words = self.sample_expression(random.Random(seed))
            words.append(str(evaluate(words)))
            tokens[b, self.seq_len - len(words):] = torch.tensor([index[w] for w in words])
        mask = torch.zeros(batch_size, self.seq_len - 1, dtype=torch.bool)
        mask[:, -1] = True
        return TaskBatch(tokens=tokens, loss_mask=mask)

    def expression_tokens(self, ids) -> list[str]:
        return [w for w in self.decode(ids) if w != "PAD"]


def apply(op: str, args: list[int]) -> int:
    """The value of ``[op args… ]``."""
    if op == "MAX":
        return max(args)
    if op == "MIN":
        return min(args)
    if op == "FIRST":
        return args[0]
    if op == "LAST":
        return args[-1]
    if op == "SM":
        return sum(args) % 10
    if op == "MED":  # int(numpy.median(args)): the mean of the two middle values for an even count, floored
        s = sorted(args)
        mid = len(s) // 2
        return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) // 2
    raise ValueError(f"unknown ListOps operator {op!r}")


def running_states(words: list[str]) -> list[tuple[int, Optional[int]]]:
    """After each word: (nesting depth, value of the innermost open list's arguments so far under its
    operator, None before its first argument or outside any list)."""
    stack: list[tuple[str, list[int]]] = []
    out = []
    for w in words:
        if w.startswith("["):
            stack.append((w[1:], []))
        elif w == "]":
            op, args = stack.pop()
            if stack:
                stack[-1][1].append(apply(op, args))
        elif stack:
            stack[-1][1].append(int(w))
        top = apply(*stack[-1]) if stack and stack[-1][1] else None
        out.append((len(stack), top))
    return out


def evaluate(words: list[str]) -> int:
    """The value of one expression (a list of words, ``[OP`` … ``]``)."""
    stack: list[tuple[str, list[int]]] = []
    for w in words:
        if w.startswith("["):
            stack.append((w[1:], []))
        elif w == "]":
            op, args = stack.pop()
            value = apply(op, args)
            if not stack:
                return value
            stack[-1][1].append(value)
        else:
            stack[-1][1].append(int(w))
    raise ValueError(f"unbalanced ListOps expression: {' '.join(words)}")
