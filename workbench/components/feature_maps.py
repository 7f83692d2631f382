"""Feature maps φ for linear attention (Schlag, Irie & Schmidhuber 2021, Table/Sec. 4).

All map ``[..., d_head] -> [..., d_k]``:
  - identity:  φ(x) = x                                         d_k = d_head
  - elu1:      φ(x) = elu(x) + 1   (Katharopoulos et al. 2020)   d_k = d_head
  - dpfp (ν):  x' = [relu(x), relu(−x)];  φ(x) = concat_{j=1..ν} x' ⊙ roll(x', j)   d_k = 2·d_head·ν
  - favor (m): FAVOR+ positive random features (Performer), fixed and seeded:
               φ(x) = exp([Wx, −Wx] − ‖x‖²/2) / √(2m), x pre-scaled by d_head^-¼,   d_k = 2m
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def dpfp(x: torch.Tensor, nu: int) -> torch.Tensor:
    xp = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    return torch.cat([xp * xp.roll(shifts=j, dims=-1) for j in range(1, nu + 1)], dim=-1)


def feature_dim(kind: str, d_head: int, nu: int = 1, n_features: int = 32) -> int:
    """d_k: the width φ maps a ``d_head`` vector to."""
    if kind in ("identity", "elu1"):
        return d_head
    if kind == "dpfp":
        return 2 * d_head * nu
    if kind == "favor":
        return 2 * n_features
    raise ValueError(f"unknown feature map {kind!r}; choose from ('identity', 'elu1', 'dpfp', 'favor')")


class FeatureMap(nn.Module):
    def __init__(self, kind: str, d_head: int, n_heads: int, nu: int = 1, n_features: int = 32, seed: int = 0):
        super().__init__()
        self.kind, self.nu, self.d_head = kind, nu, d_head
        if kind == "favor":
            gen = torch.Generator().manual_seed(seed)
            # one fixed projection per head: [head, d_head, m]; rebuilt from the seed, never trained
            self.register_buffer(
                "projection", torch.randn(n_heads, d_head, n_features, generator=gen), persistent=False
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_head]
        if self.kind == "identity":
            return x
        if self.kind == "elu1":
            return F.elu(x) + 1
        if self.kind == "dpfp":
            return dpfp(x, self.nu)
        x = x * self.d_head ** -0.25
        wx = torch.einsum("bphd,hdm->bphm", x, self.projection)
        sq = x.pow(2).sum(-1, keepdim=True) / 2
        m = self.projection.shape[-1]
        return torch.cat([(wx - sq).exp(), (-wx - sq).exp()], dim=-1) / math.sqrt(2 * m)
