"""The model-level names TransformerLens' tools and users read: a mixin of ``HookedFastWeightLM``.

- ``run_with_cache`` returns a :class:`~workbench.tl_compat.cache.FastWeightActivationCache` (TransformerLens'
  ``ActivationCache`` with the model attached); ``return_cache_object=False`` returns the plain dict.
- Stacked weights, as TransformerLens' ``HookedTransformer`` names them: ``W_E`` ``[vocab, d_model]``, ``W_pos``,
  ``W_U`` ``[d_model, vocab]``, ``b_U``; ``W_Q``, ``W_K``, ``W_V`` ``[layer, head, d_model, d_head]``, ``W_O``
  ``[layer, head, d_head, d_model]``, ``b_O`` ``[layer, d_model]``; ``W_in``, ``W_out``, ``b_in``, ``b_out`` of
  dense MLPs; the circuits ``QK = W_Q W_Kᵀ`` and ``OV = W_V W_O`` as ``FactoredMatrix`` ``[layer, head, d_model,
  d_model]``. Each layer's mixer says whether its queries/keys and values/outputs are such linear maps
  (``Mixer.qk_weights`` / ``ov_weights``); where one is not, the property raises NotDefinedForMixer with every
  layer's reason (e.g. a delta-rule layer's conv, SiLU and L2 norm in front of q and k, and a mixing that is
  not a function of q·k alone).
- ``tokens_to_residual_directions`` (the final norm's gain ⊙ ``W_U[:, token]``), ``logit_offset`` (what the final
  norm's bias and ``b_U`` add to a logit: the part no residual component carries) and ``accumulated_bias``.
- ``cfg.device`` / ``cfg.dtype``: the model keeps its own copy of its config and records on it where its
  parameters are whenever they move (:mod:`.config_names`).

Names follow ``transformer_lens`` 4.3's ``HookedTransformer`` (2.x/3.x) and its ``TransformerLensModelWithWeights``
protocol (``transformer_lens/model_protocol.py``).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
from torch import nn
from transformer_lens import FactoredMatrix

from ..components.mlp import MLP
from ..mixers import NotDefinedForMixer
from .cache import FastWeightActivationCache


class TransformerLensModelAPI:
    """Mixin for ``HookedFastWeightLM`` (which must come first in the bases, before ``HookedRootModule``)."""

    # ------------------------------------------------------------------ the cache
    def run_with_cache(self, *model_args, return_cache_object: bool = True, remove_batch_dim: bool = False,
                       **kwargs):
        """``(output, cache)`` as TransformerLens: ``names_filter``, ``device``, ``remove_batch_dim``, ``incl_bwd``,
        ``pos_slice`` and the forward's own arguments (``return_type``, ``stop_at_layer``, ...) pass through."""
        out, cache = super().run_with_cache(*model_args, remove_batch_dim=remove_batch_dim, **kwargs)
        if not return_cache_object:
            return out, cache
        return out, FastWeightActivationCache(cache, self, has_batch_dim=not remove_batch_dim)

    # ------------------------------------------------------------------ cfg.device / cfg.dtype
    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        self._record_placement()
        return out

    def _record_placement(self) -> None:
        p = self.unembed.W_U
        self.cfg._place(p.device, p.dtype)

    # ------------------------------------------------------------------ TransformerLens' optional per-head input forks
    def set_use_split_qkv_input(self, use_split_qkv_input: bool) -> None:
        """Refused when asked to switch on: TransformerLens' per-head copies of the mixer input (``hook_q_input``
        …, used by ``patching.get_act_patch_direct_path``) do not exist here."""
        if use_split_qkv_input:
            raise NotDefinedForMixer(
                "use_split_qkv_input: our mixers read one shared input (blocks.{l}.ln1.hook_normalized, or the "
                "residual stream) and keep no per-head copy of it for queries, keys and values, so direct path "
                "patching is not available; patch a source head's hook_z and read later layers with run_with_hooks")

    def set_use_attn_in(self, use_attn_in: bool) -> None:
        if use_attn_in:
            raise NotDefinedForMixer("use_attn_in: our mixers keep no per-head copy of their input (see "
                                     "set_use_split_qkv_input)")

    # ------------------------------------------------------------------ embeddings and unembedding
    @property
    def W_E(self) -> torch.Tensor:
        return self.embed.W_E

    @property
    def W_pos(self) -> torch.Tensor:
        if not hasattr(self, "pos_embed"):
            raise NotDefinedForMixer("this model has no learned positions (positional='none'), so no W_pos")
        return self.pos_embed.W_pos

    @property
    def W_U(self) -> torch.Tensor:
        return self.unembed.W_U

    @property
    def b_U(self) -> torch.Tensor:
        return self.unembed.b_U

    # ------------------------------------------------------------------ stacked mixer weights and circuits
    def _stack(self, name: str, per_layer: Callable[[int], torch.Tensor]) -> torch.Tensor:
        parts, why = [], []
        for i in range(self.cfg.n_layers):
            try:
                parts.append(per_layer(i))
            except NotDefinedForMixer as e:
                why.append(f"layer {i}: {e}")
        if why:
            raise NotDefinedForMixer(f"model.{name} is not defined for this model — " + " | ".join(why))
        shapes = sorted({tuple(p.shape) for p in parts})
        if len(shapes) > 1:
            raise NotDefinedForMixer(f"model.{name}: the layers' weights have different shapes {shapes} (their head "
                                     "counts or widths differ), so they do not stack; ask model.mixer(layer)")
        return torch.stack(parts)

    @property
    def W_Q(self) -> torch.Tensor:
        return self._stack("W_Q", lambda i: self.blocks[i].attn.qk_weights()[0])

    @property
    def W_K(self) -> torch.Tensor:
        return self._stack("W_K", lambda i: self.blocks[i].attn.qk_weights()[1])

    @property
    def W_V(self) -> torch.Tensor:
        return self._stack("W_V", lambda i: self.blocks[i].attn.ov_weights()[0])

    @property
    def W_O(self) -> torch.Tensor:
        return self._stack("W_O", lambda i: self.blocks[i].attn.ov_weights()[1])

    @property
    def b_O(self) -> torch.Tensor:
        """``[layer, d_model]``: each mixer's output bias (zeros for a mixer without one)."""
        return self._stack("b_O", lambda i: self._output_bias(i))

    def _output_bias(self, layer: int) -> torch.Tensor:
        bias = self.blocks[layer].attn.output_bias()
        return torch.zeros_like(self.unembed.W_U[:, 0]) if bias is None else bias

    @property
    def QK(self) -> FactoredMatrix:
        """``[layer, head, d_model, d_model]`` factored W_Q W_Kᵀ (scores are x_q QK x_kᵀ / √d_head in softmax
        layers), where every layer has one."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-2, -1))

    @property
    def OV(self) -> FactoredMatrix:
        """``[layer, head, d_model, d_model]`` factored W_V W_O, where every layer has one."""
        return FactoredMatrix(self.W_V, self.W_O)

    # ------------------------------------------------------------------ stacked MLP weights (dense MLPs)
    def _mlp(self, layer: int) -> MLP:
        block = self.blocks[layer]
        if not block.has_mlp:
            raise NotDefinedForMixer(f"layer {layer} has no MLP (mlp='none')")
        if not isinstance(block.mlp, MLP):
            raise NotDefinedForMixer(f"layer {layer}'s MLP is a mixture of experts (its weights are per expert: "
                                     f"model.blocks[{layer}].mlp.W_in is [expert, d_model, d_expert])")
        return block.mlp

    @property
    def W_in(self) -> torch.Tensor:
        return self._stack("W_in", lambda i: self._mlp(i).W_in)

    @property
    def W_out(self) -> torch.Tensor:
        return self._stack("W_out", lambda i: self._mlp(i).W_out)

    @property
    def b_in(self) -> torch.Tensor:
        return self._stack("b_in", lambda i: self._mlp(i).b_in)

    @property
    def b_out(self) -> torch.Tensor:
        return self._stack("b_out", lambda i: self._mlp(i).b_out)

    # ------------------------------------------------------------------ logits from residual directions
    def _token_ids(self, tokens) -> torch.Tensor:
        if isinstance(tokens, str):
            to_single = getattr(self, "to_single_token", None)
            if to_single is None:
                raise ValueError("a token given as a string needs model.to_single_token; pass its id instead")
            tokens = to_single(tokens)
        ids = torch.as_tensor(tokens, device=self.unembed.W_U.device)
        if ids.dtype.is_floating_point or ids.dtype == torch.bool:
            raise ValueError(f"tokens must be integer ids, got dtype {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.cfg.d_vocab):
            raise ValueError(f"token ids must be in [0, {self.cfg.d_vocab - 1}], got {ids.tolist()}")
        return ids.long()

    def _final_gain(self) -> Optional[torch.Tensor]:
        return None if isinstance(self.ln_final, nn.Identity) else self.ln_final.w

    def tokens_to_residual_directions(self, tokens) -> torch.Tensor:
        """The residual direction whose dot product with the final norm's *scaled* input (``apply_ln_to_stack``)
        gives a token's logit, less :meth:`logit_offset`: ``w_final ⊙ W_U[:, token]``. A token (int, string or 0-d
        tensor) → ``[d_model]``; ``[batch]`` → ``[batch, d_model]``; ``[batch, pos]`` → ``[batch, pos, d_model]``."""
        ids = self._token_ids(tokens)
        gain = self._final_gain()
        W = self.unembed.W_U if gain is None else gain[:, None] * self.unembed.W_U
        return W[:, ids].movedim(0, -1)

    @torch.no_grad()
    def logit_offset(self, tokens, incorrect_tokens=None) -> torch.Tensor:
        """What every logit gets whatever the residual stream: ``b_final · W_U[:, t] + b_U[t]`` (``b_final`` the
        final LayerNorm's bias; 0 for RMSNorm or none), minus the same for ``incorrect_tokens``. A direct logit
        attribution (``cache.logit_attrs``) of a full decomposition sums to the logit (difference) less this."""
        def one(t):
            ids = self._token_ids(t)
            bias = getattr(self.ln_final, "b", None)
            out = self.unembed.b_U[ids]
            return out if bias is None else out + (bias @ self.unembed.W_U)[ids]
        return one(tokens) if incorrect_tokens is None else one(tokens) - one(incorrect_tokens)

    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True
                         ) -> torch.Tensor:
        """``[d_model]``: the sum of the mixers' output biases (and, with ``include_mlp_biases``, the MLPs' ``b_out``)
        written before ``layer`` (its MLP with ``mlp_input``), times the branch weight. A post-norm layer's bias
        reaches the residual stream through a position-dependent scale: use ``cache.accumulated_bias`` there."""
        n = self.cfg.n_layers
        if not 0 <= layer <= n:
            raise ValueError(f"layer must be in [0, {n}], got {layer}")
        total = torch.zeros_like(self.unembed.W_U[:, 0])
        for l in range(layer + (1 if mlp_input else 0)):
            block = self.blocks[l]
            if not isinstance(block.ln_attn_out, nn.Identity):
                raise NotDefinedForMixer(f"layer {l} normalises its branches' outputs (post_norm_layers), so its "
                                         "biases reach the residual stream divided by a per-position scale; use "
                                         "cache.accumulated_bias(layer) from run_with_cache")
            total = total + block.branch_scale * self._output_bias(l)
            if l < layer and include_mlp_biases and block.has_mlp:
                mlp_bias = getattr(block.mlp, "b_out", None)
                if mlp_bias is not None:
                    total = total + block.branch_scale * mlp_bias
        return total
