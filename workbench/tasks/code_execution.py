"""Code execution (variable tracking; Fan et al. 2020, as used by Irie et al. 2021), as a next-token task.

A program is a run of statements over ``num_vars`` variables (x, y, z, a, b, …), one word per token:

    x = 5 ;   y = 2 ;   x ++ ;   if x > 3 : y -- ;   print x ;   …      (the program)
    print y ; 1   print x ; 6                                            (the queries, scored)

Statements follow the authors' generator (IDSIA/recurrent-fwp ``algorithmic/utils/data_generator.py``):
the first is an assignment; each next one is, with equal probability, an assignment ``v = n`` (n in
[0, ``max_assign_value``)), an increment/decrement ``v ++``/``v --`` of an assigned variable (turned into
the other when it would leave [``min_value``, ``max_value``]), a ``print v`` of an assigned variable, or a
conditional ``if v < n :`` / ``if v > n :`` (n in [0, ``max_cond_value``)) followed by one of the other
three, executed only when the condition holds. Unlike that generator's conditional branch (which drops a
conditional assignment to a variable already assigned), every statement here means what it says in Python.

The authors label the ``;`` of every ``print`` with the printed value (sequence labelling). A causal LM
would see such labels as later inputs, so here the program's own ``print`` statements are not answered;
instead the program is followed by one query ``print v ;`` per assigned variable (random order), each
followed by the value as the next token, and only those values are scored (``loss_mask`` at the query's
``;``). Statements are drawn while they fit into ``seq_len`` with the queries; the sequence is left-padded
with ``PAD`` (at most one statement's worth). ``program_tokens`` recovers a program, ``run`` executes one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch

from ..dataclass_io import check_int_fields
from .base import TaskBatch, TaskConfig

VAR_NAMES = ("x", "y", "z", "a", "b", "c", "d", "e", "f", "g")
WORDS = ("PAD", "=", ";", "++", "--", "print", "if", "<", ">", ":")
LONGEST_STATEMENT = 9  # "if v < n : v = n ;"


@dataclass(frozen=True)
class CodeExecution(TaskConfig):
    NAME: ClassVar[str] = "code_execution"

    num_vars: int = 3
    seq_len: int = 64
    max_assign_value: int = 10
    max_cond_value: int = 10
    min_value: int = -8
    max_value: int = 16

    def __post_init__(self) -> None:
        check_int_fields(self, ("num_vars", "seq_len", "max_assign_value", "max_cond_value"))
        if self.num_vars > len(VAR_NAMES):
            raise ValueError(f"CodeExecution has names for at most {len(VAR_NAMES)} variables, got {self.num_vars}")
        if not self.min_value < 0 < self.max_assign_value - 1 < self.max_value:
            raise ValueError("CodeExecution needs min_value < 0 and max_assign_value − 1 < max_value "
                             f"(got min_value={self.min_value}, max_value={self.max_value}, "
                             f"max_assign_value={self.max_assign_value})")
        if self.max_cond_value - 1 > self.max_value:
            raise ValueError(f"CodeExecution.max_cond_value − 1 must be ≤ max_value, got {self.max_cond_value}")
        if self.seq_len < 4 * self.num_vars + LONGEST_STATEMENT + 4:
            raise ValueError(f"CodeExecution.seq_len={self.seq_len} leaves no room for a program and "
                             f"{self.num_vars} queries; use seq_len ≥ {4 * self.num_vars + LONGEST_STATEMENT + 4}")

    # --- vocabulary -------------------------------------------------------------------------------
    @property
    def vocab(self) -> tuple[str, ...]:
        """Token strings by id: the words, the variable names, then the numbers min_value … max_value."""
        numbers = tuple(str(n) for n in range(self.min_value, self.max_value + 1))
        return WORDS + VAR_NAMES[:self.num_vars] + numbers

    @property
    def d_vocab(self) -> int:
        return len(self.vocab)

    def token_id(self, word: str) -> int:
        return self.vocab.index(word)

    def number_id(self, n: int) -> int:
        return len(WORDS) + self.num_vars + n - self.min_value

    def var_id(self, i: int) -> int:
        return len(WORDS) + i

    def decode(self, ids) -> list[str]:
        vocab = self.vocab
        return [vocab[int(i)] for i in ids]

    def token_kind(self, ids: torch.Tensor) -> torch.Tensor:
        """A small integer per token: 0 PAD, 1 word (``=``, ``;``, ``++``, …), 2 variable name, 3 number."""
        ids = torch.as_tensor(ids)
        first_var, first_num = len(WORDS), len(WORDS) + self.num_vars
        return torch.where(ids == 0, 0, torch.where(ids < first_var, 1, torch.where(ids < first_num, 2, 3)))

    # --- sampling ---------------------------------------------------------------------------------
    def _statement(self, rng: random.Random, values: dict[int, int], first: bool) -> list[str]:
        """One statement (as words), executed on ``values`` (variable index → value)."""
        op = 0 if first else rng.randrange(4)
        if op == 3:  # conditional: "if v < n :" then a non-conditional statement, run if true
            var = rng.choice(sorted(values))
            less = rng.randrange(2) == 0
            bound = rng.randrange(self.max_cond_value)
            holds = values[var] < bound if less else values[var] > bound
            body = self._simple(rng, rng.randrange(3), values, apply=holds)
            return ["if", VAR_NAMES[var], "<" if less else ">", str(bound), ":"] + body
        return self._simple(rng, op, values, apply=True)

    def _simple(self, rng: random.Random, op: int, values: dict[int, int], apply: bool) -> list[str]:
        if op == 0:  # assign
            var, value = rng.randrange(self.num_vars), rng.randrange(self.max_assign_value)
            if apply:
                values[var] = value
            return [VAR_NAMES[var], "=", str(value), ";"]
        var = rng.choice(sorted(values))
        if op == 1:  # increment / decrement, flipped at the range's edges
            step = 1 if rng.randrange(2) == 0 else -1
            if not self.min_value <= values[var] + step <= self.max_value:
                step = -step
            if apply:
                values[var] += step
            return [VAR_NAMES[var], "++" if step > 0 else "--", ";"]
        return ["print", VAR_NAMES[var], ";"]

    def sample_program(self, rng: random.Random) -> tuple[list[str], list[tuple[int, int]]]:
        """(words, queries): a program that fits with its queries, and (variable, value) per query."""
        values: dict[int, int] = {}
        words: list[str] = []
        while True:
            saved = dict(values)
            statement = self._statement(rng, values, first=not words)
            queries = max(len(values), len(saved))
            if len(words) + len(statement) + 4 * queries > self.seq_len:
                values = saved
                break
            words += statement
        order = sorted(values)
        rng.shuffle(order)
        return words, [(v, values[v]) for v in order]

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        """tokens ``[batch, pos]`` (left-padded programs and their queries); loss_mask ``[batch, pos-1]``
        true at each query's ``;`` (the logits there predict the value)."""
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        tokens = torch.zeros(batch_size, self.seq_len, dtype=torch.long)
        mask = torch.zeros(batch_size, self.seq_len - 1, dtype=torch.bool)
        seeds = torch.randint(0, 2**62, (batch_size,), generator=generator).tolist()
        index = {w: i for i, w in enumerate(self.vocab)}
        for b, seed in enumerate(seeds):
            words, queries = self.sample_program(random.Random(seed))
            for var, value in queries:
                words += ["print", VAR_NAMES[var], ";", str(value)]
            start = self.seq_len - len(words)
            tokens[b, start:] = torch.tensor([index[w] for w in words])
            for q in range(len(queries)):
                mask[b, self.seq_len - 2 - 4 * q] = True
        return TaskBatch(tokens=tokens, loss_mask=mask)

    # --- reading programs back --------------------------------------------------------------------
    def program_tokens(self, ids) -> list[str]:
        """The words of one sequence without the padding."""
        return [w for w in self.decode(ids) if w != "PAD"]

    def run(self, words: list[str]) -> list[dict[str, Optional[int]]]:
        """Execute a program word by word: after each word, every variable's value (None if unassigned),
        as of the statements completed so far (a statement takes effect at its ``;``). Query answers
        (a number right after ``;``) are read as no-ops."""
        values: dict[str, Optional[int]] = {VAR_NAMES[i]: None for i in range(self.num_vars)}
        out, statement = [], []
        for w in words:
            statement.append(w)
            if w == ";":
                _execute(statement, values)
                statement = []
            elif len(statement) == 1 and w not in VAR_NAMES and w not in ("print", "if"):
                statement = []  # an answer token
            out.append(dict(values))
        return out


def _execute(statement: list[str], values: dict[str, Optional[int]]) -> None:
    if statement[0] == "if":
        _, var, cmp, bound, _colon, *body = statement
        holds = values[var] < int(bound) if cmp == "<" else values[var] > int(bound)
        if holds:
            _execute(body, values)
    elif statement[0] != "print":
        var, op = statement[0], statement[1]
        if op == "=":
            values[var] = int(statement[2])
        else:
            values[var] += 1 if op == "++" else -1
