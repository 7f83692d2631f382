"""The decay of gated recurrences, in one place: cumulative log decays and the decay matrix Γ.

With log decays g_j ≤ 0 and their cumulative sums c_t = Σ_{j≤t} g_j along the last axis,

    Γ_ti = exp(c_t − c_i) = Π_{j=i+1..t} α_j   for i ≤ t,     Γ_ti = 0   for i > t,

the factor by which a write at i has decayed when it is read at t. Used by the chunkwise kernels
(within a chunk), by the exact effective attention and by the read-out of patched writes.

A per-key-channel decay (Kimi Delta Attention: g ``[..., pos, d_k]``) decays each row of the state on its own,
Γ_tic = exp(c_tc − c_ic); a product of a query (or key) at t with a key at i then decays channel by channel,
Σ_c x_tc y_ic Γ_tic (:func:`decayed_products`; the scalar decay is the case of equal channels).

Accuracy (kernels/README.md, "Large decays and hard resets"): the cumulative sums are taken in float64,
so c_t − c_i keeps its digits when a large decay (g = −200, say) made both c_t and c_i large; in float32
that difference loses |c| · 6e-8 and Γ entries of order one come out with 1e-5–1e-4 relative error (the
peers' chunk forms lose exactly that). A hard reset g = −inf is taken as g = ``HARD_RESET`` (−1e4): its
exp is exactly 0 in float32 and float64 alike, and −inf − (−inf) = NaN never arises.
"""

from __future__ import annotations

import torch

# exp() is slow on -inf and on results that underflow to denormals, so log decays are clamped to [-80, 0]
# before exp, and a decay below e^-80 is then set to exactly 0 (not left at e^-80: a hard reset must forget
# exactly, e.g. an initial state after g = −inf; found by tests/test_kernel_properties.py).
LOG_FLOOR = -80.0
# what a log decay of −inf (forget everything) becomes in the cumulative sums: exp of it, or of any sum
# containing it, is exactly 0; finite, so differences of cumulative sums stay defined
HARD_RESET = -1e4


def cumulative_log_decay(g: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """c = cumsum(g) along ``dim`` in float64, with −inf (and anything below ``HARD_RESET``) taken as
    ``HARD_RESET``. float64: see the module docstring."""
    return g.double().clamp(min=HARD_RESET).cumsum(dim)


def decay_from_log(x: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """exp(x) of (cumulative) log decays ``x ≤ 0`` as ``dtype``; exactly 0 below ``LOG_FLOOR``."""
    return x.clamp(min=LOG_FLOOR).to(dtype).exp().masked_fill(x < LOG_FLOOR, 0.0)


def decay_matrix(cum: torch.Tensor, inplace: bool = False, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Γ ``[..., pos, pos]`` (query, key) of ``dtype`` from cumulative log decays ``cum [..., pos]`` (from
    :func:`cumulative_log_decay`): lower triangular, exactly 0 above the diagonal. The differences are
    taken in ``cum``'s precision; ``inplace`` reuses the buffers (no autograd)."""
    diff = cum[..., :, None] - cum[..., None, :]
    if inplace:  # fewer passes: what was clamped to e^-80 (or rounds to it) is set to 0 by the threshold
        out = diff.to(dtype).clamp_(LOG_FLOOR, 0.0).exp_()
        return torch.nn.functional.threshold_(out, _floor_value(dtype), 0.0).tril_()
    gone = diff < LOG_FLOOR  # decayed below e^-80: exactly 0 (see LOG_FLOOR)
    return diff.clamp(LOG_FLOOR, 0.0).to(dtype).exp().masked_fill(gone, 0.0).tril()


def _floor_value(dtype: torch.dtype) -> float:
    """exp(LOG_FLOOR) as ``dtype`` rounds it: a decay at or below it is taken as exactly 0."""
    return float(torch.tensor(LOG_FLOOR, dtype=dtype).exp())


def decayed_products(x: torch.Tensor, y: torch.Tensor, cum: torch.Tensor, dtype: torch.dtype = torch.float32,
                     max_elements: int = 1 << 24) -> torch.Tensor:
    """``[..., pos, pos]`` (t, i): Σ_c x_tc y_ic Γ_tic for i ≤ t, 0 above the diagonal, from ``x``, ``y``
    ``[..., pos, d]`` and cumulative log decays ``cum`` ``[..., pos]`` (one decay for every channel: Γ_ti (x_t·y_i))
    or ``[..., pos, d]`` (per channel). The per-channel decay tensor is formed in blocks of at most
    ``max_elements`` entries (of rows t and of the leading axes; only keys i ≤ the block's last row), so memory
    stays bounded for long sequences; the differences of ``cum`` are taken in its precision (float64)."""
    if cum.dim() == x.dim() - 1:
        return (x @ y.transpose(-1, -2)) * decay_matrix(cum, dtype=dtype)
    lead, (t, d) = x.shape[:-2], x.shape[-2:]
    xf, yf, cf = (a.reshape(-1, t, d) for a in (x.to(dtype), y.to(dtype), cum))
    n = xf.shape[0]
    rows = max(1, min(t, max_elements // (t * d)))
    batch = max(1, max_elements // (rows * t * d))
    causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
    blocks = []
    for n0 in range(0, n, batch):
        n1 = min(n, n0 + batch)
        row_blocks = []
        for t0 in range(0, t, rows):
            t1 = min(t, t0 + rows)  # rows t0..t1-1 read keys 0..t1-1 only
            diff = cf[n0:n1, t0:t1, None, :] - cf[n0:n1, None, :t1, :]  # [block, rows, keys, d]
            decay = diff.clamp(LOG_FLOOR, 0.0).to(dtype).exp().masked_fill(diff < LOG_FLOOR, 0.0) \
                * causal[t0:t1, :t1, None]
            part = torch.einsum("ntc,nic,ntic->nti", xf[n0:n1, t0:t1], yf[n0:n1, :t1], decay)
            row_blocks.append(torch.nn.functional.pad(part, (0, t - t1)))
        blocks.append(torch.cat(row_blocks, dim=1))
    return torch.cat(blocks, dim=0).view(*lead, t, t)
