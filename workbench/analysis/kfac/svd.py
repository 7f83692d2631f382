"""Baseline for the K-FAC edit: truncate W's own singular value decomposition (no data).

W = U diag(σ) Vᵀ (float64, σ descending); keep the top r components, W' = U_r diag(σ_r) V_rᵀ, with

  - ``budget="energy"``: the fewest r with Σ_{i≤r} σ_i² ≥ ρ Σ σ_i²  (the same *fraction of spectral
    mass* as the K-FAC edit keeps of its curvature mass; the default);
  - ``budget="rank"``: r = round(ρ · min(d_out, d_in))  (the same fraction of components).

ρ = 1 leaves W bitwise unchanged. :func:`svd_edit` returns a new model and a report with the columns
of :func:`.edit.kfac_edit` (``components`` = min(d_out, d_in), ``mass_kept`` = energy fraction kept).
"""

from __future__ import annotations

import copy
from typing import Literal, Union

import pandas as pd
import torch

from .edit import REPORT_COLUMNS, check_rho
from .sites import flat_weight, resolve_sites, write_weight

BUDGETS = ("energy", "rank")


def svd_truncate(W: torch.Tensor, rho: float, budget: Literal["energy", "rank"] = "energy"
                 ) -> tuple[torch.Tensor, dict]:
    """W ``[d_out, d_in]`` → (W' float64, info with ``kept``, ``components``, ``mass_kept``)."""
    rho = check_rho(rho)
    if budget not in BUDGETS:
        raise ValueError(f"budget must be one of {BUDGETS}, got {budget!r}")
    U, S, Vh = torch.linalg.svd(W.double(), full_matrices=False)
    n = S.numel()
    energy = S.pow(2)
    total = float(energy.sum())
    if rho == 1.0:
        r = n
    elif budget == "rank":
        r = int(round(rho * n))
    elif total == 0.0:
        r = 0
    else:
        cum = energy.cumsum(0)
        r = min(int(torch.searchsorted(cum, torch.tensor([rho * total], dtype=cum.dtype))[0]) + 1, n)
    W_new = (U[:, :r] * S[:r]) @ Vh[:r]
    return W_new, {"components": n, "kept": r,
                   "mass_kept": float(energy[:r].sum()) / total if total > 0 else float("nan")}


@torch.no_grad()
def svd_edit(model, sites, rho: float, budget: Literal["energy", "rank"] = "energy"):
    """Truncate each site's weight (parameter names; see :mod:`.sites`) at ``rho``; returns
    ``(new_model, report)`` (the original model is not changed)."""
    rho = check_rho(rho)
    chosen = resolve_sites(model, sites)
    new = copy.deepcopy(model)
    rows = []
    for site in chosen:
        W = flat_weight(model, site).T  # [d_out, d_in]
        W_new, info = svd_truncate(W, rho, budget)
        change = write_weight(new, site, W, W_new, info)
        rows.append({"param": site.param, "kind": site.kind, "layer": site.layer, "method": f"svd_{budget}",
                     "rho": rho, **info, "kept_fraction": info["kept"] / info["components"],
                     "weight_rel_change": change})
    return new, pd.DataFrame(rows)[REPORT_COLUMNS]
