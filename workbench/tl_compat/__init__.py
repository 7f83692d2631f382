"""What TransformerLens' own tools read from a model, answered by ours (docs/transformer_lens.md).

``config_names``: the read-only ``HookedTransformerConfig`` names a ``ModelConfig`` answers (``normalization_type``,
``attn_only``, ``device``, ...); ``cache``: the ``ActivationCache`` that ``run_with_cache`` returns, with per-head
results, residual decompositions and logit attributions that sum exactly to the model's own residual stream;
``model_api``: the model-level weights and helpers the cache and ``transformer_lens.patching`` call
(``W_Q`` … ``W_U``, ``QK``/``OV`` circuits, ``tokens_to_residual_directions``, ``accumulated_bias``).
"""

from .cache import FastWeightActivationCache
from .config_names import TransformerLensNames
from .model_api import TransformerLensModelAPI

__all__ = ["FastWeightActivationCache", "TransformerLensNames", "TransformerLensModelAPI"]
