"""The logit lens (nostalgebraist 2020): decode each layer's residual stream as if it were the last one,

    logits_ℓ = unembed(ln_final(h_ℓ))           ℓ = 0 (embeddings) … n_layers (= the model's own logits)

with the model's own final norm and unembedding, unchanged.
"""

from __future__ import annotations

import torch
from jaxtyping import Float

from .residuals import residual_stream


def decode(model, resid: Float[torch.Tensor, "... d_model"]) -> Float[torch.Tensor, "... vocab"]:
    """``unembed(ln_final(resid))``: the model's final norm and unembedding applied to any residual vector(s)."""
    d = model.cfg.d_model
    if not isinstance(resid, torch.Tensor) or resid.dim() < 1 or resid.shape[-1] != d:
        shape = tuple(resid.shape) if isinstance(resid, torch.Tensor) else type(resid).__name__
        raise ValueError(f"resid must be a tensor [..., d_model = {d}], got {shape}")
    return model.unembed(model.ln_final(resid))


@torch.no_grad()
def logit_lens(model, tokens) -> Float[torch.Tensor, "layer batch pos vocab"]:
    """The logit lens at every layer 0 … n_layers for ``tokens`` ``[batch, pos]``; layer n_layers equals
    ``model(tokens)``. Holds ``(n_layers + 1) · batch · pos · vocab`` numbers: for large vocabularies decode
    a layer at a time (``decode(model, residual_stream(model, tokens)[layer])``)."""
    return decode(model, residual_stream(model, tokens))
