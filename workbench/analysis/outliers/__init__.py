"""Outlier features and massive activations: metrics, streaming statistics, tracing through a model.

``metrics``: pure functions on ``[tokens, width]`` activations (formulas in their docstrings);
``stats``: :class:`OutlierStats`, mergeable sufficient statistics for streams and many processes;
``distributed``: all-reduce of those statistics under ``torch.distributed``.
"""

from .metrics import (check_activations, kurtosis, kurtosis_from_rms, massive_mask, max_median_ratio, median_abs,
                      neuron_rms, signal_propagation, top_ratios)
from .stats import OutlierStats, OutlierSummary

__all__ = ["OutlierStats", "OutlierSummary", "check_activations", "kurtosis", "kurtosis_from_rms", "massive_mask",
           "max_median_ratio", "median_abs", "neuron_rms", "signal_propagation", "top_ratios"]
