"""Outlier features and massive activations: metrics, streaming statistics, tracing through a model.

``metrics``: pure functions on ``[tokens, width]`` activations (formulas in their docstrings);
``stats``: :class:`OutlierStats`, mergeable sufficient statistics for streams and many processes;
``distributed``: all-reduce of those statistics under ``torch.distributed`` (and a torchrun demo);
``trace``: statistics of every layer and hook site of a ``HookedFastWeightLM`` over a token stream;
``states``: fast-weight state norm, spectrum and effective rank over position;
``decompose``: the residual stream along one neuron as a sum of direct writes (embeddings, heads, MLPs);
``over_training``: the same tables for every checkpoint of a training run (a ``step`` column);
``nnsight_trace``: the same statistics on any torch model (e.g. a transformers GPT-2) through nnsight;
``quantize``: post-training W8A8 (int8 per-channel weights, int8 activations) and its perplexity cost;
``matmul_inputs``: the statistics of what every matmul reads (the activations W8A8 rounds).
"""

from .decompose import contribution_summary, decompose_residual
from .matmul_inputs import matmul_input_table, trace_matmul_inputs
from .metrics import (check_activations, kurtosis, kurtosis_from_rms, massive_mask, max_median_ratio, median_abs,
                      neuron_rms, ratio_to_median, signal_propagation, top_ratios)
from .nnsight_trace import gpt2_sites, trace_nnsight
from .over_training import run_checkpoints, trace_over_training
from .quantize import quantize_activation, quantize_w8a8, quantize_weight, w8a8_perplexity
from ..state_spectra import spectrum_stats
from .states import state_statistics
from .stats import OutlierStats, OutlierSummary
from .trace import DEFAULT_SITES, SITE_HOOKS, hot_channels, outlier_table, top_neurons, trace_outliers

__all__ = ["DEFAULT_SITES", "OutlierStats", "OutlierSummary", "SITE_HOOKS", "check_activations",
           "contribution_summary", "decompose_residual", "hot_channels", "kurtosis", "kurtosis_from_rms",
           "massive_mask", "max_median_ratio", "median_abs", "neuron_rms", "outlier_table", "ratio_to_median",
           "signal_propagation", "spectrum_stats", "state_statistics", "top_neurons", "top_ratios", "trace_outliers",
           "gpt2_sites", "trace_nnsight", "run_checkpoints", "trace_over_training", "quantize_activation",
           "quantize_w8a8", "quantize_weight", "w8a8_perplexity", "matmul_input_table", "trace_matmul_inputs"]
