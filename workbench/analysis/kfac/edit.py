"""The K-FAC memorization edit (Merullo et al. 2025): keep a layer's high-curvature components only.

With W ``[d_out, d_in]`` (so ``y = W a``; this is ``W_flatᵀ`` of :mod:`.sites`), G = U_G Λ U_Gᵀ and
A = U_A M U_Aᵀ (float64 ``eigh``; round-off negatives clamped to 0):

    C = U_Gᵀ W U_A          Π_ij = λ_i μ_j          (the Fisher A ⊗ G is diagonal in this basis)
    keep the fewest largest Π_ij whose sum reaches ρ · (Σλ)(Σμ)   (ties: the lower flat index first)
    W' = U_G (C ⊙ mask) U_Aᵀ

ρ = 1 keeps every component and leaves W bitwise unchanged; ρ = 0 zeroes W. Biases are kept.
:func:`kfac_edit` returns a new model (a deep copy; the original is never changed) and a report.
"""

from __future__ import annotations

import copy
from typing import Mapping, Union

import pandas as pd
import torch

from .sites import flat_weight, resolve_sites, write_weight
from .stats import KFACFactors

REPORT_COLUMNS = ["param", "kind", "layer", "method", "rho", "components", "kept", "kept_fraction", "mass_kept",
                  "weight_rel_change"]


def check_rho(rho) -> float:
    """ρ, the fraction of curvature mass (or spectral energy) an edit keeps, in (0, 1]: 1 keeps the weights,
    smaller removes more; 0 would remove the whole weight, which is no edit to study. The one check of ρ
    (K-FAC, SVD, the spectrum plot, the app)."""
    if isinstance(rho, bool) or not isinstance(rho, (int, float)) or not 0 < rho <= 1:
        raise ValueError(f"ρ must be in (0, 1] (the fraction of curvature mass to keep; 1 keeps the weights as they "
                         f"are, smaller removes more), got {rho!r}")
    return float(rho)


def eigen(M: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues (≥ 0, ascending) and eigenvectors (columns) of a symmetric PSD matrix, float64."""
    vals, vecs = torch.linalg.eigh(M.double())
    return vals.clamp_min(0.0), vecs


def curvature_mask(lam: torch.Tensor, mu: torch.Tensor, rho: float) -> torch.Tensor:
    """``[len(lam), len(mu)]`` bool: the fewest largest Π_ij = λ_i μ_j whose sum reaches ρ·(Σλ)(Σμ)."""
    rho = check_rho(rho)
    Pi = (lam.double()[:, None] * mu.double()[None, :]).flatten()
    mask = torch.zeros(Pi.numel(), dtype=torch.bool, device=Pi.device)
    if rho == 1.0:
        return mask.fill_(True).view(len(lam), len(mu))
    total = float(lam.double().sum() * mu.double().sum())
    if total == 0.0:
        return mask.view(len(lam), len(mu))
    order = torch.sort(Pi, descending=True, stable=True).indices
    cum = Pi[order].cumsum(0)
    k = int(torch.searchsorted(cum, torch.tensor([rho * total], dtype=cum.dtype, device=cum.device))[0]) + 1
    mask[order[:min(k, Pi.numel())]] = True
    return mask.view(len(lam), len(mu))


def kfac_project(W: torch.Tensor, A: torch.Tensor, G: torch.Tensor, rho: float) -> tuple[torch.Tensor, dict]:
    """W ``[d_out, d_in]`` → (W' float64, info with ``kept``, ``components``, ``mass_kept``)."""
    if A.shape != (W.shape[1], W.shape[1]) or G.shape != (W.shape[0], W.shape[0]):
        raise ValueError(f"W is {tuple(W.shape)} = [d_out, d_in]; need A [d_in, d_in] and G [d_out, d_out], "
                         f"got A {tuple(A.shape)} and G {tuple(G.shape)}")
    lam, U_G = eigen(G)
    mu, U_A = eigen(A)
    mask = curvature_mask(lam, mu, rho)
    C = U_G.T @ W.double() @ U_A
    W_new = U_G @ (C * mask) @ U_A.T
    Pi = lam[:, None] * mu[None, :]
    total = float(Pi.sum())
    info = {"components": mask.numel(), "kept": int(mask.sum()),
            "mass_kept": float(Pi[mask].sum()) / total if total > 0 else float("nan")}
    return W_new, info


FactorsLike = Union[KFACFactors, tuple]


def _factors(name: str, f: FactorsLike, site) -> tuple[torch.Tensor, torch.Tensor]:
    A, G = f.result() if isinstance(f, KFACFactors) else f
    if tuple(A.shape) != (site.d_in, site.d_in) or tuple(G.shape) != (site.d_out, site.d_out):
        raise ValueError(f"factors for {name} have A {tuple(A.shape)}, G {tuple(G.shape)}; the layer needs "
                         f"A [{site.d_in}, {site.d_in}] and G [{site.d_out}, {site.d_out}] (collect them on this model)")
    return A, G


@torch.no_grad()
def kfac_edit(model, factors: Mapping[str, FactorsLike], rho: Union[float, Mapping[str, float]]):
    """Edit every layer in ``factors`` (parameter name → :class:`KFACFactors` or ``(A, G)``) at ``rho``
    (one number, or one per layer). Returns ``(new_model, report)``; the report has one row per layer:
    ``param, kind, layer, method, rho, components, kept, kept_fraction, mass_kept, weight_rel_change``
    (‖W' − W‖_F / ‖W‖_F)."""
    if not factors:
        raise ValueError("factors is empty; pass {parameter name: KFACFactors} (see collect_kfac)")
    if isinstance(rho, Mapping):
        if set(rho) != set(factors):
            raise ValueError(f"rho per layer must name exactly the layers of factors: {sorted(factors)}")
        rhos = {name: check_rho(rho[name]) for name in factors}
    else:
        rhos = {name: check_rho(rho) for name in factors}
    sites = resolve_sites(model, list(factors))
    new = copy.deepcopy(model)
    rows = []
    for site in sites:
        A, G = _factors(site.param, factors[site.param], site)
        W = flat_weight(model, site).T  # [d_out, d_in]
        W_new, info = kfac_project(W, A, G, rhos[site.param])
        change = write_weight(new, site, W, W_new, info)
        rows.append({"param": site.param, "kind": site.kind, "layer": site.layer, "method": "kfac",
                     "rho": rhos[site.param], **info, "kept_fraction": info["kept"] / info["components"],
                     "weight_rel_change": change})
    return new, pd.DataFrame(rows)[REPORT_COLUMNS]


def curvature_spectrum(f: FactorsLike) -> pd.DataFrame:
    """All Π_ij = λ_i μ_j of a layer, largest first: ``rank, i, j, curvature, fraction, cumulative``."""
    A, G = f.result() if isinstance(f, KFACFactors) else f
    lam, _ = eigen(G)
    mu, _ = eigen(A)
    Pi = (lam[:, None] * mu[None, :]).flatten()
    order = torch.sort(Pi, descending=True, stable=True).indices
    total = float(Pi.sum())
    vals = Pi[order]
    frac = vals / total if total > 0 else torch.full_like(vals, float("nan"))
    return pd.DataFrame({"rank": range(len(vals)), "i": (order // len(mu)).tolist(), "j": (order % len(mu)).tolist(),
                         "curvature": vals.tolist(), "fraction": frac.tolist(), "cumulative": frac.cumsum(0).tolist()})
