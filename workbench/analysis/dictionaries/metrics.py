"""How well a WriteSAE reconstructs writes, and how often each atom is used."""

from __future__ import annotations

import pandas as pd
import torch

from .write_sae import WriteSAE


@torch.no_grad()
def write_reconstruction_metrics(sae: WriteSAE, keys: torch.Tensor, values: torch.Tensor) -> dict:
    """On writes ``keys [n, d_k]`` ⊗ ``values [n, d_v]``: relative_mse (Σ‖X − X̂‖²_F / Σ‖X‖²_F),
    explained_variance (1 − Σ‖X − X̂‖²_F / Σ‖X − X̄‖²_F), l0 (mean active atoms per write), dead (atoms never
    active)."""
    keys, values = keys.to(sae.b_dec), values.to(sae.b_dec)
    recon, codes = sae(keys, values)
    x = torch.einsum("nk,nv->nkv", keys, values)
    err = (recon - x).pow(2).sum((-1, -2))
    return {"relative_mse": (err.sum() / x.pow(2).sum()).item(),
            "explained_variance": 1 - (err.sum() / (x - x.mean(0)).pow(2).sum()).item(),
            "l0": (codes > 0).float().sum(-1).mean().item(), "dead": int(((codes > 0).sum(0) == 0).sum())}


@torch.no_grad()
def atom_usage(sae: WriteSAE, keys: torch.Tensor, values: torch.Tensor) -> pd.DataFrame:
    """Per atom: ``fires`` (writes on which its code is non-zero), ``frequency`` (that over all writes) and
    ``mean_code`` (its mean code where it fires)."""
    return code_usage(sae.encode(keys.to(sae.b_dec), values.to(sae.b_dec)))


@torch.no_grad()
def code_usage(codes: torch.Tensor) -> pd.DataFrame:
    """:func:`atom_usage` from any dictionary's codes ``[n, n_atoms]`` (a WriteSAE's or an SAE's)."""
    active = codes > 0
    fires = active.sum(0)
    mean = torch.where(fires > 0, codes.sum(0) / fires.clamp_min(1), torch.zeros_like(codes[0]))
    return pd.DataFrame({"atom": range(codes.shape[-1]), "fires": fires.tolist(),
                         "frequency": (fires / max(len(codes), 1)).tolist(), "mean_code": mean.tolist()})
