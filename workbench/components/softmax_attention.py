"""Causal multi-head softmax attention: the baseline mixer."""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..config import ModelConfig
from .norms import QKRMSNorm


class SoftmaxAttention(nn.Module):
    """z = softmax(q kᵀ / √d_head + causal mask) v per head; out = Σ_head z W_O + b_O.

    In the Outlier Protected block q and k are RMS-normalised per head (QK-norm) before hook_q/hook_k.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, dm, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.W_Q = nn.Parameter(torch.empty(h, dm, dh))
        self.W_K = nn.Parameter(torch.empty(h, dm, dh))
        self.W_V = nn.Parameter(torch.empty(h, dm, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.scale = dh ** -0.5
        if cfg.block == "outlier_protected":
            self.q_norm, self.k_norm = QKRMSNorm(dh, cfg.norm_eps), QKRMSNorm(dh, cfg.norm_eps)
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_attn_scores = HookPoint()  # [batch, head, query_pos, key_pos]  scaled, masked (-inf)
        self.hook_pattern = HookPoint()  # [batch, head, query_pos, key_pos]
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        q = torch.einsum("bpm,hmd->bphd", x, self.W_Q)
        k = torch.einsum("bpm,hmd->bphd", x, self.W_K)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.hook_q(q), self.hook_k(k)
        v = self.hook_v(torch.einsum("bpm,hmd->bphd", x, self.W_V))
        t = x.shape[1]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        scores = self.hook_attn_scores(scores.masked_fill(mask, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O
