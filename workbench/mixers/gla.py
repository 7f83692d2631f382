"""Gated Linear Attention (Yang et al. 2024, "Gated Linear Attention Transformers with Hardware-Efficient
Training"): the sum rule with a data-dependent decay per key channel, laid out as flash-linear-attention's
``GatedLinearAttention`` (fla/layers/gla.py, read from fla 0.6.0).

    q, k, v = [act](conv(x W_Q)), [act](conv(x W_K)), conv(x W_V)    conv: optional short conv, then SiLU
    q, k    = φ(q), φ(k)                                              feature_map φ (identity default)
    g_t     = max(logsigmoid(x_t W_a + b_a) / gate_logit_normalizer, clamp_min)   [head, d_k], ≤ 0
    S_t     = diag(exp(g_t)) S_{t-1} + k_t v_tᵀ;   z_t = S_tᵀ (q_t / √d_k)
    out     = (RMSNorm_head(z) ⊙ SiLU(x W_G)) W_O + b_O               (the gate only with output_gate)

fla's low-rank gate projection ``gk_proj = Linear(hidden, 16) → Linear(16, key_dim, bias)`` is one linear map,
stored as its product W_a ``[d_model, head·d_k]`` with its bias b_a. The kernel is the linear-attention kernel
with a per-key-channel decay (kernels/README.md, "The decay-gated sum rule"): the delta rule with the delta
term off. The read-out is linear in the values, so the effective attention is exact:
A_ti = Σ_c q_tc k_ic Π_{j=i+1..t} exp(g_jc).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.norms import rms_normalize
from ..components.short_conv import ShortConv
from ..dataclass_io import check_int_fields
from .base import CacheGetter, LinearSite, Mixer, MixerConfig
from .linear import SumRule
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

GLAFeatureMap = Literal["identity", "relu", "silu", "sigmoid"]
_FEATURE_MAPS = {"identity": lambda x: x, "relu": F.relu, "silu": F.silu, "sigmoid": torch.sigmoid}


@dataclass(frozen=True)
class GLAConfig(MixerConfig):
    """GLA options: ``feature_map`` φ on q and k; ``conv_size`` taps of a short causal conv on q, k, v followed
    by SiLU (0: none, fla's ``use_short_conv=False``); ``output_gate`` (SiLU(x W_G) times the normed read-out);
    ``d_head_v`` value width per head (0: d_head); ``gate_logit_normalizer`` divides logsigmoid of the decay
    logits; ``clamp_min`` bounds the log decay from below (None: no bound); ``output_norm_eps`` the ε of the
    per-head output RMSNorm (0: the model's ``norm_eps``)."""

    kind: ClassVar[str] = "gla"
    feature_map: GLAFeatureMap = "identity"
    conv_size: int = 0
    output_gate: bool = True
    d_head_v: int = 0
    gate_logit_normalizer: float = 16.0
    clamp_min: Optional[float] = None
    output_norm_eps: float = 0.0

    def check(self, model, qk_norm: bool = False) -> None:
        if self.feature_map not in _FEATURE_MAPS:
            raise ValueError(f"GLAConfig.feature_map must be one of {sorted(_FEATURE_MAPS)}, got {self.feature_map!r}")
        check_int_fields(self, ("conv_size", "d_head_v"), minimum=0)
        if not isinstance(self.output_gate, bool):
            raise ValueError(f"GLAConfig.output_gate must be a bool, got {self.output_gate!r}")
        norm = self.gate_logit_normalizer
        if isinstance(norm, bool) or not isinstance(norm, (int, float)) or norm <= 0:
            raise ValueError(f"GLAConfig.gate_logit_normalizer must be a positive number, got {norm!r}")
        if self.clamp_min is not None and (isinstance(self.clamp_min, bool) or not isinstance(self.clamp_min, (int, float))
                                           or self.clamp_min > 0):
            raise ValueError(f"GLAConfig.clamp_min must be None or a log decay ≤ 0, got {self.clamp_min!r}")
        eps = self.output_norm_eps
        if isinstance(eps, bool) or not isinstance(eps, (int, float)) or eps < 0:
            raise ValueError(f"GLAConfig.output_norm_eps must be a non-negative number, got {eps!r}")
        if qk_norm:
            raise ValueError("the gla mixer has no Outlier Protected QK-norm (its keys feed a decayed sum rule "
                             "with no norm condition); use block='prenorm'")


@register
class GatedLinearAttention(Mixer):
    Config = GLAConfig
    recurrence = SumRule()
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_q", "hook_k", "hook_v", "hook_log_decay")
    patch_hooks: ClassVar[dict[str, str]] = {"decay": "hook_log_decay"}  # see Mixer.patch_sites
    supports_step: ClassVar[bool] = True

    def __init__(self, cfg: GLAConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        h, dm, dk, dv = self.n_heads, self.d_model, self.d_head, self.d_v
        self.W_Q = nn.Parameter(torch.empty(h, dm, dk))
        self.W_K = nn.Parameter(torch.empty(h, dm, dk))
        self.W_V = nn.Parameter(torch.empty(h, dm, dv))
        self.W_a = nn.Parameter(torch.empty(dm, h * dk))
        self.b_a = nn.Parameter(torch.zeros(h * dk))
        self.W_O = nn.Parameter(torch.empty(h, dv, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.w_norm = nn.Parameter(torch.ones(dv))  # per-head output RMSNorm weight (shared by heads)
        if cfg.output_gate:
            self.W_G = nn.Parameter(torch.empty(h, dm, dv))
        if cfg.conv_size > 0:
            self.conv_q, self.conv_k = ShortConv(h * dk, cfg.conv_size), ShortConv(h * dk, cfg.conv_size)
            self.conv_v = ShortConv(h * dv, cfg.conv_size)
        self.scale = dk ** -0.5
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q, before conv and feature map
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K, before conv and feature map
        self.hook_v_pre = HookPoint()  # [batch, pos, head, d_v]  x W_V, before conv
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  what the memory is read with (unscaled)
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  what the memory is written with
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]
        self.hook_log_decay = HookPoint()  # [batch, pos, head, d_k]  g_t = log α_t ≤ 0, one per key channel
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  S_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  memory read-out S_tᵀ(scale·q_t)
        self.hook_o_in = HookPoint()  # [batch, pos, head, d_v]  RMSNorm_head(z) (⊙ gate): what W_O reads

    @classmethod
    def label(cls, cfg: GLAConfig) -> str:
        return "Gated Linear Attention"

    @property
    def d_v(self) -> int:
        return self.cfg.d_head_v or self.d_head

    def log_decay(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_k]
        g = F.logsigmoid(x @ self.W_a + self.b_a) / self.cfg.gate_logit_normalizer
        if self.cfg.clamp_min is not None:
            g = g.clamp_min(self.cfg.clamp_min)
        return self.hook_log_decay(g.unflatten(-1, (self.n_heads, self.d_head)))

    def output_norm(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_v]
        eps = self.cfg.output_norm_eps or self.model_cfg.norm_eps
        z = rms_normalize(z, eps) * self.w_norm
        if self.cfg.output_gate:
            z = z * F.silu(torch.einsum("...m,hmd->...hd", x, self.W_G))
        return z

    # -- the interface --------------------------------------------------------------------------
    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(q=get("hook_q") * self.scale, k=get("hook_k"), v=get("hook_v"),
                                     g=get("hook_log_decay")))

    write_hooks: ClassVar[tuple[str, ...]] = ("hook_k", "hook_v")

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_t, v_t): GLA adds k_t v_tᵀ after the per-key-channel decay diag(α_t) W_{t-1}."""
        return get("hook_k"), get("hook_v")

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().head_outputs(self.output_norm(z, x), x)

    def linear_sites(self) -> list[LinearSite]:
        hk, hv = self.n_heads * self.d_head, self.n_heads * self.d_v
        return [LinearSite("q", "W_Q", "hook_q_pre", self.d_model, hk, "head_in_out"),
                LinearSite("k", "W_K", "hook_k_pre", self.d_model, hk, "head_in_out"),
                LinearSite("v", "W_V", "hook_v_pre", self.d_model, hv, "head_in_out"),
                LinearSite("o", "W_O", None, hv, self.d_model, "head_out", input_hook="hook_o_in")]

    # -- forward --------------------------------------------------------------------------------
    def _project(self, x: torch.Tensor, W: torch.Tensor, conv: Optional[nn.Module], hook: HookPoint) -> torch.Tensor:
        b, p, _ = x.shape
        heads, width = W.shape[0], W.shape[2]
        y = hook(torch.einsum("bpm,hmd->bphd", x, W))
        if conv is not None:
            y = F.silu(self.causal_conv(conv, y.reshape(b, p, -1))).view(b, p, heads, width)
        return y

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        conv = self.cfg.conv_size > 0
        phi = _FEATURE_MAPS[self.cfg.feature_map]
        q = self.hook_q(phi(self._project(x, self.W_Q, self.conv_q if conv else None, self.hook_q_pre)))
        k = self.hook_k(phi(self._project(x, self.W_K, self.conv_k if conv else None, self.hook_k_pre)))
        v = self.hook_v(self._project(x, self.W_V, self.conv_v if conv else None, self.hook_v_pre))
        inputs = RecurrenceInputs(dict(q=q * self.scale, k=k, v=v, g=self.log_decay(x)))
        res = self.run_recurrence(inputs)
        z, _, _ = expose_and_patch(self, inputs, res)
        z = self.hook_z(z)
        return torch.einsum("bphd,hdm->bpm", self.hook_o_in(self.output_norm(z, x)), self.W_O) + self.b_O
