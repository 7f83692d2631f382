"""Depthwise causal 1-D convolution over positions (the "short convolution" of DeltaNet / Mamba)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ShortConv(nn.Module):
    def __init__(self, channels: int, kernel_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(channels, 1, kernel_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, channels] -> same
        x = F.pad(x.transpose(1, 2), (self.kernel_size - 1, 0))
        return F.conv1d(x, self.weight, groups=self.weight.shape[0]).transpose(1, 2)
