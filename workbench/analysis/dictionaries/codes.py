"""Sparse codes shared by the dictionaries here: top-k (Gao et al. 2024, "Scaling and evaluating sparse
autoencoders": keep the k largest pre-activations, ReLU them, zero the rest) or ReLU with an L1 penalty
(Bricken et al. 2023)."""

from __future__ import annotations

import torch
from jaxtyping import Float

SPARSITIES = ("topk", "relu_l1")


def check_sparsity(sparsity: str, k: int, l1: float, width: int, where: str) -> None:
    """ValueError naming the field when a dictionary's sparsity options are not usable."""
    if sparsity not in SPARSITIES:
        raise ValueError(f"{where}.sparsity must be one of {SPARSITIES}, got {sparsity!r}")
    if sparsity == "topk" and not (isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= width):
        raise ValueError(f"{where}.k must be an int in [1, {width}] (the dictionary's size) for top-k codes, got {k!r}")
    if not isinstance(l1, (int, float)) or isinstance(l1, bool) or l1 < 0:
        raise ValueError(f"{where}.l1 must be a number >= 0, got {l1!r}")


def sparse_codes(pre: Float[torch.Tensor, "... n_atoms"], sparsity: str, k: int) -> Float[torch.Tensor, "... n_atoms"]:
    """Codes from pre-activations: the k largest ReLU'd (``"topk"``), or all ReLU'd (``"relu_l1"``)."""
    if sparsity == "relu_l1":
        return torch.relu(pre)
    values, index = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, index, torch.relu(values))


def sparsity_penalty(codes: torch.Tensor, sparsity: str, l1: float) -> torch.Tensor:
    """The L1 term of the loss (mean over rows of Σ|c|, times ``l1``); zero for top-k codes."""
    if sparsity != "relu_l1" or l1 == 0:
        return codes.new_zeros(())
    return l1 * codes.abs().sum(-1).mean()
