"""Feature maps φ for linear attention (Schlag, Irie & Schmidhuber 2021, Table/Sec. 4).

All map ``[..., d_head] -> [..., d_k]``:
  - identity:  φ(x) = x                                         d_k = d_head
  - elu1:      φ(x) = elu(x) + 1   (Katharopoulos et al. 2020)   d_k = d_head
  - dpfp (ν):  x' = [relu(x), relu(−x)];  φ(x) = concat_{j=1..ν} x' ⊙ roll(x', j)   d_k = 2·d_head·ν
  - favor (m): FAVOR+ positive random features (Performer), fixed and seeded:
               φ(x) = exp([Wx, −Wx] − ‖x‖²/2) / √(2m), x pre-scaled by d_head^-¼,   d_k = 2m

:func:`feature_dim` is the one computation of d_k; :func:`favor_map` and :func:`orthogonal_features` are
FAVOR+ itself, also for a projection drawn anew at every call (the retrieval model's ``favor_redraw``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


KINDS = ("identity", "elu1", "dpfp", "favor")


def feature_dim(kind: str, d_head: int, nu: int = 1, m: int = 32) -> int:
    """d_k, the width of φ(x) for x of width ``d_head``: ``nu`` is DPFP's ν, ``m`` FAVOR+'s feature count."""
    if kind in ("identity", "elu1"):
        return d_head
    if kind == "dpfp":
        return 2 * d_head * nu
    if kind == "favor":
        return 2 * m
    raise ValueError(f"feature map must be one of {KINDS}, got {kind!r}")


def favor(x: torch.Tensor, wx: torch.Tensor) -> torch.Tensor:
    """FAVOR+ φ(x) = exp([wx, −wx] − ‖x‖²/2) / √(2m) from ``x [..., d]`` and its projection ``wx = xW [..., m]``
    → ``[..., 2m]`` (the caller projects: one W per head, or one drawn per call)."""
    sq = x.pow(2).sum(-1, keepdim=True) / 2
    return torch.cat([(wx - sq).exp(), (-wx - sq).exp()], dim=-1) / math.sqrt(2 * wx.shape[-1])


def favor_map(x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
    """FAVOR+ of ``x [..., d]`` with one ``projection W [d, m]`` → ``[..., 2m]`` (no input scaling)."""
    return favor(x, x @ projection)


def orthogonal_features(d: int, m: int, generator: torch.Generator) -> torch.Tensor:
    """``[d, m]`` random projection of FAVOR+ (Choromanski et al. 2021): columns orthonormal within each block
    of d, each then scaled to the norm of an independent d-dim standard Gaussian (so marginally Gaussian)."""
    blocks = []
    for start in range(0, m, d):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=generator))  # [d, d], orthonormal columns
        norms = torch.randn(d, d, generator=generator).norm(dim=0)  # [d], chi(d)
        blocks.append((q * norms)[:, : min(d, m - start)])
    return torch.cat(blocks, dim=1)


def dpfp(x: torch.Tensor, nu: int) -> torch.Tensor:
    xp = torch.cat([F.relu(x), F.relu(-x)], dim=-1)
    return torch.cat([xp * xp.roll(shifts=j, dims=-1) for j in range(1, nu + 1)], dim=-1)


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
        return favor(x, torch.einsum("bphd,hdm->bphm", x, self.projection))
