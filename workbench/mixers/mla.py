"""Multi-head latent attention (DeepSeek-V2's MLA), as Kimi Linear's full-attention layers use it.

    q      = x W_Q                         or  RMSNorm(x W_q_a) W_q_b   (with a query latent, ``q_lora_rank``)
    [c | r] = x W_kv_a                     c: the key/value latent [kv_lora_rank], r: [d_rope] key channels
    c      = RMSNorm(c)                                                  every head shares r
    [k_nope | v] = c W_kv_b  per head;     k = [k_nope | r]
    z      = softmax(q kᵀ / √(d_head + d_rope) + causal mask) v;   out = Σ_head z W_O + b_O

Read from transformers 5.x ``models/kimi_linear/modeling_kimi_linear.py`` (``KimiLinearAttention``: "MLA with
NoPE", no rotary positions; the latent norms have ε = 1e-6, ``latent_norm_eps``). No fast-weight state: its memory
is the latent cache (``hook_kv_latent``). ``hook_q``, ``hook_k`` ``[batch, pos, head, d_head + d_rope]``,
``hook_v`` ``[batch, pos, head, d_head_v]``, then ``hook_attn_scores``, ``hook_pattern``, ``hook_z`` as for the
softmax mixer, so the effective attention is the pattern.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.norms import QKRMSNorm
from ..dataclass_io import check_int_fields
from .base import CacheGetter, LinearSite, Mixer, MixerConfig
from .registry import register
from .softmax import cached_keys_values, causal_mask


@dataclass(frozen=True)
class MLAConfig(MixerConfig):
    """``kv_lora_rank`` latent width; ``q_lora_rank`` query latent (0: a full query projection); ``d_rope`` key
    channels shared by all heads (DeepSeek's rotary part; Kimi Linear applies no rotation); ``d_head`` (0: the
    model's) the per-head key channels from the latent, ``d_head_v`` (0: d_head) the value width; ``n_heads``
    (0: the model's)."""

    kind: ClassVar[str] = "mla"
    kv_lora_rank: int = 32
    q_lora_rank: int = 0
    d_rope: int = 0
    n_heads: int = 0
    d_head: int = 0
    d_head_v: int = 0
    latent_norm_eps: float = 1e-6

    def check(self, model, qk_norm: bool = False) -> None:
        check_int_fields(self, ("kv_lora_rank",))
        check_int_fields(self, ("q_lora_rank", "d_rope", "n_heads", "d_head", "d_head_v"), minimum=0)
        eps = self.latent_norm_eps
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"MLAConfig.latent_norm_eps must be a positive number, got {eps!r}")
        if qk_norm:
            raise ValueError("the mla mixer has no Outlier Protected QK-norm")


@register
class MultiHeadLatentAttention(Mixer):
    Config = MLAConfig
    effective_attention_hooks: ClassVar[tuple[str, ...]] = ("hook_pattern",)
    supports_step: ClassVar[bool] = True  # its step cache holds the per-head keys and values seen

    def __init__(self, cfg: MLAConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.n_heads, self.d_head = cfg.n_heads or model.n_heads, cfg.d_head or model.d_head
        h, dm, dn, dr = self.n_heads, self.d_model, self.d_head, cfg.d_rope
        self.d_qk, self.d_vh = dn + dr, cfg.d_head_v or dn
        if cfg.q_lora_rank:
            self.W_q_a = nn.Parameter(torch.empty(dm, cfg.q_lora_rank))
            self.q_a_norm = QKRMSNorm(cfg.q_lora_rank, cfg.latent_norm_eps)
            self.W_q_b = nn.Parameter(torch.empty(cfg.q_lora_rank, h, self.d_qk))
        else:
            self.W_Q = nn.Parameter(torch.empty(h, dm, self.d_qk))
        self.W_kv_a = nn.Parameter(torch.empty(dm, cfg.kv_lora_rank + dr))
        self.kv_a_norm = QKRMSNorm(cfg.kv_lora_rank, cfg.latent_norm_eps)
        self.W_kv_b = nn.Parameter(torch.empty(cfg.kv_lora_rank, h, dn + self.d_vh))
        self.W_O = nn.Parameter(torch.empty(h, self.d_vh, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.scale = self.d_qk ** -0.5
        self.hook_kv_latent = HookPoint()  # [batch, pos, d_latent]  RMSNorm(c): the key/value latent
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  d_k = d_head + d_rope
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  [k_nope | r]
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]
        self.hook_attn_scores = HookPoint()  # [batch, head, pos, pos]  (query, key) scaled, masked (-inf)
        self.hook_pattern = HookPoint()  # [batch, head, pos, pos]  (query, key)
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]

    @classmethod
    def label(cls, cfg: MLAConfig) -> str:
        return "latent attention"

    @property
    def d_k(self) -> int:
        return self.d_qk

    @property
    def d_v(self) -> int:
        return self.d_vh

    def effective_attention(self, get: CacheGetter) -> torch.Tensor:
        return get("hook_pattern")

    def linear_sites(self) -> list[LinearSite]:
        return [LinearSite("o", "W_O", None, self.n_heads * self.d_vh, self.d_model, "head_out", input_hook="hook_z")]

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        cfg, h, dn = self.cfg, self.n_heads, self.d_head
        if cfg.q_lora_rank:
            q = torch.einsum("bpr,rhd->bphd", self.q_a_norm(x @ self.W_q_a), self.W_q_b)
        else:
            q = torch.einsum("bpm,hmd->bphd", x, self.W_Q)
        q = self.hook_q(q)
        ckv = x @ self.W_kv_a
        c = self.hook_kv_latent(self.kv_a_norm(ckv[..., : cfg.kv_lora_rank]))
        rope = ckv[..., cfg.kv_lora_rank:]  # [batch, pos, d_rope], shared by the heads
        kv = torch.einsum("bpr,rhd->bphd", c, self.W_kv_b)
        k = self.hook_k(torch.cat([kv[..., :dn], rope[:, :, None].expand(-1, -1, h, -1)], dim=-1))
        v = self.hook_v(kv[..., dn:])
        k, v = cached_keys_values(self.step_cache, k, v)  # with a step cache: the earlier positions' too
        scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * self.scale
        mask = causal_mask(x.shape[1], k.shape[1], 0, x.device)
        scores = self.hook_attn_scores(scores.masked_fill(mask, float("-inf")))
        pattern = self.hook_pattern(scores.softmax(-1))
        z = self.hook_z(torch.einsum("bhqk,bkhd->bqhd", pattern, v))
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O
