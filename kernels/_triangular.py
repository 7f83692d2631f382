"""Unit lower-triangular systems: a solve (:func:`solve_unit_lower`, public) and the inverse by doubling the
block size (:func:`unit_lower_inverse`, what the chunked kernels use).

For a unit lower-triangular matrix split into blocks ``[[A, 0], [B, D]]``,

    [[A, 0], [B, D]]⁻¹ = [[A⁻¹, 0], [−D⁻¹ B A⁻¹, D⁻¹]],

so starting from the (trivial) inverses of the 1×1 diagonal blocks, each level inverts all diagonal
blocks of twice the size at once with two batched matmuls. log₂(C) levels instead of the C − 1
dependent row updates of forward substitution, and instead of one LAPACK ``trsm`` call per matrix
(what ``torch.linalg.solve_triangular`` does on the CPU for a batch). Every step is differentiable.
"""

from __future__ import annotations

import torch


def solve_unit_lower(L: torch.Tensor, B: torch.Tensor, transpose: bool = False) -> torch.Tensor:
    """X with ``(I + tril(L, −1)) X = B``, or with ``transpose``: ``(I + tril(L, −1))ᵀ X = B``.

    ``L [..., n, n]`` (only its strict lower triangle is read: the diagonal is taken as ones), ``B [..., n, k]``
    → ``[..., n, k]``, by ``torch.linalg.solve_triangular`` (differentiable). The UT form of the delta rule
    solves such a system: the effective attention of a delta-rule memory, the W·Y form of its chunks.
    """
    if L.dim() < 2 or L.shape[-1] != L.shape[-2]:
        raise ValueError(f"solve_unit_lower needs square matrices L [..., n, n], got {tuple(L.shape)}")
    if B.dim() < 2 or B.shape[-2] != L.shape[-1]:
        raise ValueError(f"B must be [..., n, k] with n = {L.shape[-1]} (the size of L), got {tuple(B.shape)}")
    return torch.linalg.solve_triangular(L.mT if transpose else L, B, upper=transpose, unitriangular=True)


def unit_lower_inverse(M: torch.Tensor) -> torch.Tensor:
    """``(I + tril(M, −1))⁻¹`` for ``M`` of shape ``[..., C, C]``; reads only the strict lower triangle of M.

    C that is not a power of two is zero-padded to one (the padding is an identity block, so the
    leading C×C block of the padded inverse is the inverse asked for).
    """
    *batch, C, C2 = M.shape
    if C != C2:
        raise ValueError(f"unit_lower_inverse needs square matrices, got [..., {C}, {C2}]")
    P = 1 << max(C - 1, 0).bit_length()
    if P != C:
        M = torch.nn.functional.pad(M, (0, P - C, 0, P - C))
    M = M.reshape(-1, P, P)
    bsz = M.shape[0]
    inv = M.new_ones(bsz, P, 1, 1)  # [batch, n_blocks, s, s]: inverses of the diagonal blocks of size s
    s = 1
    while s < P:
        nb = P // (2 * s)
        # bottom-left s×s block of each diagonal 2s×2s block of M: [batch, nb, s, s]
        B = M.view(bsz, nb, 2 * s, nb, 2 * s).diagonal(dim1=1, dim2=3)[:, s:, :s].permute(0, 3, 1, 2)
        A, D = inv[:, 0::2], inv[:, 1::2]
        merged = M.new_zeros(bsz, nb, 2 * s, 2 * s)  # one allocation and three block copies per level
        merged[..., :s, :s] = A
        merged[..., s:, :s] = -(D @ B) @ A
        merged[..., s:, s:] = D
        inv = merged
        s *= 2
    return inv[:, 0, :C, :C].reshape(*batch, C, C)
