"""Normalisation layers with hooks on the scale and the normalised output (as in TransformerLens)."""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint


def rms_normalize(x: torch.Tensor, eps: float) -> torch.Tensor:
    """x / √(mean(x²) + ε) over the last axis: the one home of the per-head RMS norms (QK-norm, the read-out norms
    of DeltaNet, GLA, Mamba-2 and the memories' ``output_norm``); the caller applies its gain."""
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)


class LayerNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d))
        self.b = nn.Parameter(torch.zeros(d))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(-1, keepdim=True)
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w + self.b)


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d))
        self.hook_scale = HookPoint()  # [batch, pos, 1]
        self.hook_normalized = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.hook_scale((x.pow(2).mean(-1, keepdim=True) + self.eps).sqrt())
        return self.hook_normalized(x / scale * self.w)


class QKRMSNorm(nn.Module):
    """RMS normalisation of queries or keys ``[batch, pos, head, d]`` over d, times a learnable gain ``[d]``
    (the Outlier Protected block's QK-norm). No hooks: ``hook_q``/``hook_k`` show its output."""

    def __init__(self, d: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return rms_normalize(x, self.eps) * self.w


class Gain(nn.Module):
    """A learnable per-channel gain ``[d]`` on the last axis: the Outlier Protected block's QK-norm for the
    delta-rule mixers, applied to their L2-normalised query (w ⊙ q/‖q‖; w = 1 is the plain L2 query).

    ``RMSNorm(q) ⊙ w · d^-½ = w ⊙ q/‖q‖``: with the mixers' read-out scale d^-½ this is RMS-with-gain up to
    the constant √d, folded into the gain. No hooks: ``hook_q`` shows its output."""

    def __init__(self, d: int):
        super().__init__()
        self.w = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def make_norm(kind: str, d: int, eps: float) -> nn.Module:
    if kind == "layernorm":
        return LayerNorm(d, eps)
    if kind == "rmsnorm":
        return RMSNorm(d, eps)
    return nn.Identity()
