"""Patching metrics: functions from logits ``[batch, pos, vocab]`` to one number per sequence ``[batch]``."""

from __future__ import annotations

from typing import Callable, Sequence, Union

import torch

Metric = Callable[[torch.Tensor], torch.Tensor]  # logits [batch, pos, vocab] -> [batch]
TokenOrTokens = Union[int, Sequence[int], torch.Tensor]


def logit_diff(answer: TokenOrTokens, distractor: TokenOrTokens, position: int = -1) -> Metric:
    """``logits[:, position, answer] − logits[:, position, distractor]`` per sequence: the default patching
    metric (Wang et al. 2022's logit difference). ``answer`` and ``distractor`` are token ids, one for the whole
    batch or one per sequence."""
    for name, tok in (("answer", answer), ("distractor", distractor)):
        ids = torch.as_tensor(tok)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool or ids.ndim > 1:
            raise ValueError(f"{name} must be a token id or a list of ids (one per sequence), got {tok!r}")
    if not isinstance(position, int) or isinstance(position, bool):
        raise ValueError(f"position must be an int (negative counts from the end), got {position!r}")

    def metric(logits: torch.Tensor) -> torch.Tensor:
        batch, n_pos, vocab = logits.shape
        if not -n_pos <= position < n_pos:
            raise ValueError(f"the metric's position {position} is outside the sequence of {n_pos} tokens")
        idx = []
        for name, tok in (("answer", answer), ("distractor", distractor)):
            ids = torch.as_tensor(tok, device=logits.device).long()
            ids = ids.expand(batch) if ids.ndim == 0 else ids
            if ids.shape != (batch,):
                raise ValueError(f"{name} lists {ids.numel()} ids for a batch of {batch} sequences")
            if ids.min() < 0 or ids.max() >= vocab:
                raise ValueError(f"{name} token ids must be in [0, {vocab - 1}], got {ids.tolist()}")
            idx.append(ids)
        at = logits[:, position]  # [batch, vocab]
        rows = torch.arange(batch, device=logits.device)
        return at[rows, idx[0]] - at[rows, idx[1]]

    return metric


def as_metric(metric) -> Metric:
    """A metric callable, or a pair ``(answer, distractor)`` of token ids read as :func:`logit_diff` at the last
    position."""
    if callable(metric):
        return metric
    if isinstance(metric, (tuple, list)) and len(metric) == 2:
        return logit_diff(metric[0], metric[1])
    raise ValueError("metric must be a callable logits [batch, pos, vocab] -> [batch], or a pair (answer, distractor) "
                     f"of token ids for the logit difference at the last position; got {metric!r}")


def evaluate(metric: Metric, logits: torch.Tensor) -> torch.Tensor:
    """``metric(logits)`` checked to be ``[batch]`` (float64)."""
    out = torch.as_tensor(metric(logits))
    if out.ndim != 1 or out.shape[0] != logits.shape[0]:
        raise ValueError(f"the metric must return one value per sequence, shape [{logits.shape[0]}]; got shape "
                         f"{tuple(out.shape)} (reduce over positions inside the metric)")
    return out.double()
