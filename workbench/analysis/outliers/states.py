"""Fast-weight state statistics over position: norm growth, spectrum and effective rank of W_t.

For each fast-weight layer, head and requested position t, averaged over all sequences of a stream:
‖W_t‖_F (state norm growth over position), the largest singular values and the effective rank
(formulas in :mod:`workbench.analysis.state_spectra`, whose loop this uses).

W_t is read through ``blocks.{i}.attn.hook_state`` inside ``model.expose_states`` (the state after the
write at t; for sum-normalised linear attention the normaliser column z_t is dropped; a state with
several key axes, as the Fast Weight Memory's [d_s, d_r, d_t], is taken as its unfolding [d_s·d_r, d_t],
the key s⊗r → value map its writes add to). Each batch's
states are reduced to these numbers inside the hook, so only ``[batch, positions, head]`` values are kept.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

import pandas as pd
import torch

from ..layer_inputs import fast_weight_mixer
from ..state_spectra import check_n_singular, mean_state_spectra, spectrum_stats


@torch.no_grad()
def state_statistics(model, batches: Iterable[torch.Tensor], positions: Optional[Sequence[int]] = None,
                     layers: Optional[Sequence[int]] = None, n_singular: int = 4, progress: bool = True
                     ) -> pd.DataFrame:
    """Mean over sequences of ‖W_t‖_F, σ_1..σ_n and effective rank per (layer, head, pos).

    ``batches``: token tensors ``[batch, pos]`` of one length; ``positions``: which t (default: every
    position); ``layers``: fast-weight layers (default: all; softmax layers are refused by name).
    Returns a DataFrame ``layer, head, pos, frobenius, sigma_1..sigma_n, effective_rank, n_sequences``.
    """
    check_n_singular(n_singular)
    cfg = model.cfg
    layers = model.fast_weight_layers if layers is None else list(layers)
    for i in layers:
        fast_weight_mixer(model, i)  # ValueError for layers without fast weights and bad indices
    layers = sorted({i % cfg.n_layers for i in layers})
    if not layers:
        raise ValueError(f"this model has no fast-weight layer (mixers: {cfg.mixer_label})")
    d_v = cfg.d_head

    def batch_stats(tokens: torch.Tensor, chosen: list[int]) -> dict[int, dict[str, torch.Tensor]]:
        stats = {}

        def record(W: torch.Tensor, hook) -> None:  # [batch, n_positions, head, d_key, d_v(+1)]
            # a state with several key axes (FWM's [d_s, d_r, d_t]) is taken as its unfolding [d_s·d_r, d_t]
            stats[int(hook.name.split(".")[1])] = spectrum_stats(W.flatten(3, -2)[..., :d_v], n_singular)

        with model.expose_states(chosen, layers=layers):
            model.run_with_hooks(tokens, return_type=None,
                                 fwd_hooks=[(f"blocks.{i}.attn.hook_state", record) for i in layers])
        return dict(sorted(stats.items()))

    return mean_state_spectra(batches, positions, n_singular, batch_stats, lambda layer: {"layer": layer},
                              "fast-weight states", progress, prepare=model.check_tokens)
