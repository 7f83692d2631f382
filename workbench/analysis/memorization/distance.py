"""Token-level Levenshtein distance (insertions, deletions, substitutions, each of cost 1)."""

from __future__ import annotations

from typing import Sequence, Union

import torch

Tokens = Union[Sequence[int], torch.Tensor]


def _as_list(x: Tokens) -> list:
    if isinstance(x, torch.Tensor):
        if x.dim() != 1:
            raise ValueError(f"token sequences must be 1-D, got shape {tuple(x.shape)}")
        return x.tolist()
    return list(x)


def token_levenshtein(a: Tokens, b: Tokens) -> int:
    """Edit distance between two token sequences (lists of ids or 1-D tensors), O(len(a)·len(b))."""
    a, b = _as_list(a), _as_list(b)
    prev = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, x in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, y in enumerate(b, 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y))
        prev = cur
    return prev[-1]
