"""The fast-weight matrices of a model we did not write: states at any position, norms and spectra.

From a :class:`~.gated_delta.GatedDeltaCapture`, the state of value head h after the write at t,
S_t ``[d_k, d_v]`` (o_t = S_tᵀ q̂_t), is read from our kernel's chunk-start snapshots plus at most
``chunk_size`` reference steps (:func:`workbench.mixers.states_at` with our delta rule), never the
whole ``[pos, d_k, d_v]`` trajectory. Per layer, head and position, averaged over sequences:

  frobenius       ‖S_t‖_F
  sigma_1..n      the n largest singular values of S_t
  effective_rank  exp(−Σ_i p_i log p_i), p_i = σ_i / Σ_j σ_j      (as in :mod:`..outliers.states`)
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ...mixers import RecurrenceInputs, check_positions, states_at
from ...mixers.delta import DeltaRule
from ..outliers.states import spectrum_stats
from .gated_delta import GatedDeltaCapture, capture_gated_delta


def fast_weights_at(capture: GatedDeltaCapture, positions, chunk_size: int = 64, backend: str = "chunk"
                    ) -> torch.Tensor:
    """S_t after the write at each of ``positions`` (ints; negative count from the end):
    ``[batch, n_positions, head, d_k, d_v]`` float32, in transformers' recurrent-state layout."""
    positions = check_positions(positions, capture.q.shape[1])
    inputs = RecurrenceInputs(dict(q=capture.q, k=capture.k, v=capture.v, beta=capture.beta, g=capture.g))
    return states_at(DeltaRule(), inputs, positions, chunk_size, backend)


@torch.no_grad()
def state_statistics(model, batches: Iterable[torch.Tensor], positions: Optional[Sequence[int]] = None,
                     modules: Optional[Sequence[str]] = None, n_singular: int = 4, chunk_size: int = 64,
                     progress: bool = True) -> pd.DataFrame:
    """Mean over sequences of ‖S_t‖_F, σ_1..σ_n and effective rank per (Gated DeltaNet layer, head, pos).

    ``batches``: ``[batch, pos]`` token tensors of one length; ``positions``: which t (default: all, which
    keeps ``[batch, pos, head, d_k, d_v]`` states of one layer at a time); ``modules``: layer paths
    (default: every Gated DeltaNet layer). Returns a DataFrame ``module, layer, head, pos, frobenius,
    sigma_1..sigma_n, effective_rank, n_sequences`` (the columns of :func:`..outliers.state_statistics`
    plus the module path).
    """
    if not isinstance(n_singular, int) or isinstance(n_singular, bool) or n_singular < 1:
        raise ValueError(f"n_singular must be a positive int, got {n_singular!r}")
    sums: dict[str, dict[str, torch.Tensor]] = {}
    layer_of: dict[str, int] = {}
    count, seq_len, chosen = 0, None, None
    total = len(batches) if hasattr(batches, "__len__") else None
    for ids in tqdm(batches, total=total, desc="fast-weight states (foreign)", disable=not progress):
        if seq_len is None:
            seq_len = ids.shape[1]
            chosen = list(range(seq_len)) if positions is None else check_positions(positions, seq_len)
        elif ids.shape[1] != seq_len:
            raise ValueError(f"all batches must have one length; got {ids.shape[1]} after {seq_len}")
        for path, cap in capture_gated_delta(model, ids, modules).items():
            st = spectrum_stats(fast_weights_at(cap, chosen, chunk_size), n_singular)  # [batch, n_pos, head(, n)]
            acc = sums.setdefault(path, {k: torch.zeros_like(v[0]) for k, v in st.items()})
            for k, v in st.items():
                acc[k] += v.sum(0)
            layer_of[path] = cap.layer
        count += ids.shape[0]
    if count == 0:
        raise ValueError("batches is empty; pass at least one [batch, pos] token tensor")
    rows = []
    for path, acc in sums.items():
        acc = {k: v / count for k, v in acc.items()}
        for pi, pos in enumerate(chosen):
            for h in range(acc["frobenius"].shape[1]):
                row = {"module": path, "layer": layer_of[path], "head": h, "pos": pos,
                       "frobenius": float(acc["frobenius"][pi, h])}
                row.update({f"sigma_{j + 1}": float(acc["sigma"][pi, h, j]) for j in range(n_singular)})
                row["effective_rank"] = float(acc["effective_rank"][pi, h])
                row["n_sequences"] = count
                rows.append(row)
    return pd.DataFrame(rows)
