"""Rotary position embedding (Su et al., RoFormer), the GPT-NeoX layout: the two halves of each head are
rotated against each other (not adjacent pairs), all ``d`` channels, position t by angle t·θ_i:

    θ_i = base^(−2i/d),  i < d/2;   rot(x)_t = x_t ⊙ [cos, cos](tθ) + [−x₂, x₁]_t ⊙ [sin, sin](tθ)

As fla's ``RotaryEmbedding`` (fla/modules/rotary/ops.py, ``rotary_embedding_ref``, ``interleaved=False``):
angles computed in float32 from float32 positions.

Partial rotary (``dim`` < d, e.g. Qwen3-Next / Qwen3.5's ``partial_rotary_factor``; transformers'
``apply_rotary_pos_emb``): the first ``dim`` channels are rotated as above with θ_i = base^(−2i/dim), the
rest pass through unchanged.
"""

from __future__ import annotations

import torch


def rotate(x: torch.Tensor, base: float, dim: int = 0, offset: int = 0) -> torch.Tensor:  # [batch, pos, head, d]
    """``x`` with its first ``dim`` channels of each head rotated (0: all of them); ``x[:, 0]`` is at position
    ``offset`` (a continued sequence)."""
    if dim and dim < x.shape[-1]:
        return torch.cat((rotate(x[..., :dim], base, offset=offset), x[..., dim:]), dim=-1)
    d = x.shape[-1]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, device=x.device, dtype=torch.float32) / d))  # [d/2]
    angles = torch.outer(torch.arange(offset, offset + x.shape[1], device=x.device, dtype=torch.float32), inv_freq)  # [pos, d/2]
    cos = angles.cos().to(x.dtype).repeat(1, 2)[:, None]  # [pos, 1, d]
    sin = angles.sin().to(x.dtype).repeat(1, 2)[:, None]
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat((-x2, x1), dim=-1) * sin
