"""Move ``[batch, pos, head, d]`` tensors into ``[n_chunks, batch·head, chunk, d]`` float32 and back.

Chunks lead so that the sequential hand-off between chunks reads one contiguous block per step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[batch, pos, head, d] -> [n_chunks, batch·head, chunk, d] float32 (one copy), zero padded at the end."""
    b, t, h, d = x.shape
    n = -(-t // chunk_size)
    x = x.float()
    if n * chunk_size != t:
        x = F.pad(x, (0, 0, 0, 0, 0, n * chunk_size - t))
    return x.view(b, n, chunk_size, h, d).permute(1, 0, 3, 2, 4).reshape(n, b * h, chunk_size, d)


def from_chunks(x: torch.Tensor, batch: int, t: int) -> torch.Tensor:
    """[n_chunks, batch·head, chunk, d] -> [batch, pos, head, d], dropping the padding."""
    n, bh, c, d = x.shape
    return x.view(n, batch, bh // batch, c, d).permute(1, 0, 3, 2, 4).reshape(batch, n * c, bh // batch, d)[:, :t]


def states_from_chunks(x: torch.Tensor, batch: int) -> torch.Tensor:
    """[n_chunks, batch·head, d_k, d_v] -> [batch, n_chunks, head, d_k, d_v]."""
    n, bh, dk, dv = x.shape
    return x.view(n, batch, bh // batch, dk, dv).transpose(0, 1)
