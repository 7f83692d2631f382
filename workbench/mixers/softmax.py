"""Causal multi-head softmax attention: the baseline mixer (no fast-weight state; its memory is the
key/value cache)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from transformer_lens.hook_points import HookPoint

from .base import CacheGetter, LinearSite, Mixer, MixerConfig
from .registry import register


@dataclass(frozen=True)
class SoftmaxConfig(MixerConfig):
    """Softmax attention has no options of its own."""

    kind: ClassVar[str] = "softmax"


@register
class SoftmaxAttention(Mixer):
    """z = softmax(q kᵀ / √d_head + causal mask) v per head; out = Σ_head z W_O + b_O.

    In the Outlier Protected block q and k are RMS-normalised per head (QK-norm) before hook_q/hook_k.
    """

    Config = SoftmaxConfig
    effective_attention_hooks: ClassVar[tuple[str, ...]] = ("hook_pattern",)

    def __init__(self, cfg: SoftmaxConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_()
        self.scale = self.d_head ** -0.5
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]
        self.hook_attn_scores = HookPoint()  # [batch, head, pos, pos]  (query, key) scaled, masked (-inf)
        self.hook_pattern = HookPoint()  # [batch, head, pos, pos]  (query, key)
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]

    @classmethod
    def label(cls, cfg: SoftmaxConfig) -> str:
        return "softmax attention"

    def effective_attention(self, get: CacheGetter) -> torch.Tensor:
        return get("hook_pattern")

    def linear_sites(self) -> list[LinearSite]:
        hd = self.n_heads * self.d_head
        return [LinearSite(kind, f"W_{kind.upper()}", f"hook_{kind}", self.d_model, hd, "head_in_out")
                for kind in ("q", "k", "v")] + [
                LinearSite("o", "W_O", None, hd, self.d_model, "head_out", input_hook="hook_z")]

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        q = self.hook_q(self.q_norm(torch.einsum("bpm,hmd->bphd", x, self.W_Q)))
        k = self.hook_k(self.k_norm(torch.einsum("bpm,hmd->bphd", x, self.W_K)))
        v = self.hook_v(torch.einsum("bpm,hmd->bphd", x, self.W_V))
        t = x.shape[1]
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale
        mask = torch.ones(t, t, dtype=torch.bool, device=x.device).triu(1)
        scores = self.hook_attn_scores(scores.masked_fill(mask, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O
