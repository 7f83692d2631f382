"""General ability kept by an edit: held-out perplexity and top-k next-token agreement."""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ...model import lm_loss


def _batches(batches) -> Iterable[torch.Tensor]:
    if isinstance(batches, torch.Tensor):
        return [batches]
    return batches


@torch.no_grad()
def held_out_perplexity(model, batches) -> float:
    """exp(mean next-token NLL) over every prediction of the token batches ``[batch, pos]`` (pooled by
    token, not averaged per batch). ``batches``: one tensor or an iterable of them."""
    total, n = 0.0, 0
    for tokens in _batches(batches):
        tokens = model.check_tokens(tokens)
        if tokens.shape[1] < 2:
            raise ValueError("perplexity needs sequences of at least two tokens")
        total += float(lm_loss(model(tokens), tokens, reduction="none").double().sum())
        n += tokens[:, 1:].numel()
    if n == 0:
        raise ValueError("no tokens: pass at least one batch")
    return math.exp(total / n)


@torch.no_grad()
def topk_agreement(model_a, model_b, batches, k: int = 10) -> float:
    """Mean over every position of |top-k(a) ∩ top-k(b)| / k, the next-token lists of two models."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    total, n = 0.0, 0
    for tokens in _batches(batches):
        la, lb = model_a(tokens), model_b(tokens)
        if la.shape != lb.shape:
            raise ValueError(f"the models give logits of shapes {tuple(la.shape)} and {tuple(lb.shape)}")
        if k > la.shape[-1]:
            raise ValueError(f"k = {k} exceeds the vocabulary ({la.shape[-1]})")
        ta, tb = la.topk(k, -1).indices, lb.topk(k, -1).indices  # [batch, pos, k]
        overlap = (ta[..., :, None] == tb[..., None, :]).any(-1).sum(-1)  # [batch, pos]
        total += float(overlap.double().sum()) / k
        n += overlap.numel()
    if n == 0:
        raise ValueError("no tokens: pass at least one batch")
    return total / n
