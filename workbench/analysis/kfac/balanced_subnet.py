"""BalancedSubnet (Sakarvadia et al. 2025, "Mitigating memorization in language models"): learn which
weights to prune so that the memorized sequences' loss rises while clean text's loss stays low.

Recipe (read in the authors' code, msakarvadia/memorization ``src/localize/weight/random_subnet.py`` and
``random_subnet_greedy.py``; written here anew): every edited weight W gets a score tensor S of its shape
(uniform in ±1/√fan_in, as ``kaiming_uniform_(a=√5)``); the forward pass uses W ⊙ m with m the top
(1 − ``ratio``) of |S| (an edge-popup "supermask"; the gradient passes straight through m to |S|). Only
S is trained, with SGD (``lr``, ``momentum``, ``weight_decay``) for ``epochs`` passes over the forget and
retain sequences shuffled together in batches of ``batch_size``, on

    loss = −(1 − α) · L_forget + α · L_retain         (α = ``loss_weighting``)

with L the mean next-token loss of the batch's forget (resp. retain) sequences. The edit writes W ⊙ m.
Two departures, both forced by our data: a forget sequence's loss is taken over the tokens its
``forget_mask`` marks (the canary inside a training row, not the text around it), and a batch that holds
no sequence of one kind leaves that term out (the authors' code would take the mean of nothing).
Unlike K-FAC and SVD the method is *supervised*: it is told which sequences to forget.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import pandas as pd
import torch
import torch.nn.functional as F

from ...dataclass_io import JsonConfig, check_int_fields
from .edit import REPORT_COLUMNS
from .sites import resolve_sites


@dataclass(frozen=True)
class BalancedSubnetConfig(JsonConfig):
    """The authors' defaults (``do_random_greedy``) except ``ratio`` and ``epochs``, which they sweep."""

    ratio: float = 0.1
    epochs: int = 10
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 32
    loss_weighting: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        check_int_fields(self, ("epochs", "batch_size"))
        check_int_fields(self, ("seed",), minimum=0)
        if not 0 < self.ratio < 1:
            raise ValueError(f"BalancedSubnetConfig.ratio (the fraction of weights pruned) must be in (0, 1), "
                             f"got {self.ratio!r}")
        if not 0 <= self.loss_weighting <= 1:
            raise ValueError(f"BalancedSubnetConfig.loss_weighting must be in [0, 1], got {self.loss_weighting!r}")
        if self.lr <= 0:
            raise ValueError(f"BalancedSubnetConfig.lr must be positive, got {self.lr!r}")


class _TopMask(torch.autograd.Function):
    """1 where |score| is among the largest (1 − ratio) of the tensor, else 0; straight-through backward."""

    @staticmethod
    def forward(ctx, scores: torch.Tensor, ratio: float) -> torch.Tensor:
        flat = scores.flatten()
        j = int(ratio * flat.numel())
        mask = torch.ones_like(flat)
        mask[flat.argsort()[:j]] = 0.0
        return mask.view_as(scores)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad, None


def top_mask(scores: torch.Tensor, ratio: float) -> torch.Tensor:
    """The supermask of ``scores`` (apply to |S|)."""
    return _TopMask.apply(scores, ratio)


def _sequence_nll(model, params: dict, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[n]``: mean next-token loss over the predictions ``mask [n, T−1]`` marks."""
    logits = torch.func.functional_call(model, params, (tokens,))
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none").view(mask.shape)
    m = mask.to(nll.dtype)
    return (nll * m).sum(1) / m.sum(1).clamp_min(1.0)


def balanced_subnet_edit(model, sites, forget: torch.Tensor, forget_mask: torch.Tensor, retain: torch.Tensor,
                         cfg: BalancedSubnetConfig = BalancedSubnetConfig()):
    """Prune ``cfg.ratio`` of each site's weight (parameter names, see :mod:`.sites`), the entries chosen
    by training scores on ``forget [n, T]`` (loss over ``forget_mask [n, T−1]``) against ``retain [m, T]``.
    Returns ``(new_model, report)`` (columns of :func:`.edit.kfac_edit`; ``rho`` holds 1 − ratio)."""
    chosen = resolve_sites(model, sites)
    if forget.dim() != 2 or forget_mask.shape != (forget.shape[0], forget.shape[1] - 1):
        raise ValueError(f"forget must be [n, T] and forget_mask [n, T−1]; got {tuple(forget.shape)} and "
                         f"{tuple(forget_mask.shape)}")
    if retain.dim() != 2 or retain.shape[1] != forget.shape[1]:
        raise ValueError(f"retain must be [m, T] with the forget sequences' T = {forget.shape[1]}, "
                         f"got {tuple(retain.shape)}")
    gen = torch.Generator().manual_seed(cfg.seed)
    weights = {s.param: model.get_parameter(s.param).detach() for s in chosen}
    scores = {}
    for name, W in weights.items():
        bound = 1.0 / math.sqrt(W.shape[1] if W.dim() > 1 else W.numel())
        scores[name] = ((torch.rand(W.shape, generator=gen) * 2 - 1) * bound).requires_grad_(True)
    opt = torch.optim.SGD(list(scores.values()), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    tokens = torch.cat([forget, retain])
    masks = torch.cat([forget_mask.bool(), torch.ones(len(retain), retain.shape[1] - 1, dtype=torch.bool)])
    is_forget = torch.cat([torch.ones(len(forget), dtype=torch.bool), torch.zeros(len(retain), dtype=torch.bool)])
    was_training = model.training
    model.train(False)  # no dropout; only the scores learn
    try:
        for _ in range(cfg.epochs):
            for batch in torch.randperm(len(tokens), generator=gen).split(cfg.batch_size):
                params = {n: weights[n] * top_mask(scores[n].abs(), cfg.ratio) for n in weights}
                nll = _sequence_nll(model, params, tokens[batch], masks[batch])
                f = is_forget[batch]
                loss = nll.new_zeros(())
                if f.any():
                    loss = loss - (1 - cfg.loss_weighting) * nll[f].mean()
                if (~f).any():
                    loss = loss + cfg.loss_weighting * nll[~f].mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        model.train(was_training)
    new = copy.deepcopy(model)
    rows = []
    with torch.no_grad():
        for site in chosen:
            W = weights[site.param]
            m = top_mask(scores[site.param].abs(), cfg.ratio)
            new.get_parameter(site.param).copy_(W * m)
            change = float((W * (1 - m)).double().norm() / W.double().norm().clamp_min(1e-300))
            kept = int(m.sum())
            rows.append({"param": site.param, "kind": site.kind, "layer": site.layer, "method": "balanced_subnet",
                         "rho": 1 - cfg.ratio, "components": W.numel(), "kept": kept,
                         "kept_fraction": kept / W.numel(),
                         "mass_kept": float((W * m).double().pow(2).sum() / W.double().pow(2).sum().clamp_min(1e-300)),
                         "weight_rel_change": change})
    return new, pd.DataFrame(rows)[REPORT_COLUMNS]
