"""Plots: functions that take tensors or DataFrames and return plotly figures."""

from .attention import attention_heatmap, head_scores_bar
from .recall import probe_curve
from .probe_accuracy import probe_against_accuracy
from .kfac import curvature_spectrum_figure, kept_components, thin_spectrum
from .fast_weights import fast_weight_heatmap, singular_values_over_positions, state_and_update
from .positions import mark_position, per_head_over_positions
from .hops import hop_heatmap
from .predictions import next_token_probability, prediction_change
from .knockout import knockout_heatmap
from .steering import next_token_shift, steering_sweep_plot
from .dictionaries import (atom_usage_histogram, dictionary_training_curve, reconstruction_vs_sparsity,
                           substitution_comparison)
from .lenses import lens_by_layer
from .patching import attribution_scatter, head_effects_bar, patching_heatmap, patching_heatmaps

__all__ = ["atom_usage_histogram", "dictionary_training_curve", "reconstruction_vs_sparsity", "substitution_comparison",
           "curvature_spectrum_figure", "kept_components", "thin_spectrum", "probe_curve", "probe_against_accuracy", "attention_heatmap", "head_scores_bar", "fast_weight_heatmap", "singular_values_over_positions",
           "state_and_update", "mark_position", "per_head_over_positions", "hop_heatmap", "next_token_probability",
           "prediction_change", "knockout_heatmap", "next_token_shift", "steering_sweep_plot",
           "lens_by_layer", "attribution_scatter", "head_effects_bar", "patching_heatmap",
           "patching_heatmaps"]
