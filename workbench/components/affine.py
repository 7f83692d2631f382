"""x W + b as one fused BLAS call."""

from __future__ import annotations

import torch


def affine(x: torch.Tensor, W: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x W + b`` for x ``[..., d_in]``, W ``[d_in, d_out]``, b ``[d_out]`` → ``[..., d_out]``.

    One ``torch.addmm`` (as ``nn.Linear`` computes its output): the bias initialises the output buffer and the
    product accumulates into it, so no second ``[..., d_out]`` tensor is allocated for the sum. For the
    unembedding of a 248k-token vocabulary at 512 positions that second tensor was 0.5 GB (fp32) and its
    allocation and extra pass cost ~10 % of a Qwen3.5-0.8B forward on the CPU (benchmarks/bench_pretrained.py).
    """
    out = torch.addmm(b, x.reshape(-1, x.shape[-1]), W)
    return out.view(*x.shape[:-1], W.shape[-1])
