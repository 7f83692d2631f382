"""Fast-weight state statistics over position: norm growth, spectrum and effective rank of W_t.

For each fast-weight layer, head and requested position t, averaged over all sequences of a stream:

  frobenius       ‖W_t‖_F                                  (state norm growth over position)
  sigma_1..n      the n largest singular values of W_t
  effective_rank  exp(−Σ_i p_i log p_i), p_i = σ_i / Σ_j σ_j   (Roy & Vetterli 2007; 1 for rank one,
                  min(d_k, d_v) for a flat spectrum; 0 for W_t = 0)

W_t is read through ``blocks.{i}.attn.hook_state`` inside ``model.expose_states`` (the state after the
write at t; for sum-normalised linear attention the normaliser column z_t is dropped). Each batch's
states are reduced to these numbers inside the hook, so only ``[batch, positions, head]`` values are kept.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ..fast_weights import check_positions
from ..layer_inputs import fast_weight_mixer


def spectrum_stats(W: torch.Tensor, n_singular: int) -> dict[str, torch.Tensor]:
    """``W: [..., d_k, d_v]`` → frobenius ``[...]``, sigma ``[..., n]`` (largest first, nan-padded),
    effective_rank ``[...]``."""
    s = torch.linalg.svdvals(W.double())
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -(p * p.clamp_min(torch.finfo(torch.float64).tiny).log()).sum(-1)
    erank = torch.where(total[..., 0] > 0, entropy.exp(), torch.zeros_like(entropy))
    sigma = torch.nn.functional.pad(s[..., :n_singular], (0, max(0, n_singular - s.shape[-1])), value=float("nan"))
    return {"frobenius": W.double().pow(2).sum((-2, -1)).sqrt(), "sigma": sigma, "effective_rank": erank}


@torch.no_grad()
def state_statistics(model, batches: Iterable[torch.Tensor], positions: Optional[Sequence[int]] = None,
                     layers: Optional[Sequence[int]] = None, n_singular: int = 4, progress: bool = True
                     ) -> pd.DataFrame:
    """Mean over sequences of ‖W_t‖_F, σ_1..σ_n and effective rank per (layer, head, pos).

    ``batches``: token tensors ``[batch, pos]`` of one length; ``positions``: which t (default: every
    position); ``layers``: fast-weight layers (default: all; softmax layers are refused by name).
    Returns a DataFrame ``layer, head, pos, frobenius, sigma_1..sigma_n, effective_rank, n_sequences``.
    """
    if not isinstance(n_singular, int) or n_singular < 1:
        raise ValueError(f"n_singular must be a positive int, got {n_singular!r}")
    cfg = model.cfg
    layers = model.fast_weight_layers if layers is None else list(layers)
    for i in layers:
        fast_weight_mixer(model, i)  # ValueError for layers without fast weights and bad indices
    layers = sorted({i % cfg.n_layers for i in layers})
    if not layers:
        raise ValueError(f"this model has no fast-weight layer (mixers: {cfg.mixer_label})")
    d_v = cfg.d_head
    sums: dict[int, dict[str, torch.Tensor]] = {}
    count = 0
    seq_len = None

    def record(W: torch.Tensor, hook) -> None:  # [batch, n_positions, head, d_k, d_v(+1)]
        layer = int(hook.name.split(".")[1])
        st = spectrum_stats(W[..., :d_v], n_singular)
        acc = sums.setdefault(layer, {k: torch.zeros_like(v[0]) for k, v in st.items()})
        for k, v in st.items():
            acc[k] += v.sum(0)

    total = len(batches) if hasattr(batches, "__len__") else None
    for tokens in tqdm(batches, total=total, desc="fast-weight states", disable=not progress):
        tokens = model.check_tokens(tokens)
        if seq_len is None:
            seq_len = tokens.shape[1]
            chosen = list(range(seq_len)) if positions is None else check_positions(positions, seq_len)
        elif tokens.shape[1] != seq_len:
            raise ValueError(f"all batches must have one length; got {tokens.shape[1]} after {seq_len}")
        with model.expose_states(chosen, layers=layers):
            model.run_with_hooks(tokens, return_type=None,
                                 fwd_hooks=[(f"blocks.{i}.attn.hook_state", record) for i in layers])
        count += tokens.shape[0]
    if count == 0:
        raise ValueError("batches is empty; pass at least one [batch, pos] token tensor")
    rows = []
    for layer in sorted(sums):
        acc = {k: v / count for k, v in sums[layer].items()}
        for pi, pos in enumerate(chosen):
            for h in range(cfg.n_heads):
                row = {"layer": layer, "head": h, "pos": pos, "frobenius": float(acc["frobenius"][pi, h])}
                row.update({f"sigma_{j + 1}": float(acc["sigma"][pi, h, j]) for j in range(n_singular)})
                row["effective_rank"] = float(acc["effective_rank"][pi, h])
                row["n_sequences"] = count
                rows.append(row)
    return pd.DataFrame(rows)
