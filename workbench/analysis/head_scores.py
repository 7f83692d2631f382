"""Per-head scores on an attention matrix (softmax pattern or exact effective attention).

All take ``A: [batch, head, pos, pos]`` (query, key) and return ``[batch, head]``. Delta-rule weights
are signed, so every score uses |A|, normalised per query row: w_tj = |A_tj| / Σ_j |A_tj|.
"""

from __future__ import annotations

import torch
from jaxtyping import Float, Int


def _row_normalised(A: torch.Tensor) -> torch.Tensor:
    if A.dim() != 4 or A.shape[-1] != A.shape[-2]:
        raise ValueError(f"A must have shape [batch, head, pos, pos], got {tuple(A.shape)}")
    w = A.abs().float()
    return w / w.sum(-1, keepdim=True).clamp_min(1e-30)


def previous_token_score(A: Float[torch.Tensor, "batch head pos pos"]) -> Float[torch.Tensor, "batch head"]:
    """Mean over queries t ≥ 1 of the share of |A| on key t−1."""
    w = _row_normalised(A)
    if w.shape[-1] < 2:
        raise ValueError("the previous-token score needs at least two positions")
    return w.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1)


def induction_score(A: Float[torch.Tensor, "batch head pos pos"], tokens: Int[torch.Tensor, "batch pos"]
                    ) -> Float[torch.Tensor, "batch head"]:
    """Share of |A| on induction targets: for query t, keys j = i+1 with tokens[i] = tokens[t], i+1 < t+1.

    Averaged over the queries that have at least one target (``tokens``: ``[batch, pos]``);
    0 for a batch row with no repeated token.
    """
    w = _row_normalised(A)
    b, _, t, _ = w.shape
    if tuple(tokens.shape) != (b, t):
        raise ValueError(f"tokens must have shape [batch, pos] = {(b, t)}, got {tuple(tokens.shape)}")
    same = tokens[:, :, None] == tokens[:, None, :]  # [batch, query, i]: tokens[i] == tokens[t]
    target = torch.zeros(b, t, t, dtype=torch.bool, device=w.device)
    target[:, :, 1:] = same[:, :, :-1]  # key j = i + 1
    target &= torch.ones(t, t, dtype=torch.bool, device=w.device).tril()  # j ≤ t (causal)
    target &= ~torch.eye(t, dtype=torch.bool, device=w.device)  # j = t is the token itself, not a copy
    has = target.any(-1)  # [batch, query]
    score = (w * target[:, None]).sum(-1)  # [batch, head, query]
    n = has.sum(-1).clamp_min(1)[:, None]
    return (score * has[:, None]).sum(-1) / n


def retrieval_score(A: Float[torch.Tensor, "batch head pos pos"], tokens: Int[torch.Tensor, "batch pos"],
                    needle: tuple[int, int], answer_positions) -> Float[torch.Tensor, "batch head"]:
    """Retrieval-head score of Wu et al. (2024) during copying of a needle span.

    For each query position t in ``answer_positions`` (the model predicts ``tokens[t+1]`` there), a head
    earns 1/|needle| if its top-1 key by |A| lies in ``needle = (start, end)`` (end exclusive) and holds
    the token being produced (tokens[j] == tokens[t+1]). A head with score > 0.1 is a retrieval head.
    """
    w = A.abs()
    start, end = needle
    if not 0 <= start < end <= A.shape[-1]:
        raise ValueError(f"needle {needle} is not a span inside the {A.shape[-1]} positions")
    score = torch.zeros(A.shape[:2], device=A.device)
    for t in answer_positions:
        if not 0 <= t < A.shape[-1] - 1:
            raise ValueError(f"answer position {t} has no next token to copy")
        top = w[:, :, t].argmax(-1)  # [batch, head]
        hit = (top >= start) & (top < end) & (tokens.gather(1, top) == tokens[:, t + 1 : t + 2])
        score += hit.float() / (end - start)
    return score
