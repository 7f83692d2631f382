"""TransformerLens' ``ActivationCache`` on a ``HookedFastWeightLM``: what ``model.run_with_cache`` returns.

Every documented method of ``transformer_lens.ActivationCache`` (4.3) works; the ones that need to know how a
layer writes into the residual stream ask the model's blocks and mixers instead of assuming a GPT-2 block, so
that every decomposition sums *exactly* (float32 rounding) to the model's own residual stream:

    resid_pre[i] = embed + pos_embed (Outlier Protected block: input_norm = ln_input(embed + pos_embed))
                   + Σ_{l<i} [Σ_h result[l, h] + attn_bias[l] + attn_other[l]] + Σ_{l<i} mlp_out[l]
    mlp_out[l]   = Σ_n neuron[l, n] + mlp_bias[l]

- ``result[l, h]`` (``blocks.{l}.attn.hook_result``, computed on demand as TransformerLens' ``compute_head_results``
  does) is head h's share of the mixer output, as the mixer maps its read-out ``hook_z`` to the residual stream
  (``Mixer.head_outputs``: through its per-head output norm and gate, not only ``z · W_O``), times the block's
  branch weight (Outlier Protected block: β). ``attn_other[l]`` is what the mixer adds beside its heads and its
  bias (the Fast Weight Memory's LSTM state): only for mixers that say they add something
  (``Mixer.adds_beside_heads``).
- In a post-norm layer (``ModelConfig.post_norm_layers``: x + norm(attn(x))) the branch's norm is taken with its
  cached scale held fixed, as TransformerLens' ``apply_ln_to_stack`` does for the final norm: a head's share is
  ``(h − mean h) / scale ⊙ w``, and the norm's own bias goes into ``bias``. The sum is exact; the shares are
  those of the frozen-scale linearisation (say so when you report them).
- ``apply_ln_to_stack(layer)`` divides by the cached scale of the norm *in front of* that layer. A layer with no
  norm in front of it (``norm="none"``, the Outlier Protected block, a post-norm layer) reads the residual stream
  itself, so the stack comes back unchanged — exactly what that layer reads.
- A direct logit attribution sums to the logit (difference) less ``model.logit_offset(tokens, incorrect)``, the
  final norm's bias and ``b_U`` that no residual component carries (TransformerLens folds them into ``b_U`` and
  leaves them out the same way); ``tokens_to_residual_directions`` includes the final norm's gain.

What is refused, with the reason: neuron results of a mixture-of-experts MLP (no single ``W_out``); the
attention pattern of a layer that has none (``cache["pattern", l]`` on a fast-weight layer points to the exact
effective attention, ``model.effective_attention``). TransformerLens' SSM helpers (``ssm_layers``,
``compute_ssm_state``, ``compute_ssm_effective_attention``) answer from our exact recurrences.

Written from ``transformer_lens/ActivationCache.py`` (4.3), whose methods this subclass keeps or replaces.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import einops
import torch
from torch import nn
from transformer_lens import ActivationCache
from transformer_lens.utilities import Slice, get_act_name

from ..components.mlp import MLP
from ..components.norms import LayerNorm
from ..mixers import NotDefinedForMixer, check_positions, states_at


class FastWeightActivationCache(ActivationCache):
    """``ActivationCache`` for a :class:`~workbench.model.HookedFastWeightLM` (see the module docstring)."""

    # ------------------------------------------------------------------ dict-like access
    def __contains__(self, key: object) -> bool:
        return key in self.cache_dict

    def get(self, key: str, default: Any = None) -> Any:
        return self.cache_dict.get(key, default)

    def __getitem__(self, key) -> torch.Tensor:
        try:
            return super().__getitem__(key)
        except KeyError:
            raise KeyError(self._why_missing(key)) from None

    def _why_missing(self, key) -> str:
        if isinstance(key, str):
            name = key if key in self.model.hook_dict else get_act_name(key)
        else:
            key = tuple(key)
            layer = key[1] if len(key) > 1 else None
            if isinstance(layer, int) and layer < 0:
                layer += self.model.cfg.n_layers
            name = get_act_name(key[0], layer, *key[2:])
        if name.endswith(".hook_result"):
            return f"{name} is computed, not hooked: call cache.compute_head_results() first"
        if name not in self.model.hook_dict:
            parts = name.split(".")
            if parts[0] == "blocks" and len(parts) > 2 and parts[1].isdigit() and int(parts[1]) < len(self.model.blocks):
                layer = int(parts[1])
                attn = self.model.blocks[layer].attn
                if not self.model.blocks[layer].has_mlp and (parts[2] == "mlp" or parts[-1] in (
                        "hook_mlp_out", "hook_resid_mid")):
                    return f"{name}: this model has no MLPs (mlp='none', cfg.attn_only), so no {parts[-1]}"
                if parts[-1] in ("hook_pattern", "hook_attn_scores"):
                    return (f"{name}: layer {layer} ({attn.label(attn.cfg)}) has no attention pattern; its exact "
                            f"effective attention (hook_z = A · hook_v) is model.effective_attention(tokens, {layer}), "
                            "or cache.compute_ssm_effective_attention(layer)")
                return f"{name}: layer {layer} ({attn.label(attn.cfg)}) has no such hook; docs/hooks.md lists them"
            return f"{name}: this model has no such hook (model.hook_dict lists them; docs/hooks.md)"
        return (f"{name} was not cached (run_with_cache with a names_filter or stop_at_layer that leaves it out, or a "
                "hook that only fires inside model.expose_states)")

    def apply_slice_to_batch_dim(self, batch_slice) -> "FastWeightActivationCache":
        sliced = super().apply_slice_to_batch_dim(batch_slice)
        return FastWeightActivationCache(sliced.cache_dict, self.model, has_batch_dim=sliced.has_batch_dim)

    # ------------------------------------------------------------------ how a layer writes into the residual stream
    def _mixer_input(self, layer: int) -> torch.Tensor:
        """What the mixer of ``layer`` read: its pre-norm's output, or the residual stream itself."""
        name = f"blocks.{layer}.ln1.hook_normalized"
        return self[name if name in self.model.hook_dict else f"blocks.{layer}.hook_resid_pre"]

    def _branch_norm(self, layer: int, branch: str) -> Optional[nn.Module]:
        norm = getattr(self.model.blocks[layer], f"ln_{branch}_out")
        return None if isinstance(norm, nn.Identity) else norm

    def _to_residual(self, layer: int, branch: str, v: torch.Tensor, extra_axes: int) -> torch.Tensor:
        """A linear piece ``v [..., (extra axes), d_model]`` of a branch's output as it reaches the residual stream:
        β · v, through a post-norm with its cached scale held fixed (centred for LayerNorm, times its gain)."""
        block = self.model.blocks[layer]
        norm = self._branch_norm(layer, branch)
        if norm is not None:
            scale = self[f"blocks.{layer}.ln_{branch}_out.hook_scale"]  # [..., pos, 1]
            for _ in range(extra_axes):
                scale = scale.unsqueeze(-2)
            if isinstance(norm, LayerNorm):
                v = v - v.mean(-1, keepdim=True)
            v = v / scale * norm.w
        return block.branch_scale * v

    def _branch_bias(self, layer: int, branch: str, bias: Optional[torch.Tensor]) -> torch.Tensor:
        """The constant a branch adds: its bias (and a post-norm's own bias) as it reaches the residual stream;
        ``[d_model]``, or ``[..., pos, d_model]`` in a post-norm layer (the frozen scale varies by position)."""
        d = self.model.cfg.d_model
        ref = self.model.unembed.W_U
        bias = torch.zeros(d, dtype=ref.dtype, device=ref.device) if bias is None else bias
        norm = self._branch_norm(layer, branch)
        if norm is None:
            return self.model.blocks[layer].branch_scale * bias
        out = self._to_residual(layer, branch, bias.expand_as(self[f"blocks.{layer}.hook_resid_pre"]), 0)
        return out + self.model.blocks[layer].branch_scale * norm.b if isinstance(norm, LayerNorm) else out

    def _mlp_bias(self, layer: int) -> Optional[torch.Tensor]:
        mlp = self.model.blocks[layer].mlp
        return mlp.b_out if isinstance(mlp, MLP) else None

    # ------------------------------------------------------------------ per-head results
    def compute_head_results(self) -> None:
        """Compute ``blocks.{l}.attn.hook_result`` ``[batch, pos, head, d_model]`` for every layer: each head's
        exact share of the residual-stream write (module docstring)."""
        self._ensure_head_results()

    @torch.no_grad()
    def _ensure_head_results(self) -> bool:
        all_cached = True
        for layer in range(self.model.cfg.n_layers):
            key = f"blocks.{layer}.attn.hook_result"
            if key in self.cache_dict:
                continue
            all_cached = False
            attn = self.model.blocks[layer].attn
            per_head = attn.head_outputs(self[("z", layer, "attn")], self._mixer_input(layer))  # [..., head, d_model]
            self.cache_dict[key] = self._to_residual(layer, "attn", per_head, 1)
        return all_cached

    @torch.no_grad()
    def attn_bias(self, layer: int) -> torch.Tensor:
        """The constant the mixer of ``layer`` adds to the residual stream (its output bias; with a post-norm, the
        norm's bias too): ``[d_model]`` or ``[..., pos, d_model]``."""
        return self._branch_bias(layer, "attn", self.model.blocks[layer].attn.output_bias())

    @torch.no_grad()
    def attn_other(self, layer: int) -> Optional[torch.Tensor]:
        """What the mixer of ``layer`` adds beside its heads and its bias (``[..., pos, d_model]``), or None for a
        mixer whose output is its heads and its bias (``Mixer.adds_beside_heads``: the Fast Weight Memory's LSTM
        state is the exception)."""
        if not self.model.blocks[layer].attn.adds_beside_heads:
            return None
        self._ensure_head_results()
        return self[("attn_out", layer)] - self[("result", layer, "attn")].sum(-2) - self.attn_bias(layer)

    def stack_head_results(self, layer: int = -1, return_labels: bool = False, incl_remainder: bool = False,
                           pos_slice=None, apply_ln: bool = False):
        """Every head's result in the layers before ``layer`` (``[n_components, ..., d_model]``, labels ``L{l}H{h}``),
        as TransformerLens' method, with each layer's own head count."""
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        if layer is None or layer == -1:
            layer = self.model.cfg.n_layers
        self._ensure_head_results()
        parts, labels = [], []
        for l in range(layer):
            result = pos_slice.apply(self[("result", l, "attn")], dim=-3)
            parts.append(result)
            labels.extend(f"L{l}H{h}" for h in range(result.shape[-2]))
        if parts:
            components = einops.rearrange(torch.cat(parts, dim=-2), "... n d_model -> n ... d_model")
        else:
            empty = pos_slice.apply(self[("resid_pre", 0)], dim=-2)
            components = empty.new_zeros((0, *empty.shape))
        if incl_remainder:
            total = pos_slice.apply(self[("resid_post", layer - 1)] if layer > 0 else self[("resid_pre", 0)], dim=-2)
            components = torch.cat([components, (total - components.sum(0))[None]], dim=0)
            labels.append("remainder")
        if apply_ln:
            components = self.apply_ln_to_stack(components, layer, pos_slice=pos_slice)
        return (components, labels) if return_labels else components

    # ------------------------------------------------------------------ per-neuron results
    def _dense_mlp(self, layer: int) -> MLP:
        block = self.model.blocks[layer]
        if not block.has_mlp:
            raise ValueError(f"layer {layer} has no MLP (mlp='none'), so no neuron results")
        if not isinstance(block.mlp, MLP):
            raise NotDefinedForMixer(
                f"layer {layer}'s MLP is a mixture of experts: each token's output is a routing-weighted sum over "
                "the chosen experts' neurons, with no single W_out, so TransformerLens' neuron results are not "
                "defined; use expand_neurons=False (the MLP output is one component) or the hooks "
                "mlp.hook_expert_out / mlp.hook_expert_weights")
        return block.mlp

    def get_neuron_results(self, layer: int, neuron_slice=None, pos_slice=None, project_output_onto=None):
        """Each neuron's write into the residual stream, ``post[n] · W_out[n]`` through the block's branch weight and
        any post-norm (frozen scale); ``[..., d_mlp, d_model]`` (or projected onto ``project_output_onto``)."""
        neuron_slice = neuron_slice if isinstance(neuron_slice, Slice) else Slice(neuron_slice)
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        W_out = neuron_slice.apply(self._dense_mlp(layer).W_out, dim=0)
        post = neuron_slice.apply(self[("post", layer, "mlp")], dim=-1)
        with torch.no_grad():
            out = self._to_residual(layer, "mlp", post[..., None] * W_out.detach(), 1)
        out = pos_slice.apply(out, dim=-3)
        return out if project_output_onto is None else out @ project_output_onto

    def _stack_neuron_results_apply_ln_projected(self, layer, pos_slice, neuron_slice, project_2d, mlp_input=False):
        parts = [self.get_neuron_results(l, neuron_slice=Slice.unwrap(neuron_slice), pos_slice=pos_slice)
                 for l in range(layer)]
        if not parts:
            empty = pos_slice.apply(self[("resid_pre", 0)], dim=-2)
            return empty.new_zeros((0, *empty.shape[:-1], project_2d.shape[-1]))
        stack = einops.rearrange(torch.cat(parts, dim=-2), "... n d_model -> n ... d_model")
        return self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input) @ project_2d

    # ------------------------------------------------------------------ norms
    def apply_ln_to_stack(self, residual_stack, layer: Optional[int] = None, mlp_input: bool = False, pos_slice=None,
                          batch_slice=None, has_batch_dim: bool = True, recompute_ln: bool = False):
        """As TransformerLens' method, asking the layer for the norm in front of it: where there is none (module
        docstring) the stack is what the layer reads and comes back unchanged."""
        n = self.model.cfg.n_layers
        if layer is None or layer == -1:
            layer = n
        if not isinstance(layer, int) or not 0 <= layer <= n:
            raise ValueError(f"layer must be in [0, {n}] (n_layers: the unembedding), -1 or None; got {layer!r}")
        if layer == n:
            if mlp_input:
                raise ValueError("mlp_input=True names a block's MLP; layer = n_layers is the unembedding")
            norm = self.model.ln_final
        else:
            block = self.model.blocks[layer]
            if mlp_input and not block.has_mlp:
                raise ValueError(f"mlp_input=True, but layer {layer} has no MLP (mlp='none')")
            norm = block.ln2 if mlp_input else block.ln1
        if isinstance(norm, nn.Identity):
            bs = batch_slice if isinstance(batch_slice, Slice) else Slice(batch_slice)
            return bs.apply(residual_stack, dim=1) if has_batch_dim else residual_stack
        return super().apply_ln_to_stack(residual_stack, layer, mlp_input=mlp_input, pos_slice=pos_slice,
                                         batch_slice=batch_slice, has_batch_dim=has_batch_dim,
                                         recompute_ln=recompute_ln)

    # ------------------------------------------------------------------ residual decompositions
    def _embed_parts(self) -> list[tuple[str, torch.Tensor]]:
        """What the first block starts from: embed and pos_embed, or (Outlier Protected block) their normalised
        sum ``input_norm``, which is one component because the norm is not linear."""
        if "ln_input.hook_normalized" in self.model.hook_dict:
            return [("input_norm", self["ln_input.hook_normalized"])]
        parts = [("embed", self["hook_embed"])]
        if "hook_pos_embed" in self.model.hook_dict:
            parts.append(("pos_embed", self["hook_pos_embed"]))
        return parts

    def decompose_resid(self, layer: Optional[int] = None, mlp_input: bool = False, mode: str = "all",
                        apply_ln: bool = False, pos_slice=None, incl_embeds: bool = True,
                        return_labels: bool = False):
        """The residual stream entering ``layer`` (its MLP with ``mlp_input``) as a stack of what wrote it: the
        embeddings (``input_norm`` in the Outlier Protected block), then each ``{l}_attn_out`` and ``{l}_mlp_out``;
        ``mode`` "attn" / "mlp" keeps only those. Sums exactly to ``resid_pre`` (``resid_mid``)."""
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f"mode must be 'all', 'attn' or 'mlp', got {mode!r}")
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        n = self.model.cfg.n_layers
        layer = n if layer is None or layer == -1 else layer
        if not 0 <= layer <= n or (mlp_input and layer == n):
            raise ValueError(f"layer must be in [0, {n}] ({n - 1} at most with mlp_input), got {layer}")
        parts = list(self._embed_parts()) if incl_embeds else []
        incl_attn, incl_mlp = mode != "mlp", mode != "attn" and not self.model.cfg.attn_only
        for l in range(layer):
            if incl_attn:
                parts.append((f"{l}_attn_out", self[("attn_out", l)]))
            if incl_mlp:
                parts.append((f"{l}_mlp_out", self[("mlp_out", l)]))
        if mlp_input and incl_attn:
            parts.append((f"{layer}_attn_out", self[("attn_out", layer)]))
        if not parts:
            raise ValueError("nothing to decompose: no layers before this one and incl_embeds=False")
        components = torch.stack([pos_slice.apply(t, dim=-2) for _, t in parts])
        if apply_ln:
            components = self.apply_ln_to_stack(components, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        return (components, [name for name, _ in parts]) if return_labels else components

    @torch.no_grad()
    def accumulated_bias(self, layer: int, mlp_input: bool = False, include_mlp_biases: bool = True) -> torch.Tensor:
        """The sum of every constant written before ``layer`` (its MLP with ``mlp_input``): each mixer's output bias
        and, with ``include_mlp_biases``, each MLP's ``b_out``, through branch weights and post-norms (their biases
        included). ``[d_model]``, or ``[..., pos, d_model]`` with post-norm layers."""
        total = self._branch_bias(0, "attn", None) * 0
        for l in range(layer + (1 if mlp_input else 0)):
            total = total + self.attn_bias(l)
            if l < layer and include_mlp_biases and self.model.blocks[l].has_mlp:
                total = total + self._branch_bias(l, "mlp", self._mlp_bias(l))
        return total

    def get_full_resid_decomposition(self, layer: Optional[int] = None, mlp_input: bool = False,
                                     expand_neurons: bool = True, apply_ln: bool = False, pos_slice=None,
                                     return_labels: bool = False, project_output_onto: Optional[torch.Tensor] = None):
        """The residual stream entering ``layer`` as heads ``L{l}H{h}``, any ``L{l}_attn_other``, neurons ``L{l}N{n}``
        (or ``{l}_mlp_out`` with ``expand_neurons=False``), ``embed``/``pos_embed`` (``input_norm``) and ``bias``:
        TransformerLens' order and labels; the rows sum exactly to ``resid_pre`` (``resid_mid`` with ``mlp_input``).
        ``project_output_onto`` ``[d_model]`` or ``[d_model, k]`` projects every row (after ``apply_ln``)."""
        pos_slice = pos_slice if isinstance(pos_slice, Slice) else Slice(pos_slice)
        n = self.model.cfg.n_layers
        layer = n if layer is None or layer == -1 else layer
        if not 0 <= layer <= n or (mlp_input and layer == n):
            raise ValueError(f"layer must be in [0, {n}] ({n - 1} at most with mlp_input), got {layer}")
        attn_layers = layer + (1 if mlp_input else 0)
        heads, labels = self.stack_head_results(attn_layers, pos_slice=pos_slice, return_labels=True)
        parts = [heads]
        for l in range(attn_layers):
            other = self.attn_other(l)
            if other is not None:
                parts.append(pos_slice.apply(other, dim=-2)[None])
                labels.append(f"L{l}_attn_other")
        if not self.model.cfg.attn_only and layer > 0:
            if expand_neurons:
                neurons = [self.get_neuron_results(l, pos_slice=pos_slice) for l in range(layer)]
                parts.append(einops.rearrange(torch.cat(neurons, dim=-2), "... n d_model -> n ... d_model"))
                labels.extend(f"L{l}N{i}" for l, t in enumerate(neurons) for i in range(t.shape[-2]))
            else:
                mlps, mlp_labels = self.decompose_resid(layer, pos_slice=pos_slice, mode="mlp", incl_embeds=False,
                                                        return_labels=True)
                parts.append(mlps)
                labels.extend(mlp_labels)
        for name, t in self._embed_parts():
            parts.append(pos_slice.apply(t, dim=-2)[None])
            labels.append(name)
        shape = self[("resid_pre", 0)].shape
        bias = self.accumulated_bias(layer, mlp_input, include_mlp_biases=expand_neurons).expand(shape)
        parts.append(pos_slice.apply(bias, dim=-2)[None])
        labels.append("bias")
        stack = torch.cat(parts, dim=0)
        if apply_ln:
            stack = self.apply_ln_to_stack(stack, layer, pos_slice=pos_slice, mlp_input=mlp_input)
        if project_output_onto is not None:
            stack = stack @ project_output_onto
        return (stack, labels) if return_labels else stack

    # ------------------------------------------------------------------ TransformerLens' SSM helpers, answered exactly
    def ssm_layers(self, mixer_type=None) -> list[int]:
        """The layers whose mixer keeps a fast-weight state (``mixer_type`` is the bridge's and is not used)."""
        return list(self.model.fast_weight_layers)

    def _getter(self, layer: int):
        if not self.has_batch_dim:
            raise ValueError("the recurrences need the batch axis: use a cache without remove_batch_dim")
        prefix = f"blocks.{layer}.attn."
        return lambda name: self.cache_dict.get(prefix + name)

    def _over_layers(self, layer, fn):
        if layer is not None:
            return fn(layer)
        layers = self.ssm_layers()
        if not layers:
            raise RuntimeError("this model has no fast-weight layer")
        out = {i: fn(i) for i in layers}
        return torch.stack(list(out.values())) if layers == list(range(self.model.cfg.n_layers)) else out

    @torch.no_grad()
    def compute_ssm_state(self, layer: Optional[int] = None, time_step: Optional[int] = None
                          ) -> Union[torch.Tensor, dict[int, torch.Tensor]]:
        """The fast-weight state after the write at ``time_step`` (None: every position), rebuilt from this cache by
        the layer's exact recurrence: ``[batch, n_positions, head, d_k, d_v]`` (the layout of
        ``model.fast_weights``). ``layer`` None: every fast-weight layer (stacked when all layers are)."""
        def one(l: int) -> torch.Tensor:
            attn = self.model.fast_weight_mixer(l)
            inputs = attn.recurrence_inputs(self._getter(l))
            n_pos = self[("resid_pre", l)].shape[-2]
            positions = check_positions(list(range(n_pos)) if time_step is None else time_step, n_pos)
            return states_at(attn.recurrence, inputs, positions, self.model.cfg.chunk_size, self.model.cfg.backend)
        return self._over_layers(layer, one)

    @torch.no_grad()
    def compute_ssm_effective_attention(self, layer: Optional[int] = None, include_dt_scaling: bool = False,
                                        per_state_coord: bool = False):
        """The exact effective attention ``[batch, head, pos, pos]`` with ``hook_z = A · hook_v`` of ``layer`` (None:
        every fast-weight layer), from this cache; the bridge's Mamba options are refused (A here is exact)."""
        if include_dt_scaling or per_state_coord:
            raise ValueError("include_dt_scaling / per_state_coord are options of TransformerLens' Mamba bridges; "
                             "this A is the exact one with hook_z = A · hook_v (Mamba-2: hook_v holds dt·x)")

        def one(l: int) -> torch.Tensor:
            attn = self.model.mixer(l)
            return attn.effective_attention(self._getter(l))
        return self._over_layers(layer, one)
