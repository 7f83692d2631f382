"""Streaming, mergeable outlier statistics: sufficient statistics instead of stored activations.

:class:`OutlierStats` keeps, in float64, exactly what the metrics of :mod:`.metrics` need:

  Σ_t X_tj, Σ_t X_tj², max_t |X_tj|, massive counts per neuron     [width] each
  token, sequence and massive-token counts; Σ_t max_j|X_tj| / m_t     scalars
  Σ over sequences of Σ_{t≠t'} cos(X_t, X_t'), and the number of pairs
  the k largest |X_tj| / m_t with their signed value, position and neuron

``update(batch)`` adds activations ``[batch, pos, width]`` (or one sequence ``[pos, width]``);
``merge(other)`` adds another accumulator (sums, maxima, top-k), so one pass over a stream equals
any split of it merged back, in any order, up to float64 rounding. ``result()`` gives the metrics.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Optional

import pandas as pd
import torch

from ...dataclass_io import check_int_fields
from .metrics import (MASSIVE_ABS, MASSIVE_REL, check_activations, kurtosis_from_rms, median_abs,
                      ratio_to_median)


@dataclass(frozen=True)
class OutlierSummary:
    """The metrics of a stream (see :mod:`.metrics` for the formulas); JSON-serialisable via ``to_dict``."""

    n_tokens: int
    kurtosis: float
    max_median_ratio: float
    max_abs: float
    n_massive: int
    massive_token_fraction: float
    signal_propagation: float  # nan when no sequence had two tokens
    top_ratio: tuple[float, ...]  # the k largest |X_tj| / m_t, largest first

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _zeros(width: int) -> torch.Tensor:
    return torch.zeros(width, dtype=torch.float64)


@dataclass
class OutlierStats:
    """Sufficient statistics of activations of one site; see the module docstring.

    ``width`` neurons; ``top_k`` extreme entries kept; massive thresholds as in Sun et al. (2024).
    """

    width: int
    top_k: int = 8
    abs_threshold: float = MASSIVE_ABS
    rel_threshold: float = MASSIVE_REL
    n_tokens: int = 0
    n_sequences: int = 0
    n_massive_tokens: int = 0
    sum_mmr: float = 0.0  # Σ_t max_j |X_tj| / m_t
    cos_sum: float = 0.0  # Σ over sequences of Σ_{t≠t'} cos(X_t, X_t')
    n_pairs: int = 0
    sum: torch.Tensor = field(default=None)  # [width]  Σ_t X_tj
    sum_sq: torch.Tensor = field(default=None)  # [width]  Σ_t X_tj²
    max_abs: torch.Tensor = field(default=None)  # [width]  max_t |X_tj|
    n_massive: torch.Tensor = field(default=None)  # [width]  massive entries per neuron
    top_ratio: torch.Tensor = field(default=None)  # [top_k]  largest |X_tj| / m_t (−inf: empty slot)
    top_value: torch.Tensor = field(default=None)  # [top_k]  X_tj there (signed)
    top_pos: torch.Tensor = field(default=None)  # [top_k]  position in its sequence (−1: empty)
    top_neuron: torch.Tensor = field(default=None)  # [top_k]  j (−1: empty)

    def __post_init__(self) -> None:
        check_int_fields(self, ("width", "top_k"))
        if not self.abs_threshold >= 0 or not self.rel_threshold >= 0:
            raise ValueError("OutlierStats thresholds must be ≥ 0")
        d, k = self.width, self.top_k
        defaults = {"sum": _zeros(d), "sum_sq": _zeros(d), "max_abs": _zeros(d), "n_massive": _zeros(d),
                    "top_ratio": torch.full((k,), -math.inf, dtype=torch.float64),
                    "top_value": torch.zeros(k, dtype=torch.float64),
                    "top_pos": torch.full((k,), -1, dtype=torch.long),
                    "top_neuron": torch.full((k,), -1, dtype=torch.long)}
        for name, value in defaults.items():
            if getattr(self, name) is None:
                setattr(self, name, value)

    # ------------------------------------------------------------------ accumulate
    def compatible(self, other: "OutlierStats") -> None:
        mine = (self.width, self.top_k, self.abs_threshold, self.rel_threshold)
        theirs = (other.width, other.top_k, other.abs_threshold, other.rel_threshold)
        if mine != theirs:
            raise ValueError(f"cannot merge statistics with (width, top_k, abs, rel) = {theirs} into {mine}; "
                             "create both accumulators with the same settings")

    @torch.no_grad()
    def update(self, X: torch.Tensor) -> "OutlierStats":
        """Add activations ``[batch, pos, width]`` or one sequence ``[pos, width]``; returns self."""
        if isinstance(X, torch.Tensor) and X.dim() == 2:
            X = X[None]
        if not isinstance(X, torch.Tensor) or X.dim() != 3:
            shape = tuple(X.shape) if isinstance(X, torch.Tensor) else type(X).__name__
            raise ValueError(f"update takes activations [batch, pos, width] or [pos, width], got {shape}")
        if X.shape[-1] != self.width:
            raise ValueError(f"activations have width {X.shape[-1]}, these statistics were made for {self.width}")
        b, p, d = X.shape
        flat = check_activations(X.reshape(b * p, d))
        a = flat.abs()
        med = median_abs(flat)  # [tokens]
        self.n_tokens += b * p
        self.n_sequences += b
        self.sum += flat.sum(0)
        self.sum_sq += flat.pow(2).sum(0)
        self.max_abs = torch.maximum(self.max_abs, a.amax(0))
        massive = (a > self.abs_threshold) & (a > self.rel_threshold * med[:, None])
        self.n_massive += massive.sum(0).double()
        self.n_massive_tokens += int(massive.any(-1).sum())
        ratio = ratio_to_median(a, med)  # [tokens, width]
        self.sum_mmr += float(ratio.amax(-1).sum())
        U = torch.nn.functional.normalize(flat, dim=-1).view(b, p, d)
        self.cos_sum += float((U.sum(1).pow(2).sum(-1) - U.pow(2).sum((1, 2))).sum())
        self.n_pairs += b * p * (p - 1)
        top, idx = ratio.flatten().topk(min(self.top_k, ratio.numel()))
        token, neuron = idx // d, idx % d
        self._keep_top(top, flat[token, neuron], token % p, neuron)
        return self

    def _keep_top(self, ratio, value, pos, neuron) -> None:
        ratio = torch.cat([self.top_ratio, ratio.double()])
        order = ratio.topk(self.top_k).indices
        self.top_ratio = ratio[order]
        self.top_value = torch.cat([self.top_value, value.double()])[order]
        self.top_pos = torch.cat([self.top_pos, pos.long()])[order]
        self.top_neuron = torch.cat([self.top_neuron, neuron.long()])[order]

    def merge(self, other: "OutlierStats") -> "OutlierStats":
        """Add another accumulator's statistics (same settings) into this one; returns self."""
        if not isinstance(other, OutlierStats):
            raise ValueError(f"merge takes an OutlierStats, got {type(other).__name__}")
        self.compatible(other)
        for name in ("n_tokens", "n_sequences", "n_massive_tokens", "sum_mmr", "cos_sum", "n_pairs"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.sum = self.sum + other.sum
        self.sum_sq = self.sum_sq + other.sum_sq
        self.n_massive = self.n_massive + other.n_massive
        self.max_abs = torch.maximum(self.max_abs, other.max_abs)
        self._keep_top(other.top_ratio, other.top_value, other.top_pos, other.top_neuron)
        return self

    def copy(self) -> "OutlierStats":
        return dataclasses.replace(self, **{f.name: getattr(self, f.name).clone() for f in dataclasses.fields(self)
                                            if isinstance(getattr(self, f.name), torch.Tensor)})

    # ------------------------------------------------------------------ read out
    def _need_tokens(self) -> None:
        if self.n_tokens == 0:
            raise ValueError("no activations yet; call update(activations) first")

    def rms(self) -> torch.Tensor:
        """s_j = sqrt(mean_t X_tj²): ``[width]``."""
        self._need_tokens()
        return (self.sum_sq / self.n_tokens).sqrt()

    def result(self) -> OutlierSummary:
        self._need_tokens()
        filled = self.top_ratio > -math.inf
        return OutlierSummary(
            n_tokens=self.n_tokens,
            kurtosis=float(kurtosis_from_rms(self.rms())),
            max_median_ratio=self.sum_mmr / self.n_tokens,
            max_abs=float(self.max_abs.max()),
            n_massive=int(self.n_massive.sum()),
            massive_token_fraction=self.n_massive_tokens / self.n_tokens,
            signal_propagation=self.cos_sum / self.n_pairs if self.n_pairs else math.nan,
            top_ratio=tuple(self.top_ratio[filled].tolist()),
        )

    def neurons(self, group: Optional[int] = None) -> pd.DataFrame:
        """One row per neuron, largest RMS first: ``neuron, rms, rms_ratio, mean, max_abs, n_massive``.

        ``rms_ratio`` = s_j / median_j s_j. With ``group`` (e.g. d_head for q/k/v flattened over heads),
        columns ``head = j // group`` and ``channel = j % group`` are added.
        """
        s = self.rms()
        med = median_abs(s[None])[0]  # s ≥ 0
        df = pd.DataFrame({"neuron": range(self.width), "rms": s.tolist(),
                           "rms_ratio": (s / med).tolist(), "mean": (self.sum / self.n_tokens).tolist(),
                           "max_abs": self.max_abs.tolist(), "n_massive": self.n_massive.long().tolist()})
        if group is not None:
            if not isinstance(group, int) or group < 1 or self.width % group:
                raise ValueError(f"group must divide the width {self.width}, got {group!r}")
            df.insert(1, "head", (df.neuron // group).astype("Int64"))
            df.insert(2, "channel", (df.neuron % group).astype("Int64"))
        return df.sort_values("rms", ascending=False, kind="stable").reset_index(drop=True)

    def top_entries(self) -> pd.DataFrame:
        """The ``top_k`` most extreme entries: ``ratio, value, pos, neuron`` (ratio = |value| / m_t)."""
        filled = self.top_ratio > -math.inf
        return pd.DataFrame({"ratio": self.top_ratio[filled].tolist(), "value": self.top_value[filled].tolist(),
                             "pos": self.top_pos[filled].tolist(), "neuron": self.top_neuron[filled].tolist()})
