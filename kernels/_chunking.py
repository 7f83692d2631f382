"""Helpers that move ``[batch, pos, head, ...]`` tensors into ``[batch, head, n_chunks, chunk, ...]`` and back."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[batch, pos, head, *rest] -> [batch, head, n_chunks, chunk, *rest] in float32, zero padded at the end."""
    b, t, h = x.shape[:3]
    n = -(-t // chunk_size)
    x = x.float().movedim(2, 1)  # [batch, head, pos, *rest]
    pad = n * chunk_size - t
    if pad:
        x = F.pad(x, (0, 0) * (x.dim() - 3) + (0, pad))
    return x.reshape(b, h, n, chunk_size, *x.shape[3:])


def from_chunks(x: torch.Tensor, t: int) -> torch.Tensor:
    """[batch, head, n_chunks, chunk, *rest] -> [batch, pos, head, *rest], dropping the padding."""
    b, h, n, c = x.shape[:4]
    return x.reshape(b, h, n * c, *x.shape[4:])[:, :, :t].movedim(1, 2)
