"""A linear probe for latent knowledge (Mallen et al. 2023; Paulo et al. 2024 §5): logistic regression on the
residual stream at the last prompt token, trained on Alice's items to predict the truth, read on Bob's.

The probe is written here (no scikit-learn in the environment): standardised features, L2-penalised logistic
regression fitted by L-BFGS; AUROC by the rank statistic (ties count one half).
"""

from __future__ import annotations

import torch


def auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """P(score of a random positive > score of a random negative), ties one half; NaN with one class only."""
    labels = labels.bool()
    pos, neg = scores[labels], scores[~labels]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(((diff > 0).double() + 0.5 * (diff == 0).double()).mean())


def fit_logistic(x: torch.Tensor, y: torch.Tensor, l2: float = 1e-2, steps: int = 200):
    """(w, b, mean, std) of an L2-penalised logistic regression of ``y`` [n] on ``x`` [n, d] (standardised)."""
    if x.dim() != 2 or len(x) != len(y) or len(x) < 2:
        raise ValueError(f"fit_logistic needs x [n, d] and y [n] with n ≥ 2, got {tuple(x.shape)} and {tuple(y.shape)}")
    x, y = x.double(), y.double()
    mean, std = x.mean(0), x.std(0).clamp_min(1e-6)
    z = (x - mean) / std
    w = torch.zeros(z.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * (w @ w)
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach(), mean, std


def probe_scores(probe, x: torch.Tensor) -> torch.Tensor:
    w, b, mean, std = probe
    return ((x.double() - mean) / std) @ w + b
