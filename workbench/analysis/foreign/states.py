"""The fast-weight matrices of a model we did not write: states at any position, norms and spectra.

From a :class:`~.gated_delta.GatedDeltaCapture`, the state of value head h after the write at t,
S_t ``[d_k, d_v]`` (o_t = S_tᵀ q̂_t), is read from our kernel's chunk-start snapshots plus at most
``chunk_size`` reference steps (:func:`workbench.mixers.states_at` with our delta rule), never the
whole ``[pos, d_k, d_v]`` trajectory. Per layer, head and position, averaged over sequences:

  frobenius       ‖S_t‖_F
  sigma_1..n      the n largest singular values of S_t
  effective_rank  exp(−Σ_i p_i log p_i), p_i = σ_i / Σ_j σ_j      (:mod:`workbench.analysis.state_spectra`)
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import pandas as pd
import torch

from ...mixers import RecurrenceInputs, check_positions, states_at
from ...mixers.delta import DeltaRule
from ..state_spectra import check_n_singular, mean_state_spectra, spectrum_stats
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
    check_n_singular(n_singular)
    layer_of: dict[str, int] = {}

    def batch_stats(ids: torch.Tensor, chosen: list[int]) -> dict[str, dict[str, torch.Tensor]]:
        stats = {}
        for path, cap in capture_gated_delta(model, ids, modules).items():
            stats[path] = spectrum_stats(fast_weights_at(cap, chosen, chunk_size), n_singular)
            layer_of[path] = cap.layer
        return stats

    return mean_state_spectra(batches, positions, n_singular, batch_stats,
                              lambda path: {"module": path, "layer": layer_of[path]}, "fast-weight states (foreign)",
                              progress)
