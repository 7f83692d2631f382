"""Read a layer's fast-weight matrices W_t at chosen positions without storing the whole trajectory."""

from __future__ import annotations

import torch
from jaxtyping import Float

from ..mixers import check_positions

__all__ = ["check_positions", "fast_weights"]


def fast_weights(model, tokens, layer: int, positions) -> Float[torch.Tensor, "batch n_positions head d_k d_v"]:
    """The fast-weight matrix of every head of ``layer`` after the write at each of ``positions``;
    see :meth:`workbench.model.HookedFastWeightLM.fast_weights` (memory O(pos/C · d_k · d_v))."""
    return model.fast_weights(tokens, layer, positions)
