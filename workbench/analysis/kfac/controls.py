"""Controls for the K-FAC edit: keep as many components in a *random* basis, or ablate a whole MLP.

- :func:`random_subspace_edit` keeps, for each layer, ``k`` rank-one components ``u_i v_jᵀ`` of W written
  in a Haar-random orthonormal basis (U ``[d_out, d_out]``, V ``[d_in, d_in]``; C = Uᵀ W V), the k positions
  drawn uniformly without replacement: W' = U (C ⊙ mask) Vᵀ. With k the number the K-FAC edit keeps, it is
  the K-FAC edit with the curvature basis and ordering replaced by chance (the same structure and rank).
- :func:`ablate_mlp` replaces an MLP's output by a constant: zero (``mode="zero"``) or its mean over
  ``batches`` (``mode="mean"``), by writing ``W_out = 0`` and ``b_out = mean`` (or 0).

Both return ``(new_model, report)`` with the columns of :func:`.edit.kfac_edit`; the model is never changed.
"""

from __future__ import annotations

import copy
from typing import Iterable, Mapping, Optional

import pandas as pd
import torch

from .edit import REPORT_COLUMNS
from .sites import flat_weight, linear_sites, resolve_sites, write_weight

MODES = ("zero", "mean")


def haar_orthogonal(n: int, generator: torch.Generator) -> torch.Tensor:
    """A Haar-random orthogonal ``[n, n]`` matrix (float64): QR of a Gaussian, signs fixed by R's diagonal."""
    Q, R = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=torch.float64))
    return Q * torch.sign(torch.diagonal(R)).where(torch.diagonal(R) != 0, torch.ones(n, dtype=torch.float64))


def random_project(W: torch.Tensor, kept: int, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """W ``[d_out, d_in]`` → (W' float64, info): ``kept`` random components in a random Kronecker basis."""
    d_out, d_in = W.shape
    n = d_out * d_in
    if isinstance(kept, bool) or not isinstance(kept, int) or not 0 <= kept <= n:
        raise ValueError(f"kept must be an int in [0, {n}] (components of a {d_out}×{d_in} weight), got {kept!r}")
    U, V = haar_orthogonal(d_out, generator), haar_orthogonal(d_in, generator)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[torch.randperm(n, generator=generator)[:kept]] = True
    C = U.T @ W.double() @ V
    W_new = U @ (C * mask.view(d_out, d_in)) @ V.T
    energy = C.pow(2)
    total = float(energy.sum())
    return W_new, {"components": n, "kept": kept,
                   "mass_kept": float(energy.flatten()[mask].sum()) / total if total > 0 else float("nan")}


@torch.no_grad()
def random_subspace_edit(model, kept: Mapping[str, int], generator: torch.Generator):
    """Keep ``kept[param]`` random components (see the module docstring) of each named layer; one draw of
    ``generator`` per call. Report ``mass_kept`` is the fraction of ‖W‖² kept (not curvature)."""
    if not kept:
        raise ValueError("kept is empty; pass {parameter name: number of components to keep}")
    sites = resolve_sites(model, list(kept))
    new = copy.deepcopy(model)
    rows = []
    for site in sites:
        W = flat_weight(model, site).T  # [d_out, d_in]
        W_new, info = random_project(W, kept[site.param], generator)
        change = write_weight(new, site, W, W_new, info)
        rows.append({"param": site.param, "kind": site.kind, "layer": site.layer, "method": "random", "rho": None,
                     **info, "kept_fraction": info["kept"] / info["components"], "weight_rel_change": change})
    return new, pd.DataFrame(rows)[REPORT_COLUMNS]


@torch.no_grad()
def mlp_output_mean(model, layer: int, batches: Iterable[torch.Tensor]) -> torch.Tensor:
    """``[d_model]``: the mean over every token of ``batches`` of the MLP output of ``layer``."""
    name = f"blocks.{layer}.hook_mlp_out"
    total, n = None, 0
    for tokens in batches:
        _, cache = model.run_with_cache(tokens, names_filter=[name])
        out = cache[name].double().reshape(-1, cache[name].shape[-1])
        total = out.sum(0) if total is None else total + out.sum(0)
        n += out.shape[0]
    if n == 0:
        raise ValueError("mode='mean' needs at least one batch of tokens")
    return total / n


@torch.no_grad()
def ablate_mlp(model, layer: int, mode: str = "mean", batches: Optional[Iterable[torch.Tensor]] = None):
    """The MLP of ``layer`` (negative: from the last) outputs a constant: 0 or its mean over ``batches``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    sites = [s for s in linear_sites(model, layers=[layer], kinds=["mlp_out"])]
    if not sites:
        raise ValueError(f"layer {layer} has no MLP output weight to ablate")
    site = sites[0]
    i = site.layer
    mean = mlp_output_mean(model, i, batches if batches is not None else []) if mode == "mean" else None
    new = copy.deepcopy(model)
    W = flat_weight(model, site).T
    info = {"components": W.numel(), "kept": 0, "mass_kept": 0.0}
    change = write_weight(new, site, W, torch.zeros_like(W, dtype=torch.float64), info)
    bias = new.get_parameter(f"blocks.{i}.mlp.b_out")
    bias.copy_(torch.zeros_like(bias) if mean is None else mean.to(bias.dtype))
    row = {"param": site.param, "kind": site.kind, "layer": i, "method": f"ablate_{mode}", "rho": None, **info,
           "kept_fraction": 0.0, "weight_rel_change": change}
    return new, pd.DataFrame([row])[REPORT_COLUMNS]
