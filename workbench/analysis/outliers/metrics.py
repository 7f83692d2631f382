"""Outlier metrics on one block of activations ``X: [tokens, width]`` (all results in float64).

With tokens t = 1..n and neurons (channels) j = 1..d:

  s_j    = sqrt(mean_t X_tj²)                          per-neuron RMS
  Kurt   = mean_j s_j⁴ / (mean_j s_j²)²                He et al. (2024); 1 when every neuron has the same
                                                       RMS, d when one neuron carries everything
  m_t    = median_j |X_tj|                             median magnitude of token t's hidden state (the
                                                       mean of the two middle values when d is even)
  MMR    = mean_t max_j |X_tj| / m_t                   max-median ratio
  massive: |X_tj| > 100 and |X_tj| > 1000 · m_t        Sun et al. (2024)
  top-k ratio: the k largest |X_tj| / m_t over all (t, j) — a scale-free version of Sun et al.'s
           top-1/2/3 magnitudes (small models rarely cross the absolute threshold of 100)
  signal propagation: mean over token pairs t ≠ t' of cos(X_t, X_t')  (≈ 1: rank collapse); the
           tokens are taken as one sequence, a zero row has cosine 0 with everything

He et al.'s code reports Var_j(s_j²) after dividing by the mean of s_j², which is Kurt − 1. Sun et al.'s
layer-wise script takes the median over the whole sequence; here m_t is the median of each token's own
hidden state, so that the streaming statistics in :mod:`.stats` are exact. A token with m_t = 0 gives
an infinite ratio (nan if the whole row is 0).
"""

from __future__ import annotations

import torch

MASSIVE_ABS = 100.0
MASSIVE_REL = 1000.0


def check_activations(X: torch.Tensor, name: str = "X") -> torch.Tensor:
    """``X`` as a float64 ``[tokens, width]`` tensor, or a ValueError saying what to pass."""
    if not isinstance(X, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor [tokens, width], got {type(X).__name__}")
    if not X.dtype.is_floating_point:
        raise ValueError(f"{name} must be floating point activations, got dtype {X.dtype}")
    if X.dim() != 2:
        raise ValueError(f"{name} must have shape [tokens, width], got {tuple(X.shape)}; "
                         "flatten the other axes first, e.g. X.reshape(-1, X.shape[-1])")
    if X.shape[0] == 0 or X.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(X.shape)}); pass at least one token and one neuron")
    X = X.detach().double()
    if not torch.isfinite(X).all():
        raise ValueError(f"{name} contains nan or inf; compute the activations in a wider dtype")
    return X


def median_abs(X: torch.Tensor) -> torch.Tensor:
    """m_t = median_j |X_tj| for each token: ``[tokens]`` (mean of the two middle values for even width)."""
    a = check_activations(X).abs().sort(-1).values
    d = a.shape[-1]
    return a[:, d // 2] if d % 2 else (a[:, d // 2 - 1] + a[:, d // 2]) / 2


def ratio_to_median(a: torch.Tensor, med: torch.Tensor) -> torch.Tensor:
    """|X_tj| / m_t for magnitudes ``a: [tokens, width]`` and medians ``med: [tokens]``, with 0/0 := 1."""
    r = a / med[:, None]
    return torch.where(torch.isnan(r), torch.ones_like(r), r)


def neuron_rms(X: torch.Tensor) -> torch.Tensor:
    """s_j = sqrt(mean_t X_tj²): ``[width]``."""
    return check_activations(X).pow(2).mean(0).sqrt()


def kurtosis_from_rms(s: torch.Tensor) -> torch.Tensor:
    """Kurt = mean_j s_j⁴ / (mean_j s_j²)² of per-neuron RMS values ``s: [width]`` (nan if all are 0)."""
    if not isinstance(s, torch.Tensor) or s.dim() != 1 or s.numel() == 0:
        raise ValueError("s must be a non-empty 1-d tensor of per-neuron RMS values [width]")
    s2 = s.double().pow(2)
    return s2.pow(2).mean() / s2.mean().pow(2)


def kurtosis(X: torch.Tensor) -> torch.Tensor:
    """Kurt = mean_j s_j⁴ / (mean_j s_j²)², s_j = sqrt(mean_t X_tj²) (He et al. 2024); 0-d float64."""
    return kurtosis_from_rms(neuron_rms(X))


def max_median_ratio(X: torch.Tensor) -> torch.Tensor:
    """MMR = mean_t max_j |X_tj| / median_j |X_tj|; 0-d float64."""
    X = check_activations(X)
    return ratio_to_median(X.abs(), median_abs(X)).amax(-1).mean()


def massive_mask(X: torch.Tensor, abs_threshold: float = MASSIVE_ABS, rel_threshold: float = MASSIVE_REL
                 ) -> torch.Tensor:
    """Massive activations (Sun et al. 2024): |X_tj| > abs_threshold and > rel_threshold · median_j |X_tj|.

    Returns a bool ``[tokens, width]`` mask.
    """
    X = check_activations(X)
    if not abs_threshold >= 0 or not rel_threshold >= 0:
        raise ValueError(f"thresholds must be ≥ 0, got abs {abs_threshold!r}, rel {rel_threshold!r}")
    a = X.abs()
    return (a > abs_threshold) & (a > rel_threshold * median_abs(X)[:, None])


def top_ratios(X: torch.Tensor, k: int = 3) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The k largest |X_tj| / median_j |X_tj| over all entries, largest first.

    Returns ``(ratios [k'], token [k'], neuron [k'])`` with k' = min(k, tokens · width).
    """
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    X = check_activations(X)
    r = ratio_to_median(X.abs(), median_abs(X))
    values, flat = r.flatten().topk(min(k, r.numel()))
    return values, flat // X.shape[1], flat % X.shape[1]


def signal_propagation(X: torch.Tensor) -> torch.Tensor:
    """Mean off-diagonal entry of the token cosine Gram matrix, (Σ_{t≠t'} cos(X_t, X_t')) / (n(n−1)).

    The tokens are one sequence (n ≥ 2); a zero row has cosine 0 with every other row. 0-d float64.
    """
    X = check_activations(X)
    n = X.shape[0]
    if n < 2:
        raise ValueError("signal propagation needs at least two tokens")
    U = torch.nn.functional.normalize(X, dim=-1)
    off_diagonal = U.sum(0).pow(2).sum() - U.pow(2).sum()  # ‖Σ_t u_t‖² − Σ_t ‖u_t‖²
    return off_diagonal / (n * (n - 1))
