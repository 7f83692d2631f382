"""Analyses of models we did not write (transformers models built from a config), through nnsight.

``residual``: the residual stream along one dimension as a sum of direct writes (embeddings, heads, MLPs).
"""

from .residual import ResidualLayout, decompose_residual_nnsight, gpt2_layout, llama_style_layout

__all__ = ["ResidualLayout", "decompose_residual_nnsight", "gpt2_layout", "llama_style_layout"]
