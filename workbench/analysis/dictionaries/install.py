"""Install a write in place of the native write at one position: a ``carry``-mode state edit.

The state after position t is W_t = A_t(W_{t-1}) + k_t u_tᵀ. Replacing the native write by X gives
W'_t = W_t − k_t u_tᵀ + X for the chosen head, and every later position is recomputed from W'_t
(:func:`workbench.analysis.editing.patch_fast_weights`, ``mode="carry"``). X = 0 removes the write.
"""

from __future__ import annotations

import torch
from jaxtyping import Float

from ..editing import patch_fast_weights
from .writes import check_head, state_writes


def replace_write(states: Float[torch.Tensor, "batch head d_k d_v"], head: int,
                  native: Float[torch.Tensor, "batch d_k d_v"], write: Float[torch.Tensor, "batch d_k d_v"]
                  ) -> torch.Tensor:
    """States with head ``head``'s native write swapped for ``write`` (a new tensor)."""
    out = states.clone()
    out[:, head] = states[:, head] - native.to(states) + write.to(states)
    return out


def install_write(model, tokens, layer: int, head: int, position: int,
                  write: Float[torch.Tensor, "*batch d_k d_v"]) -> Float[torch.Tensor, "batch pos vocab"]:
    """Logits of ``model`` on ``tokens`` with the write of ``head`` in ``layer`` at ``position`` replaced by
    ``write`` (``[d_k, d_v]`` for every sequence, or ``[batch, d_k, d_v]``). The model is not changed."""
    check_head(model, head)
    tokens = model.check_tokens(tokens)
    keys, values = state_writes(model, tokens, layer)
    p = position % tokens.shape[1] if isinstance(position, int) and -tokens.shape[1] <= position < tokens.shape[1] \
        else None
    if p is None:
        raise ValueError(f"position must be an int in [0, {tokens.shape[1] - 1}] (or negative from the end), "
                         f"got {position!r}")
    native = torch.einsum("bk,bv->bkv", keys[:, p, head].float(), values[:, p, head].float())
    write = write.expand_as(native) if write.ndim == 2 else write
    if write.shape != native.shape:
        raise ValueError(f"write must be [d_k, d_v] or [batch, d_k, d_v] = {tuple(native.shape)}, got {tuple(write.shape)}")
    return patch_fast_weights(model, tokens, layer, p, lambda s: replace_write(s, head, native, write), mode="carry")
