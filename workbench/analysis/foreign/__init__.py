"""Analyses of models we did not write (transformers models built from a config), through nnsight.

``residual``: the residual stream along one dimension as a sum of direct writes (embeddings, heads, MLPs);
``gated_delta``: what enters a Gated DeltaNet layer's recurrence (Qwen3-Next), recomputed by our kernel;
``states``: that layer's fast-weight matrices at any position, their norms, spectra and effective rank.
"""

from .gated_delta import GatedDeltaCapture, capture_gated_delta, gated_delta_modules, recompute, rule_inputs
from .residual import ResidualLayout, decompose_residual_nnsight, gpt2_layout, llama_style_layout
from .states import fast_weights_at, state_statistics

__all__ = ["GatedDeltaCapture", "ResidualLayout", "capture_gated_delta", "decompose_residual_nnsight",
           "fast_weights_at", "gated_delta_modules", "gpt2_layout", "llama_style_layout", "recompute", "rule_inputs",
           "state_statistics"]
