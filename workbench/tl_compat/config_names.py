"""The names TransformerLens' tools read from ``model.cfg``, as read-only properties of our ``ModelConfig``.

TransformerLens' ``ActivationCache``, ``patching`` and ``head_detector`` read ``model.cfg.n_layers``,
``normalization_type``, ``attn_only``, ``device``, ``n_key_value_heads`` and a few more. ``model.cfg`` stays our
frozen, JSON round-trippable :class:`~workbench.config.ModelConfig` (code across the workbench compares, saves and
``replace``-s it, and checks ``isinstance(cfg, ModelConfig)``); this mixin adds only *derived* names, so nothing
here is a field, nothing is saved and two configs are equal exactly when their fields are. The list follows what
the tools in ``transformer_lens`` 4.3 read (``ActivationCache.py``, ``patching.py``, ``head_detector.py``,
``tools/analysis/logit_lens.py``); it is not a copy of ``HookedTransformerConfig``.

``device`` and ``dtype`` belong to a model, not to a config: each ``HookedFastWeightLM`` keeps its own copy of
its config and records where its parameters live on it (:meth:`_place`), as TransformerLens' models update
``cfg.device`` when moved. A config not held by a model answers None (torch's default device and dtype).
"""

from __future__ import annotations

from typing import Optional

import torch

_NORMALIZATION = {"layernorm": "LN", "rmsnorm": "RMS", "none": None}
_ACT_FN = {"gelu": "gelu", "swiglu": "silu", "none": None}


class TransformerLensNames:
    """Read-only ``HookedTransformerConfig`` names derived from a ``ModelConfig``'s fields."""

    # -- sizes TransformerLens names differently --------------------------------------------------
    @property
    def d_vocab_out(self) -> int:
        return self.d_vocab

    # -- architecture flags -----------------------------------------------------------------------
    @property
    def attn_only(self) -> bool:
        """No MLPs (``mlp="none"``): ``decompose_resid`` then stacks only the mixers' outputs."""
        return self.mlp == "none"

    @property
    def normalization_type(self) -> Optional[str]:
        """"LN", "RMS" or None, the norm of the model. Which layers have it *in front of them* is per layer
        (pre-norm: all; Outlier Protected and ``post_norm_layers``: none; the final norm: always): the
        cache's ``apply_ln_to_stack`` asks the layer, not this name."""
        return _NORMALIZATION[self.norm]

    @property
    def final_rms(self) -> bool:
        return self.norm == "rmsnorm"

    @property
    def act_fn(self) -> Optional[str]:
        """The MLP's activation ("silu" for SwiGLU, whose ``gated_mlp`` is True)."""
        return _ACT_FN[self.mlp]

    @property
    def gated_mlp(self) -> bool:
        return self.mlp == "swiglu"

    @property
    def positional_embedding_type(self) -> str:
        """"standard" (learned positions added to the embedding) or "none": no positions in the residual stream
        (a mixer may bring its own, e.g. a softmax layer's rotary positions or the recurrence's order)."""
        return "standard" if self.positional == "learned" else "none"

    @property
    def original_architecture(self) -> str:
        return "HookedFastWeightLM"

    @property
    def n_key_value_heads(self) -> None:
        """None: ``hook_k``/``hook_v`` hold one key/value per query head in every mixer (grouped heads are copied
        before the hook), so ``patching``'s k/v sweeps run over ``n_heads``."""
        return None

    # -- TransformerLens' optional hooks: off (the cache computes per-head results exactly instead) ---
    @property
    def use_attn_result(self) -> bool:
        return False

    @property
    def use_split_qkv_input(self) -> bool:
        return False

    @property
    def use_attn_in(self) -> bool:
        return False

    @property
    def use_hook_mlp_in(self) -> bool:
        return False

    @property
    def default_prepend_bos(self) -> bool:
        return False

    # -- where the model holding this config lives ------------------------------------------------
    @property
    def device(self) -> Optional[torch.device]:
        """The device of the model holding this config (None for a config no model holds)."""
        return self.__dict__.get("_placement", (None, None))[0]

    @property
    def dtype(self) -> Optional[torch.dtype]:
        """The dtype of the model holding this config's parameters (None for a config no model holds)."""
        return self.__dict__.get("_placement", (None, None))[1]

    def _place(self, device: torch.device, dtype: torch.dtype) -> None:
        """Record the device and dtype of the model that holds this (its own) copy; not a field."""
        object.__setattr__(self, "_placement", (device, dtype))
