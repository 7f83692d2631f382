"""Every layer's exact effective attention for one sequence, and the per-head scores read from it."""

from __future__ import annotations

import pandas as pd
import torch

from ..analysis import induction_score, previous_token_score
from ..mixers import NotDefinedForMixer


@torch.no_grad()
def attention_maps(model, tokens, layer: int) -> torch.Tensor:
    """``[head, pos, pos]`` (query, key): softmax patterns, or exact A with hook_z = A · hook_v."""
    return model.effective_attention(tokens, layer)[0]


@torch.no_grad()
def head_score_table(model, tokens) -> pd.DataFrame:
    """One row per (layer, head): previous-token and induction scores on |A| of this sequence (NaN in a layer
    without effective attention)."""
    tokens = model.check_tokens(tokens)
    rows = []
    for layer in range(model.cfg.n_layers):
        try:
            A = model.effective_attention(tokens, layer)
        except NotDefinedForMixer:  # no effective attention in this layer (e.g. an SRWM): NaN scores
            rows += [dict(layer=layer, head=h, previous_token=float("nan"), induction=float("nan"))
                     for h in range(model.cfg.n_heads)]
            continue
        prev = previous_token_score(A)[0] if tokens.shape[1] > 1 else torch.full((A.shape[1],), float("nan"))
        ind = induction_score(A, tokens)[0]
        for h in range(A.shape[1]):
            rows.append(dict(layer=layer, head=h, previous_token=float(prev[h]), induction=float(ind[h])))
    return pd.DataFrame(rows)
