"""A sparse mixture-of-experts MLP (Qwen3-Next / Qwen2-MoE style), with a hook on every routing decision.

    logits = x W_router                                     [batch, pos, expert]
    p = softmax(logits);  (w, e) = top_k(p)                  chosen experts e and their weights w (÷ Σw with
                                                             norm_topk_prob)
    y_j = SwiGLU_{e_j}(x) = (silu(x W_gate[e_j]) ⊙ x W_in[e_j]) W_out[e_j]     each chosen expert's output
    out = Σ_j w_j y_j  +  sigmoid(x W_shared_gate) · SwiGLU_shared(x)           (the shared expert, if any)

Read from transformers 5.x ``models/qwen3_next/modeling_qwen3_next.py`` (``Qwen3NextTopKRouter``:
softmax in float32 then top-k; ``Qwen3NextExperts``, ``Qwen3NextSparseMoeBlock``). Patching
``hook_expert_index`` routes the tokens to other experts (their outputs are computed after the hook);
patching ``hook_expert_weights`` or ``hook_expert_out`` changes the mixture.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..dataclass_io import JsonConfig, check_int_fields
from .mlp import MLP


@dataclass(frozen=True)
class MoEConfig(JsonConfig):
    """``n_experts`` SwiGLU experts of width ``d_expert``, ``top_k`` chosen per token, the chosen weights
    renormalised with ``norm_topk_prob``; a shared SwiGLU expert of width ``d_shared`` (0: none) scaled by a
    sigmoid gate; ``dense_layers`` keep the model's dense MLP (Qwen3-Next's ``mlp_only_layers``)."""

    n_experts: int
    top_k: int
    d_expert: int
    d_shared: int = 0
    norm_topk_prob: bool = True
    dense_layers: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_int_fields(self, ("n_experts", "top_k", "d_expert"))
        check_int_fields(self, ("d_shared",), minimum=0)
        if self.top_k > self.n_experts:
            raise ValueError(f"MoEConfig.top_k = {self.top_k} must be at most n_experts = {self.n_experts}")
        if not isinstance(self.norm_topk_prob, bool):
            raise ValueError(f"MoEConfig.norm_topk_prob must be a bool, got {self.norm_topk_prob!r}")
        layers = self.dense_layers
        if not isinstance(layers, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                             and i >= 0 for i in layers):
            raise ValueError(f"MoEConfig.dense_layers must list layer indices, got {layers!r}")
        object.__setattr__(self, "dense_layers", tuple(sorted(set(layers))))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "dense_layers": list(self.dense_layers)}


class MoE(nn.Module):
    def __init__(self, cfg: MoEConfig, d_model: int):
        super().__init__()
        self.cfg = cfg
        n, d = cfg.n_experts, cfg.d_expert
        self.W_router = nn.Parameter(torch.empty(d_model, n))
        self.W_gate = nn.Parameter(torch.empty(n, d_model, d))
        self.W_in = nn.Parameter(torch.empty(n, d_model, d))
        self.W_out = nn.Parameter(torch.empty(n, d, d_model))
        if cfg.d_shared:
            self.shared = MLP(d_model, cfg.d_shared, "swiglu")
            self.W_shared_gate = nn.Parameter(torch.empty(d_model, 1))
            self.hook_shared_gate = HookPoint()  # [batch, pos, 1]  sigmoid(x W_shared_gate)
            self.hook_shared_out = HookPoint()  # [batch, pos, d_model]  the shared expert's output, before its gate
        self.hook_router_logits = HookPoint()  # [batch, pos, expert]
        self.hook_expert_index = HookPoint()  # [batch, pos, top_k]  the chosen experts (int64), best first
        self.hook_expert_weights = HookPoint()  # [batch, pos, top_k]  their mixture weights
        self.hook_expert_out = HookPoint()  # [batch, pos, top_k, d_model]  each chosen expert's output (unweighted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        logits = self.hook_router_logits(x @ self.W_router)
        probs = torch.softmax(logits.float(), dim=-1)
        weights, index = torch.topk(probs, self.cfg.top_k, dim=-1)
        if self.cfg.norm_topk_prob:
            weights = weights / weights.sum(-1, keepdim=True)
        index = self.hook_expert_index(index)
        weights = self.hook_expert_weights(weights.to(x.dtype))
        if index.shape != weights.shape or index.shape[:-1] != x.shape[:-1]:
            raise ValueError(f"hook_expert_index {tuple(index.shape)} and hook_expert_weights {tuple(weights.shape)} "
                             f"must both be [batch, pos, top_k] for the input {tuple(x.shape)}")
        out = x.new_zeros(*index.shape, x.shape[-1])  # [batch, pos, top_k, d_model]
        routed = x[..., None, :].expand_as(out)
        for e in torch.unique(index).tolist():  # each expert on the tokens routed to it
            if not 0 <= e < self.cfg.n_experts:
                raise ValueError(f"hook_expert_index holds expert {e}; there are {self.cfg.n_experts}")
            where = index == e  # [batch, pos, top_k]
            xe = routed[where]  # [routed tokens, d_model]
            ye = (F.silu(xe @ self.W_gate[e]) * (xe @ self.W_in[e])) @ self.W_out[e]
            out[where] = ye
        out = self.hook_expert_out(out)
        y = (out * weights[..., None]).sum(-2)
        if self.cfg.d_shared:
            gate = self.hook_shared_gate(torch.sigmoid(x @ self.W_shared_gate))
            y = y + gate * self.hook_shared_out(self.shared(x))
        return y
