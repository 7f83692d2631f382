"""Metrics a knockout or steering run is scored with: ``logits [batch, pos, vocab] -> [batch]``."""

from __future__ import annotations

from typing import Callable, Optional

import torch

Metric = Callable[[torch.Tensor], torch.Tensor]  # logits [batch, pos, vocab] -> [batch]


def final_token_logprob(token: torch.Tensor, position: int = -1) -> Metric:
    """The metric log p(token | prefix) at ``position`` (default the last), one ``token`` per sequence
    (``[batch]`` ids, or an int for all; a batch of k copies of the sequences, as a knockout grid runs them, takes
    them k times)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits[:, position].double(), dim=-1)  # [batch, vocab]
        ids = torch.as_tensor(token, device=logits.device).long().reshape(-1)
        if logits.shape[0] % ids.numel():
            raise ValueError(f"final_token_logprob has {ids.numel()} tokens for a batch of {logits.shape[0]}")
        ids = ids.repeat(logits.shape[0] // ids.numel())  # a batch of repeated copies (the grid's) repeats them
        return logp.gather(-1, ids[:, None])[:, 0]

    return metric


def default_metric(model, tokens: torch.Tensor, metric: Optional[Metric]) -> Metric:
    """``metric``, or the log-probability of the token the clean run predicts last (its argmax)."""
    if metric is not None:
        return metric
    with torch.no_grad():
        top = model(tokens)[:, -1].argmax(-1)  # [batch]
    return final_token_logprob(top)


def check_metric(values, n: int) -> torch.Tensor:
    if not isinstance(values, torch.Tensor) or values.shape != (n,):
        got = tuple(values.shape) if isinstance(values, torch.Tensor) else type(values).__name__
        raise ValueError(f"the metric must map logits [batch, pos, vocab] to one number per sequence [{n}], got {got}")
    return values.double()


def logit_difference(a, b, position: int = -1) -> Metric:
    """The metric logit(a) − logit(b) at ``position`` (default the last); ``a``/``b`` token ids (ints, or ``[batch]``
    ids repeated over a batch of copies as :func:`final_token_logprob`)."""

    def metric(logits: torch.Tensor) -> torch.Tensor:
        row = logits[:, position].double()  # [batch, vocab]
        out = []
        for tok in (a, b):
            ids = torch.as_tensor(tok, device=logits.device).long().reshape(-1)
            if logits.shape[0] % ids.numel():
                raise ValueError(f"logit_difference has {ids.numel()} tokens for a batch of {logits.shape[0]}")
            out.append(row.gather(-1, ids.repeat(logits.shape[0] // ids.numel())[:, None])[:, 0])
        return out[0] - out[1]

    return metric
