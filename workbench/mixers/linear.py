"""Linear attention with the feature maps of Schlag et al. 2021: the sum-rule fast weight programmer.

    S_t = S_{t-1} + φ(k_t) v_tᵀ;   z_t = S_tᵀ (scale·φ(q_t))   (÷ Σ_{j≤t} φ(k_j)ᵀφ(q_t) with sum_norm)

``scale`` is 1 with ``sum_norm`` (it cancels) and d_k^-½ without. With ``conv_size`` > 0, DeltaNet's short
causal convolution runs on x W_Q, x W_K and x W_V first (no activation after it: the feature map follows), so
a key can hold the token before it, as DeltaNet's does. In the Outlier Protected block the
projected q and k are RMS-normalised per head with a learnable gain each (QK-norm) after
``hook_q_pre``/``hook_k_pre`` and before the feature map (the sum rule has no stability condition on
‖k‖, so both sides carry a gain, as in softmax attention).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.feature_maps import FeatureMap, feature_dim
from ..dataclass_io import check_int_fields
from ..kernels import RecurrenceOutput, linear_attention
from ..kernels._decay import cumulative_log_decay, decayed_products
from .base import CacheGetter, LinearSite, Mixer, MixerConfig, NotDefinedForMixer
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

FeatureMapKind = Literal["identity", "elu1", "dpfp", "favor"]
EPS = 1e-6  # the sum normaliser's epsilon (kernel, read-out and effective attention alike)


@dataclass(frozen=True)
class LinearConfig(MixerConfig):
    """Linear attention options: ``feature_map`` φ on q and k ("identity", "elu1", "dpfp" with ``dpfp_nu``,
    "favor" with ``favor_features`` random features seeded by the model's ``seed``); ``sum_norm``
    divides the read-out by ``z_tᵀ φ(q_t)``; ``conv_size``: taps of a short causal convolution on the three
    projections (0, the default: none, Schlag et al.'s model; ``to_dict`` writes it only when set)."""

    kind: ClassVar[str] = "linear"
    not_in_flat_format: ClassVar[tuple[str, ...]] = ("conv_size",)
    feature_map: FeatureMapKind = "identity"
    dpfp_nu: int = 1
    favor_features: int = 32
    sum_norm: bool = False
    conv_size: int = 0

    def check(self, model, qk_norm: bool = False) -> None:
        allowed = ("identity", "elu1", "dpfp", "favor")
        if self.feature_map not in allowed:
            raise ValueError(f"LinearConfig.feature_map must be one of {allowed}, got {self.feature_map!r}")
        check_int_fields(self, ("dpfp_nu", "favor_features"))
        check_int_fields(self, ("conv_size",), minimum=0)
        if not isinstance(self.sum_norm, bool):
            raise ValueError(f"LinearConfig.sum_norm must be a bool, got {self.sum_norm!r}")
        if self.feature_map == "dpfp" and self.dpfp_nu > 2 * model.d_head - 1:
            raise ValueError(f"LinearConfig.dpfp_nu must be < 2·d_head = {2 * model.d_head}, got {self.dpfp_nu}")

    def d_k(self, d_head: int) -> int:
        return feature_dim(self.feature_map, d_head, self.dpfp_nu, self.favor_features)

    def to_dict(self):
        out = super().to_dict()
        if not self.conv_size:  # configs written before the option existed read and write the same
            del out["conv_size"]
        return out


class SumRule:
    """The sum rule as a :class:`~workbench.mixers.state.Recurrence` over inputs q (scaled), k, v and, when
    present, a log decay g (``[batch, pos, head]`` or ``[batch, pos, head, d_k]``: the decay-gated sum rule of
    GLA and Mamba-2); with ``normalize`` the state carries the normaliser z_t as a last value column."""

    def __init__(self, normalize: bool = False):
        self.normalize = normalize

    def run(self, inputs: RecurrenceInputs, *, output_delta: bool = False, **kwargs) -> RecurrenceOutput:
        return linear_attention(inputs.q, inputs.k, inputs.v, normalize=self.normalize, eps=EPS,
                                g=inputs.fields.get("g"), **kwargs)

    def read(self, inputs_t, state: torch.Tensor) -> torch.Tensor:  # [..., d_v] (broadcasting)
        o = torch.einsum("...k,...kv->...v", inputs_t["q"].float(), state.float())
        return o[..., :-1] / (o[..., -1:] + EPS) if self.normalize else o

    def effective_attention(self, inputs: RecurrenceInputs) -> Float[torch.Tensor, "batch head pos pos"]:
        """A = tril(Γ ⊙ Q Kᵀ) (Q scaled; Γ = 1 without a decay, channel by channel for a per-channel one),
        divided row-wise by (rowsum + eps) with sum normalisation."""
        q, k = inputs.q.double().transpose(1, 2), inputs.k.double().transpose(1, 2)
        g = inputs.fields.get("g")
        if g is not None:
            a = decayed_products(q, k, cumulative_log_decay(g.transpose(1, 2), dim=2), dtype=torch.float64)
        else:
            a = (q @ k.transpose(-1, -2)).tril()
        if self.normalize:
            a = a / (a.sum(-1, keepdim=True) + EPS)
        return a.float()


@register
class LinearAttention(Mixer):
    Config = LinearConfig
    recurrence = SumRule(False)  # replaced per instance by SumRule(cfg.sum_norm)
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_q", "hook_k", "hook_v")
    supports_step: ClassVar[bool] = True

    def __init__(self, cfg: LinearConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        self.add_qkvo_()
        self.add_short_convs_(cfg.conv_size, {n: self.n_heads * self.d_head for n in ("q", "k", "v")})
        self.feature_map = FeatureMap(cfg.feature_map, self.d_head, self.n_heads, cfg.dpfp_nu, cfg.favor_features,
                                      model.seed)
        self.scale = 1.0 if cfg.sum_norm else self.d_k ** -0.5
        self.recurrence = SumRule(cfg.sum_norm)
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q (after its conv), before the feature map
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K (after its conv), before the feature map
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  φ(q), what the memory is read with
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  φ(k), what the memory is written with
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  W_t (sum_norm: d_v + 1); only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]

    @classmethod
    def label(cls, cfg: LinearConfig) -> str:
        name = {"identity": "linear attention", "elu1": "linear attention (elu+1)",
                "dpfp": f"linear attention (DPFP-{cfg.dpfp_nu})", "favor": "linear attention (FAVOR+)"}[cfg.feature_map]
        return name + (", sum-normalised" if cfg.sum_norm else "") + (
            f", short conv ({cfg.conv_size} taps)" if cfg.conv_size else "")

    @property
    def d_v(self) -> int:
        return self.d_head + int(self.cfg.sum_norm)

    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(q=get("hook_q") * self.scale, k=get("hook_k"), v=get("hook_v")))

    write_hooks: ClassVar[tuple[str, ...]] = ("hook_k", "hook_v")

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """(φ(k_t), v_t): the sum rule adds φ(k_t) v_tᵀ (sum-normalised: v_t with a last entry 1, the normaliser's
        column of the state)."""
        k, v = get("hook_k"), get("hook_v")
        if self.cfg.sum_norm:
            v = torch.cat([v, torch.ones_like(v[..., :1])], dim=-1)
        return k, v

    def linear_sites(self) -> list[LinearSite]:
        hd = self.n_heads * self.d_head
        return [LinearSite("q", "W_Q", self.proj_hook("q", "hook_q_pre"), self.d_model, hd, "head_in_out"),
                LinearSite("k", "W_K", self.proj_hook("k", "hook_k_pre"), self.d_model, hd, "head_in_out"),
                LinearSite("v", "W_V", self.proj_hook("v", "hook_v"), self.d_model, hd, "head_in_out"),
                LinearSite("o", "W_O", None, hd, self.d_model, "head_out", input_hook="hook_z")]

    def qk_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """With the identity feature map and no QK-norm, A_ts = scale · x_t W_Q W_Kᵀ x_sᵀ (s ≤ t; ÷ the row sum with
        sum_norm) exactly: the QK circuit, unnormalised (no softmax)."""
        if self.cfg.conv_size:
            raise NotDefinedForMixer("with a short convolution q and k mix several positions of the residual "
                                     "stream, so q·k is not a bilinear form of one position's x; "
                                     "model.effective_attention(tokens, layer) gives the exact A")
        if self.cfg.feature_map != "identity" or not isinstance(self.q_norm, nn.Identity):
            what = (f"the feature map {self.cfg.feature_map!r} φ" if self.cfg.feature_map != "identity"
                    else "the Outlier Protected block's QK-norm")
            raise NotDefinedForMixer(f"this linear-attention layer has no QK circuit: {what} sits between x W_Q, "
                                     "x W_K and the dot product, so q·k is not a bilinear form of the residual "
                                     "stream; model.effective_attention(tokens, layer) gives the exact A")
        return self.W_Q, self.W_K

    def ov_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """z_t = Σ_s A_ts x_s W_V, with A from q and k only, and out = z W_O + b_O: the OV circuit is exact
        (without a short convolution, which mixes positions into v)."""
        if self.cfg.conv_size:
            raise NotDefinedForMixer("with a short convolution v_s mixes x at several positions, so z is not "
                                     "Σ_s A_ts x_s W_V; read hook_v and W_O instead")
        return self.W_V, self.W_O

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        proj = lambda W: torch.einsum("bpm,hmd->bphd", x, W)  # noqa: E731
        conv = self.short_conv  # DeltaNet's short conv on x W_Q, x W_K, x W_V (identity with conv_size 0)
        q = self.q_norm(self.hook_q_pre(conv("q", proj(self.W_Q))))
        k = self.k_norm(self.hook_k_pre(conv("k", proj(self.W_K))))
        q, k = self.hook_q(self.feature_map(q)), self.hook_k(self.feature_map(k))
        v = self.hook_v(conv("v", proj(self.W_V)))
        inputs = RecurrenceInputs(dict(q=q * self.scale, k=k, v=v))
        res = self.run_recurrence(inputs)
        z, _, _ = expose_and_patch(self, inputs, res)
        z = self.hook_z(z)
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O
