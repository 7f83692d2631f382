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
    """One row per (layer, head): previous-token and induction scores on |A| of this sequence, for the layers
    whose mixer has an exact effective attention (the others are left out)."""
    tokens = model.check_tokens(tokens)
    rows = []
    for layer in model.mixer_layers:  # an MLP-only block (cfg.block_kinds) attends to nothing
        try:
            A = model.effective_attention(tokens, layer)
        except NotDefinedForMixer:
            continue
        prev = previous_token_score(A)[0] if tokens.shape[1] > 1 else torch.full((A.shape[1],), float("nan"))
        ind = induction_score(A, tokens)[0]
        for h in range(A.shape[1]):
            rows.append(dict(layer=layer, head=h, previous_token=float(prev[h]), induction=float(ind[h])))
    return pd.DataFrame(rows, columns=["layer", "head", "previous_token", "induction"])
