"""Teacher-forced loss of a memorized suffix: how much an edit raises the model's surprise at the canary.

For each sequence s and start t, the mean next-token negative log-likelihood (nats) of ``s[t : t+L]``
given ``s[:t]`` (the prefix and whatever text precedes it), one number per sequence.
"""

from __future__ import annotations

from typing import Sequence, Union

import torch
import torch.nn.functional as F


@torch.no_grad()
def suffix_nll(model, sequences: torch.Tensor, starts: Union[int, Sequence[int]], suffix_len: int,
               batch_size: int = 64) -> torch.Tensor:
    """``[n]`` mean NLL of ``sequences[i, t_i : t_i+L]`` given ``sequences[i, :t_i]`` (``starts``: one t or
    one per sequence; every t ≥ 1 and t + L ≤ length)."""
    if not isinstance(sequences, torch.Tensor) or sequences.dim() != 2 or sequences.dtype.is_floating_point:
        raise ValueError("sequences must be an integer tensor [n, length]")
    n, length = sequences.shape
    ts = [int(starts)] * n if isinstance(starts, int) else [int(t) for t in starts]
    if len(ts) != n:
        raise ValueError(f"starts has {len(ts)} entries for {n} sequences")
    if not isinstance(suffix_len, int) or suffix_len < 1:
        raise ValueError(f"suffix_len must be a positive int, got {suffix_len!r}")
    if any(t < 1 or t + suffix_len > length for t in ts):
        raise ValueError(f"every start t needs 1 ≤ t and t + suffix_len ≤ {length}")
    out = torch.empty(n, dtype=torch.float64)
    order = sorted(range(n), key=lambda i: ts[i])
    for lo in range(0, n, batch_size):  # equal ends in one batch: group by start
        idx = order[lo:lo + batch_size]
        for t in sorted({ts[i] for i in idx}):
            group = [i for i in idx if ts[i] == t]
            seq = sequences[group, :t + suffix_len]
            logp = F.log_softmax(model(seq)[:, t - 1:t + suffix_len - 1].double(), -1)
            nll = -logp.gather(-1, seq[:, t:t + suffix_len, None].to(logp.device))[..., 0]
            out[group] = nll.mean(1).cpu()
    return out
