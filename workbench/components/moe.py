"""A sparse mixture-of-experts MLP (Qwen3-Next / Qwen2-MoE, DeepSeek-V3 / Kimi Linear), with a hook on every
routing decision.

    logits = x W_router                                     [batch, pos, expert]   (float32)
    p = softmax(logits);  (w, e) = top_k(p)                  chosen experts e and their weights w (÷ Σw with
                                                             norm_topk_prob)
    y_j = SwiGLU_{e_j}(x) = (silu(x W_gate[e_j]) ⊙ x W_in[e_j]) W_out[e_j]     each chosen expert's output
    out = Σ_j w_j y_j  +  sigmoid(x W_shared_gate) · SwiGLU_shared(x)           (the shared expert, if any)

``sigmoid_scores`` (DeepSeek-V3, Kimi Linear): p = sigmoid(logits); the experts are chosen by p + b_router
(a learned correction bias, with ``score_bias``) among the ``topk_group`` of ``n_group`` expert groups with the
highest sum of their two best scores, weighted by p (÷ (Σp + 1e-20) with norm_topk_prob), × ``routed_scaling_factor``;
the shared expert may have no gate (``shared_gate``).

Read from transformers 5.x ``models/qwen3_next/modeling_qwen3_next.py`` (``Qwen3NextTopKRouter``:
softmax in float32 then top-k; ``Qwen3NextExperts``, ``Qwen3NextSparseMoeBlock``) and
``models/kimi_linear/modeling_kimi_linear.py`` (``KimiLinearTopkRouter``, ``KimiLinearMoE``).
With the model's ``mlp="relu2"`` every expert, and the shared one, is a squared-ReLU MLP without a gate
(``y_j = relu(x W_in[e_j])² W_out[e_j]``; transformers' ``NemotronHExperts`` / ``NemotronHMoE``, whose router is
Kimi's). Patching
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
from .mlp import MLP, activation


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
    sigmoid_scores: bool = False
    n_group: int = 1
    topk_group: int = 1
    routed_scaling_factor: float = 1.0
    score_bias: bool = False
    shared_gate: bool = True

    def __post_init__(self) -> None:
        check_int_fields(self, ("n_experts", "top_k", "d_expert"))
        check_int_fields(self, ("d_shared",), minimum=0)
        if self.top_k > self.n_experts:
            raise ValueError(f"MoEConfig.top_k = {self.top_k} must be at most n_experts = {self.n_experts}")
        for flag in ("norm_topk_prob", "score_bias", "shared_gate", "sigmoid_scores"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"MoEConfig.{flag} must be a bool, got {getattr(self, flag)!r}")
        check_int_fields(self, ("n_group", "topk_group"))
        if self.n_experts % self.n_group or self.topk_group > self.n_group:
            raise ValueError(f"MoEConfig: n_group = {self.n_group} must divide n_experts = {self.n_experts} and "
                             f"topk_group = {self.topk_group} be at most n_group")
        if self.n_group > 1 and (not self.sigmoid_scores or self.n_experts // self.n_group < 2):
            raise ValueError("MoEConfig: expert groups (n_group > 1) need sigmoid_scores and ≥ 2 experts a group")
        f = self.routed_scaling_factor
        if not isinstance(f, (int, float)) or isinstance(f, bool) or not f > 0:
            raise ValueError(f"MoEConfig.routed_scaling_factor must be a positive number, got {f!r}")
        layers = self.dense_layers
        if not isinstance(layers, (list, tuple)) or not all(isinstance(i, int) and not isinstance(i, bool)
                                                             and i >= 0 for i in layers):
            raise ValueError(f"MoEConfig.dense_layers must list layer indices, got {layers!r}")
        object.__setattr__(self, "dense_layers", tuple(sorted(set(layers))))

    def to_dict(self) -> dict:
        return {**super().to_dict(), "dense_layers": list(self.dense_layers)}


class MoE(nn.Module):
    def __init__(self, cfg: MoEConfig, d_model: int, kind: str = "swiglu"):
        super().__init__()
        if kind not in ("swiglu", "relu2"):
            raise ValueError(f"MoE experts are 'swiglu' or 'relu2' MLPs, got {kind!r}")
        self.cfg, self.kind = cfg, kind
        n, d = cfg.n_experts, cfg.d_expert
        self.W_router = nn.Parameter(torch.empty(d_model, n))
        if cfg.score_bias:
            self.b_router = nn.Parameter(torch.zeros(n))  # the correction bias: it changes the choice, not the weights
        if kind == "swiglu":
            self.W_gate = nn.Parameter(torch.empty(n, d_model, d))
        self.W_in = nn.Parameter(torch.empty(n, d_model, d))
        self.W_out = nn.Parameter(torch.empty(n, d, d_model))
        if cfg.d_shared:
            self.shared = MLP(d_model, cfg.d_shared, kind)
            if cfg.shared_gate:
                self.W_shared_gate = nn.Parameter(torch.empty(d_model, 1))
                self.hook_shared_gate = HookPoint()  # [batch, pos, 1]  sigmoid(x W_shared_gate)
            self.hook_shared_out = HookPoint()  # [batch, pos, d_model]  the shared expert's output, before its gate
        self.hook_router_logits = HookPoint()  # [batch, pos, expert]
        self.hook_expert_index = HookPoint()  # [batch, pos, top_k]  the chosen experts (int64), best first
        self.hook_expert_weights = HookPoint()  # [batch, pos, top_k]  their mixture weights
        self.hook_expert_out = HookPoint()  # [batch, pos, top_k, d_model]  each chosen expert's output (unweighted)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        logits = self.hook_router_logits(x.float() @ self.W_router.float())
        weights, index = self.route(logits)
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
            if self.kind == "swiglu":
                ye = (F.silu(xe @ self.W_gate[e]) * (xe @ self.W_in[e])) @ self.W_out[e]
            else:
                ye = activation(self.kind, xe @ self.W_in[e]) @ self.W_out[e]
            out[where] = ye
        out = self.hook_expert_out(out)
        y = (out * weights[..., None]).sum(-2)
        if self.cfg.d_shared:
            shared = self.hook_shared_out(self.shared(x))
            if self.cfg.shared_gate:
                shared = self.hook_shared_gate(torch.sigmoid(x @ self.W_shared_gate)) * shared
            y = y + shared
        return y

    def route(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(weights, experts) ``[batch, pos, top_k]`` each, best first, from the router logits (float32)."""
        cfg = self.cfg
        if not cfg.sigmoid_scores:
            weights, index = torch.topk(torch.softmax(logits, dim=-1), cfg.top_k, dim=-1)
            if cfg.norm_topk_prob:
                weights = weights / weights.sum(-1, keepdim=True)
            return weights, index
        scores = torch.sigmoid(logits)
        choice = scores + self.b_router.float() if cfg.score_bias else scores
        if cfg.n_group > 1:  # keep the topk_group groups whose two best scores sum highest
            groups = choice.unflatten(-1, (cfg.n_group, -1))
            best = torch.topk(torch.topk(groups, 2, dim=-1).values.sum(-1), cfg.topk_group, dim=-1).indices
            keep = torch.zeros_like(groups[..., 0], dtype=torch.bool).scatter_(-1, best, True)
            choice = choice.masked_fill(~keep[..., None].expand_as(groups).flatten(-2), float("-inf"))
        index = torch.topk(choice, cfg.top_k, dim=-1).indices
        weights = scores.gather(-1, index)
        if cfg.norm_topk_prob:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        return weights * cfg.routed_scaling_factor, index
