"""Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025): DeltaNet with a per-position decay of the memory.

    g_t = −exp(A_log) · softplus(x_t W_a + dt_bias)          log decay, α_t = exp(g_t) ∈ (0, 1]
    S_t = α_t S_{t-1};  u_t = β_t (v_t − S_tᵀ k_t);  S_t += k_t u_tᵀ
    out = (RMSNorm_head(z) ⊙ SiLU(x W_G)) W_O + b_O           (the gate only with output_gate)

All of DeltaNet's options apply (:mod:`.delta`); the decay is per value head.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from .base import CacheGetter
from .delta import DeltaConfig, DeltaNet, phi_label
from .registry import register


@dataclass(frozen=True)
class GatedDeltaConfig(DeltaConfig):
    """DeltaNet's options (``output_gate`` among them: a gate on the output); the decay has none."""

    kind: ClassVar[str] = "gated_delta"


@register
class GatedDeltaNet(DeltaNet):
    Config = GatedDeltaConfig
    input_hooks: ClassVar[tuple[str, ...]] = DeltaNet.input_hooks + ("hook_log_decay",)
    patch_hooks: ClassVar[dict[str, str]] = {**DeltaNet.patch_hooks, "decay": "hook_log_decay"}
    skip_default_init: ClassVar[tuple[str, ...]] = ("A_log", "dt_bias")

    def __init__(self, cfg: GatedDeltaConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.hook_log_decay = HookPoint()  # [batch, pos, head]  g_t = log α_t ≤ 0

    def add_decay_(self) -> None:
        h, dm = self.n_heads, self.d_model
        self.W_a = nn.Parameter(torch.empty(dm, h))
        self.A_log = nn.Parameter(torch.empty(h))
        self.dt_bias = nn.Parameter(torch.empty(h))

    @classmethod
    def label(cls, cfg: GatedDeltaConfig) -> str:
        return "Gated DeltaNet" + phi_label(cfg)

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:
        g = -self.A_log.exp() * F.softplus(x @ self.W_a + self.dt_bias)
        return self.hook_log_decay(g)

    def cached_log_decay(self, get: CacheGetter) -> Optional[torch.Tensor]:
        return get("hook_log_decay")

    @torch.no_grad()
    def init_extra_(self, generator: torch.Generator) -> None:
        """Mamba-style initialisation: A ~ U(1, 16), dt ~ logU(1e-3, 1e-1), dt_bias = softplus⁻¹(dt)."""
        h = self.A_log.shape[0]
        self.A_log.copy_(torch.empty(h).uniform_(1, 16, generator=generator).log())
        dt = (torch.rand(h, generator=generator) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).exp()
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))
