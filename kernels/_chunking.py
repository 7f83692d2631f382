"""Move ``[batch, pos, head, ...]`` tensors into ``[batch·head, n_chunks, chunk, ...]`` float32 and back."""

from __future__ import annotations

import torch


def to_chunks(x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """[batch, pos, head, d] -> [batch·head, n_chunks, chunk, d] float32 (one copy), zero padded at the end."""
    b, t, h, d = x.shape
    n = -(-t // chunk_size)
    if n * chunk_size == t:
        out = torch.empty(b, h, t, d, dtype=torch.float32, device=x.device)
    else:
        out = torch.zeros(b, h, n * chunk_size, d, dtype=torch.float32, device=x.device)
    out[:, :, :t] = x.transpose(1, 2)
    return out.view(b * h, n, chunk_size, d)


def from_chunks(x: torch.Tensor, batch: int, t: int) -> torch.Tensor:
    """[batch·head, n_chunks, chunk, d] -> [batch, pos, head, d], dropping the padding."""
    bh, n, c, d = x.shape
    return x.reshape(batch, bh // batch, n * c, d)[:, :, :t].transpose(1, 2)
