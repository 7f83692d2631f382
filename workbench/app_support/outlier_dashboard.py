"""The outlier dashboard's computations over a :class:`~.token_streams.TokenStream`: streaming outlier
statistics per layer and hook site, the top neurons of one hook, who writes a residual dimension, and
the fast-weight state statistics over position. Thin wiring of :mod:`workbench.analysis.outliers`.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import pandas as pd
import torch

from ..analysis.outliers import (SITE_HOOKS, OutlierStats, contribution_summary, decompose_residual, outlier_table,
                                 state_statistics, top_neurons, trace_outliers)
from ..analysis.outliers.trace import head_width, parse_hook
from .token_streams import TokenStream

METRICS = ("kurtosis", "max_median_ratio", "max_abs", "n_massive", "massive_token_fraction", "signal_propagation",
           "top_ratio")
RESIDUAL_SITES = ("resid_pre", "resid_mid", "resid_post")


def available_sites(model) -> list[str]:
    """The hook sites of :data:`SITE_HOOKS` this model has (``delta`` only in delta mixers, the MLP
    sites only with an MLP)."""
    n = model.cfg.n_layers
    return [s for s, pattern in SITE_HOOKS.items() if any(pattern.format(i=i) in model.hook_dict for i in range(n))]


def check_sites(model, sites: Sequence[str]) -> tuple[str, ...]:
    if not sites:
        raise ValueError("no hook site chosen: pick at least one, e.g. resid_post")
    have = available_sites(model)
    missing = [s for s in sites if s not in have]
    if missing:
        raise ValueError(f"this model has no {missing} hooks (mixers: {model.cfg.mixer_label}; mlp {model.cfg.mlp!r}); "
                         f"it has {have}")
    return tuple(sites)


def batch_stats(model, tokens: torch.Tensor, sites: Sequence[str], top_k: int = 8) -> dict[str, OutlierStats]:
    """Outlier statistics of one ``[batch, pos]`` batch at every layer of ``sites``."""
    return trace_outliers(model, [tokens], check_sites(model, sites), top_k=top_k, progress=False)


def merge_stats(parts: Sequence[dict[str, OutlierStats]]) -> dict[str, OutlierStats]:
    """The statistics of a whole stream from those of its batches (the inputs are not changed)."""
    if not parts:
        raise ValueError("no batches: trace at least one")
    merged = {name: s.copy() for name, s in parts[0].items()}
    for part in parts[1:]:
        for name, s in part.items():
            merged[name].merge(s)
    return merged


def trace_stream(model, stream: TokenStream, sites: Sequence[str], top_k: int = 8,
                 progress: Optional[Callable[[int, int], None]] = None,
                 trace_batch: Optional[Callable] = None) -> dict[str, OutlierStats]:
    """The statistics of every batch of ``stream``, merged; ``trace_batch(tokens)`` computes one batch
    (default :func:`batch_stats`; the app passes a cached one), ``progress(done, total)`` follows."""
    trace_batch = trace_batch or (lambda tokens: batch_stats(model, tokens, sites, top_k))
    parts = []
    for i, tokens in enumerate(stream.tensors()):
        parts.append(trace_batch(tokens))
        if progress is not None:
            progress(i + 1, len(stream.batches))
    return merge_stats(parts)


def metrics_table(stats: dict[str, OutlierStats]) -> pd.DataFrame:
    """One row per (layer, site): the metrics of :func:`~workbench.analysis.outliers.outlier_table`."""
    return outlier_table(stats)


def top_neuron_table(stats: dict[str, OutlierStats], cfg, n: int = 5) -> pd.DataFrame:
    """The ``n`` neurons of largest RMS at each (layer, site)."""
    return top_neurons(stats, cfg, n)


def traced_layers(stats: dict[str, OutlierStats], site: str) -> list[int]:
    """The layers at which ``site`` was traced, in order (a block of one branch, ``cfg.block_kinds``, lacks the
    other branch's sites)."""
    return sorted(layer for layer, s in map(parse_hook, stats) if s == site)


def hook_neurons(stats: dict[str, OutlierStats], cfg, layer: int, site: str) -> pd.DataFrame:
    """Every neuron of one hook, largest RMS first (``head``, ``channel`` for per-head sites)."""
    name = SITE_HOOKS[site].format(i=layer)
    if name not in stats:
        raise ValueError(f"{site} of layer {layer} was not traced; traced: {sorted(parse_hook(h) for h in stats)}")
    return stats[name].neurons(group=head_width(cfg, site, stats[name].width))


@torch.no_grad()
def top_residual_neuron(model, tokens: torch.Tensor, layer: int, site: str = "resid_post") -> int:
    """The residual dimension of largest RMS over ``tokens`` at ``blocks.{layer}.hook_{site}``."""
    name = SITE_HOOKS[_residual_site(model, site)].format(i=layer)
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name, stop_at_layer=layer + 1)
    return int(cache[name].double().pow(2).mean((0, 1)).argmax())


def _residual_site(model, site: str) -> str:
    if site not in RESIDUAL_SITES:
        raise ValueError(f"the residual stream is read at one of {RESIDUAL_SITES}, got {site!r}")
    return site


def residual_writes(model, tokens: torch.Tensor, layer: int, site: str, neuron: int) -> pd.DataFrame:
    """Who writes residual dimension ``neuron`` at ``blocks.{layer}.hook_{site}``: per component (embeddings,
    heads, biases, MLPs) the mean and mean |·| over every token, and its share of Σ mean |·|."""
    return contribution_summary(decompose_residual(model, tokens, neuron, layer, _residual_site(model, site)))


def state_table(model, stream: TokenStream, n_singular: int = 4) -> pd.DataFrame:
    """Mean over the stream's sequences of ‖W_t‖_F, σ_1..σ_n and effective rank per (layer, head, pos);
    ValueError for models with no fast-weight layer (softmax)."""
    if not model.fast_weight_layers:
        raise ValueError(f"this model's layers ({model.cfg.mixer_label}) keep no fast-weight state; pick a model "
                         "with a fast-weight mixer")
    return state_statistics(model, stream.tensors(), n_singular=n_singular, progress=False)
