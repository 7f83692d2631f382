"""The decay matrix Γ of gated recurrences, in one place.

With log decays g_j ≤ 0 and their cumulative sums c_t = Σ_{j≤t} g_j along the last axis,

    Γ_ti = exp(c_t − c_i) = Π_{j=i+1..t} α_j   for i ≤ t,     Γ_ti = 0   for i > t,

the factor by which a write at i has decayed when it is read at t. Used by the chunkwise kernels
(within a chunk), by the exact effective attention and by the read-out of patched writes.
"""

from __future__ import annotations

import torch

# exp() is slow on -inf and on results that underflow to denormals; decays below e^-80 are exactly
# negligible next to the O(1) terms they are added to, so log decays are clamped to [-80, 0].
LOG_FLOOR = -80.0


def decay_matrix(cum: torch.Tensor, inplace: bool = False) -> torch.Tensor:
    """Γ ``[..., pos, pos]`` (query, key) from cumulative log decays ``cum [..., pos]``: lower triangular,
    exactly 0 above the diagonal. ``inplace`` builds it in the difference buffer (no autograd)."""
    diff = cum[..., :, None] - cum[..., None, :]
    if inplace:
        return diff.clamp_(LOG_FLOOR, 0.0).exp_().tril_()
    return diff.clamp(LOG_FLOOR, 0.0).exp().tril()
