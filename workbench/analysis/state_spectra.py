"""Fast-weight state spectra averaged over a token stream: the one loop both state analyses use.

:func:`workbench.analysis.outliers.state_statistics` (our models, through ``hook_state``) and
:func:`workbench.analysis.foreign.state_statistics` (transformers' Gated DeltaNet, through nnsight) differ
only in how a batch's states are read; both hand :func:`mean_state_spectra` a function from one batch to
its reduced statistics, and get the same table back:

  frobenius       ‖W_t‖_F
  sigma_1..n      the n largest singular values of W_t
  effective_rank  exp(−Σ_i p_i log p_i), p_i = σ_i / Σ_j σ_j   (Roy & Vetterli 2007; 1 for rank one,
                  min(d_key, d_v) for a flat spectrum; 0 for W_t = 0)
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable, Mapping, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from .fast_weights import check_positions

BatchStats = Mapping[Hashable, Mapping[str, torch.Tensor]]  # key (layer, module path) → spectrum_stats output


def spectrum_stats(W: torch.Tensor, n_singular: int) -> dict[str, torch.Tensor]:
    """``W: [..., d_key, d_v]`` → frobenius ``[...]``, sigma ``[..., n]`` (largest first, nan-padded),
    effective_rank ``[...]``."""
    s = torch.linalg.svdvals(W.double())
    total = s.sum(-1, keepdim=True)
    p = s / total.clamp_min(torch.finfo(torch.float64).tiny)
    entropy = -(p * p.clamp_min(torch.finfo(torch.float64).tiny).log()).sum(-1)
    erank = torch.where(total[..., 0] > 0, entropy.exp(), torch.zeros_like(entropy))
    sigma = torch.nn.functional.pad(s[..., :n_singular], (0, max(0, n_singular - s.shape[-1])), value=float("nan"))
    return {"frobenius": W.double().pow(2).sum((-2, -1)).sqrt(), "sigma": sigma, "effective_rank": erank}


def check_n_singular(n_singular: Any) -> None:
    if not isinstance(n_singular, int) or isinstance(n_singular, bool) or n_singular < 1:
        raise ValueError(f"n_singular must be a positive int, got {n_singular!r}")


def mean_state_spectra(batches: Iterable[torch.Tensor], positions: Optional[Sequence[int]], n_singular: int,
                       batch_stats: Callable[[torch.Tensor, list[int]], BatchStats],
                       key_columns: Callable[[Hashable], dict[str, Any]], desc: str = "fast-weight states",
                       progress: bool = True, prepare: Optional[Callable[[torch.Tensor], torch.Tensor]] = None
                       ) -> pd.DataFrame:
    """Mean over the sequences of ``batches`` of each key's state statistics, one row per (key, head, pos).

    ``batches``: ``[batch, pos]`` token tensors of one length; ``positions``: which t (default: all);
    ``batch_stats(tokens, positions)``: ``{key: spectrum_stats(W)}`` of one batch, ``W`` of shape
    ``[batch, n_positions, head, d_key, d_v]``; ``key_columns(key)``: the leading columns of its rows
    (e.g. ``{"layer": 0}``); ``prepare``: applied to each batch first (e.g. the model's token check). Returns ``*key columns, head, pos, frobenius, sigma_1..sigma_n,
    effective_rank, n_sequences``, keys in the order first seen.
    """
    check_n_singular(n_singular)
    sums: dict[Hashable, dict[str, torch.Tensor]] = {}
    count, seq_len, chosen = 0, None, []
    total = len(batches) if hasattr(batches, "__len__") else None
    for tokens in tqdm(batches, total=total, desc=desc, disable=not progress):
        tokens = tokens if prepare is None else prepare(tokens)
        if seq_len is None:
            seq_len = tokens.shape[1]
            chosen = list(range(seq_len)) if positions is None else check_positions(positions, seq_len)
        elif tokens.shape[1] != seq_len:
            raise ValueError(f"all batches must have one length; got {tokens.shape[1]} after {seq_len}")
        for key, st in batch_stats(tokens, chosen).items():  # [batch, n_pos, head(, n)]
            acc = sums.setdefault(key, {k: torch.zeros_like(v[0]) for k, v in st.items()})
            for k, v in st.items():
                acc[k] += v.sum(0)
        count += tokens.shape[0]
    if count == 0:
        raise ValueError("batches is empty; pass at least one [batch, pos] token tensor")
    rows = []
    for key, acc in sums.items():
        acc = {k: v / count for k, v in acc.items()}
        for pi, pos in enumerate(chosen):
            for h in range(acc["frobenius"].shape[1]):
                row = {**key_columns(key), "head": h, "pos": pos, "frobenius": float(acc["frobenius"][pi, h])}
                row.update({f"sigma_{j + 1}": float(acc["sigma"][pi, h, j]) for j in range(n_singular)})
                row["effective_rank"] = float(acc["effective_rank"][pi, h])
                row["n_sequences"] = count
                rows.append(row)
    return pd.DataFrame(rows)
