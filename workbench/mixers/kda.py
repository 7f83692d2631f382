"""Kimi Delta Attention (Kimi Team 2025, "Kimi Linear"): Gated DeltaNet with a decay per key channel.

    g_t = −exp(A_log) · softplus(x_t W_a + dt_bias)          [head, d_k]: one log decay per state row
    S_t = diag(exp(g_t)) S_{t-1};  u_t = β_t (v_t − S_tᵀ k_t);  S_t += k_t u_tᵀ;  z_t = S_tᵀ (q_t / √d_k)
    out = (RMSNorm_head(z) ⊙ gate(x W_G)) W_O + b_O

As transformers' ``KimiLinearDeltaAttention`` (``models/kimi_linear/modeling_kimi_linear.py``) and its
``KimiLinearForgetGate``: the forget gate's low-rank projection ``f_b(f_a(x))`` is one linear map, stored here as
its product W_a ``[d_model, head·d_k]`` (likewise a low-rank output gate ``g_b(g_a(x))`` as W_G); ``A_log`` is
per head, ``dt_bias`` per head and key channel. Every other option is Gated DeltaNet's (:mod:`.delta`). The
kernel is the delta rule with a vector gate (kernels/delta_rule, ``g [batch, pos, head, d_k]``); the effective
attention stays exact: A = tril(Σ_c q_tc k_ic Γ_tic) · (I + tril(diag(β) Σ_c k_tc k_ic Γ_tic, −1))⁻¹ · diag(β).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from .gated_delta import GatedDeltaConfig, GatedDeltaNet
from .registry import register


@dataclass(frozen=True)
class KDAConfig(GatedDeltaConfig):
    """Gated DeltaNet's options; the decay has one log decay per key channel instead of one per head."""

    kind: ClassVar[str] = "kda"


@register
class KimiDeltaAttention(GatedDeltaNet):
    Config = KDAConfig

    def __init__(self, cfg: KDAConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.hook_log_decay = HookPoint()  # [batch, pos, head, d_k]  g_t = log α_t ≤ 0, one per key channel

    def add_decay_(self) -> None:
        h, dm, dk = self.n_heads, self.d_model, self.d_head
        self.W_a = nn.Parameter(torch.empty(dm, h * dk))
        self.A_log = nn.Parameter(torch.empty(h))
        self.dt_bias = nn.Parameter(torch.empty(h * dk))

    @classmethod
    def label(cls, cfg: KDAConfig) -> str:
        return "Kimi Delta Attention"

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_k]
        a = (x @ self.W_a + self.dt_bias).unflatten(-1, (self.n_heads, self.d_head))
        return self.hook_log_decay(-self.A_log.exp()[:, None] * F.softplus(a))

    @torch.no_grad()
    def init_extra_(self, generator: torch.Generator) -> None:
        """As Gated DeltaNet's, per key channel for dt_bias: A ~ U(1, 16), dt ~ logU(1e-3, 1e-1)."""
        h, n = self.A_log.shape[0], self.dt_bias.shape[0]
        self.A_log.copy_(torch.empty(h).uniform_(1, 16, generator=generator).log())
        dt = (torch.rand(n, generator=generator) * (torch.tensor(0.1).log() - torch.tensor(1e-3).log())
              + torch.tensor(1e-3).log()).exp()
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
