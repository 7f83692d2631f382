"""DeltaNet (Schlag et al. 2021; Yang et al. 2024), laid out as in flash-linear-attention.

    q, k    = act(conv(x W_Q)), act(conv(x W_K))    act = qk_activation (SiLU default), conv optional
    v       = SiLU(conv(x W_V))
    q, k    = qk_norm(q), qk_norm(k)                                     L2 (default), L1, sum or none
    (Outlier Protected block: q = w_q ⊙ q/‖q‖, k = k/‖k‖ — QK-norm with a learned gain on q only)
    β       = sigmoid(x W_β + b_β)        (×2 with allow_neg_eigval; 1 without use_beta)
    u_t     = β_t (v_t − S_{t-1}ᵀ k_t);   S_t = S_{t-1} + k_t u_tᵀ;   z_t = S_tᵀ (q_t / √d_head)
    out     = (RMSNorm_head(z) ⊙ gate(x W_G)) W_O + b_O                  (the gate only with output_gate)

Widths: q and k have ``d_head`` channels per head, v and the read-out ``d_head_v`` (0: d_head), as fla's
``expand_k``/``expand_v``. Grouped value heads (fla's ``num_v_heads > num_heads``): with ``n_qk_heads``
< n_heads, W_Q and W_K have ``n_qk_heads`` heads and value head i reads and writes with q/k head
i // (n_heads / n_qk_heads); ``hook_q_pre``/``hook_k_pre`` show the ``n_qk_heads`` projections, ``hook_q``/
``hook_k`` each value head's copy (so every analysis sees one q, k, v, β and state per head: ``n_heads``).

With a feature map φ (``phi``: elu+1, DPFP-ν or FAVOR+; Schlag, Irie & Schmidhuber 2021, Sec. 4.2 and
their code, IDSIA/lmtool-fwp ``src/utils/cuda_fast_weight_layer.py``) the SiLU is replaced:
q, k = φ(conv(x W_Q)), φ(conv(x W_K)) of width d_k (``workbench.components.feature_maps``), v = conv(x W_V)
with no activation, then ``qk_norm`` — "sum" divides φ(q) and φ(k) by the sum of their components, the
paper's normalisation ("crucial for stable training" there: it keeps β_t‖k_t‖² ≤ 1 for φ ≥ 0), "l2" the
unit-norm keys of DeltaNet. q is scaled by d_k^-½. Without a key normalisation the delta rule diverges
(β_t‖φ(k_t)‖² ≫ 2), so ``qk_norm="none"`` with a feature map is refused.

QK-norm in the Outlier Protected block. The delta rule is stable only while β_t‖k_t‖² ≤ 2 (the
transition I − β_t k_t k_tᵀ has eigenvalue 1 − β_t‖k_t‖² along k_t, and β_t ∈ (0, 1), or (0, 2) with
``allow_neg_eigval``), so a gain on the keys — as the softmax QK-norm has — would let ‖k_t‖ leave 1
and the memory diverge. The keys stay exactly unit-norm; the learned per-channel gain w_q goes on the
query only. It keeps all the freedom a gain can give the read: the memory is read through
q_tᵀ k_i = Σ_c w_q[c] q̂_t[c] k̂_i[c], and for softmax QK-norm too only the product of the two gains
enters the scores. The query's overall scale is irrelevant (the per-head output RMSNorm removes it),
so the gain is on the L2-normalised query and w_q = 1 is the plain L2 query (an Outlier Protected
checkpoint saved before the gain existed loads with w_q = 1 and the same outputs).

Patching ``hook_delta`` (the values written to memory) recomputes the read-out from the patched
writes, holding every other write fixed: z_t = Σ_{i≤t} Γ_ti (scale·q_t·k_i) u_i. Later delta errors
are *not* re-derived from the edited memory (that is what patching k, v or β does).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal, Optional

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..components.feature_maps import FeatureMap, feature_dim
from ..components.norms import Gain, rms_normalize
from ..components.short_conv import ShortConv
from ..dataclass_io import check_int_fields
from ..kernels import RecurrenceOutput, delta_rule
from ..kernels._decay import cumulative_log_decay, decayed_products
from ..kernels._triangular import solve_unit_lower
from .base import CacheGetter, LinearSite, Mixer, MixerConfig, NotDefinedForMixer
from .hook_edits import fire
from .registry import register
from .state import RecurrenceInputs, expose_and_patch

QKNorm = Literal["l2", "l2_rsqrt", "l1", "sum", "none"]
QKActivation = Literal["silu", "relu", "elu1", "identity"]
GateActivation = Literal["silu", "sigmoid"]
Phi = Literal["silu", "elu1", "dpfp", "favor"]
_QK_NORMS = ("l2", "l2_rsqrt", "l1", "sum", "none")
_QK_ACTIVATIONS = ("silu", "relu", "elu1", "identity")
PHIS = ("silu", "elu1", "dpfp", "favor")


@dataclass(frozen=True)
class DeltaConfig(MixerConfig):
    """DeltaNet options: ``qk_norm`` of q and k — "l2" (x / max(‖x‖, 1e-6)), "l2_rsqrt" (x / √(‖x‖² + 1e-6),
    fla's kernels), "l1" (x / max(Σ|x|, 1e-6), fla's ``sum_norm``), "sum" (x / (Σx + 1e-6), Schlag et al.'s
    normalisation of a positive feature map) or "none"; "l2" in the Outlier Protected block;
    ``qk_activation`` of q and k after the conv ("silu", "relu", "elu1" = elu + 1, "identity"); short causal
    conv of ``conv_size`` taps (0: none); β ∈ (0, 2) with ``allow_neg_eigval``, β = 1 without ``use_beta``;
    ``output_gate`` (``gate_activation`` of x W_G times the normed read-out); ``d_head_v`` value width per
    head (0: d_head); ``n_qk_heads`` query/key heads shared by groups of value heads (0: n_heads);
    ``output_norm_eps`` the ε of the per-head output RMSNorm (0: the model's ``norm_eps``);
    ``phi`` a feature map of Schlag et al. 2021 on q and k instead of the activation ("silu": none, DeltaNet;
    "elu1", "dpfp" with ``dpfp_nu``, "favor" with ``favor_features`` fixed random features seeded by the
    model's ``seed``; v then has no activation)."""

    kind: ClassVar[str] = "delta"
    qk_norm: QKNorm = "l2"
    conv_size: int = 4
    allow_neg_eigval: bool = False
    qk_activation: QKActivation = "silu"
    use_beta: bool = True
    output_gate: bool = False
    gate_activation: GateActivation = "silu"
    d_head_v: int = 0
    n_qk_heads: int = 0
    output_norm_eps: float = 0.0
    phi: Phi = "silu"
    dpfp_nu: int = 1
    favor_features: int = 32

    def check(self, model, qk_norm: bool = False) -> None:
        name = type(self).__name__
        if self.qk_norm not in _QK_NORMS:
            raise ValueError(f"{name}.qk_norm must be one of {_QK_NORMS}, got {self.qk_norm!r}")
        if self.qk_activation not in _QK_ACTIVATIONS:
            raise ValueError(f"{name}.qk_activation must be one of {_QK_ACTIVATIONS}, got {self.qk_activation!r}")
        if self.gate_activation not in ("silu", "sigmoid"):
            raise ValueError(f"{name}.gate_activation must be 'silu' or 'sigmoid', got {self.gate_activation!r}")
        check_int_fields(self, ("conv_size", "d_head_v", "n_qk_heads"), minimum=0)
        for flag in ("allow_neg_eigval", "use_beta", "output_gate"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{name}.{flag} must be a bool, got {getattr(self, flag)!r}")
        eps = self.output_norm_eps
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or eps < 0:
            raise ValueError(f"{name}.output_norm_eps must be a non-negative number (0: the model's), got {eps!r}")
        if self.n_qk_heads and model.n_heads % self.n_qk_heads:
            raise ValueError(f"{name}.n_qk_heads = {self.n_qk_heads} must divide n_heads = {model.n_heads} (each "
                             "query/key head serves a group of value heads)")
        if self.phi not in PHIS:
            raise ValueError(f"{name}.phi must be one of {PHIS}, got {self.phi!r}")
        check_int_fields(self, ("dpfp_nu", "favor_features"))
        if self.phi != "silu":
            if self.phi == "dpfp" and self.dpfp_nu > 2 * model.d_head - 1:
                raise ValueError(f"{name}.dpfp_nu must be < 2·d_head = {2 * model.d_head}, got {self.dpfp_nu}")
            if self.qk_norm == "none":
                raise ValueError(f"{name}: phi={self.phi!r} needs qk_norm 'sum' (Schlag et al.) or 'l2'; without a "
                                 "key normalisation the delta rule diverges (β‖φ(k)‖² > 2)")
            if self.qk_activation != "silu":
                raise ValueError(f"{name}: phi={self.phi!r} replaces the activation of q and k; leave qk_activation "
                                 f"at 'silu' (got {self.qk_activation!r})")
            if self.n_qk_heads not in (0, model.n_heads):
                raise ValueError(f"{name}: a feature map phi={self.phi!r} is not combined with grouped value heads "
                                 "(n_qk_heads); use one or the other")
        elif self.qk_norm == "sum" and self.qk_activation in ("silu", "identity"):
            raise ValueError(f"{name}: qk_norm='sum' divides by Σx, which can be 0 for {self.qk_activation!r} "
                             "outputs (they can be negative), so the keys blow up; use 'l2' or 'l1', or a positive "
                             "map (qk_activation 'relu'/'elu1', or a feature map phi)")
        if qk_norm and self.qk_norm != "l2":
            raise ValueError(f"{name}.qk_norm must be 'l2' for the {self.kind} mixer in the Outlier "
                             f"Protected block (its QK-norm keeps the keys unit-norm), got {self.qk_norm!r}")

    def d_k(self, d_head: int) -> int:
        return d_head if self.phi == "silu" else feature_dim(self.phi, d_head, self.dpfp_nu, self.favor_features)


class DeltaRule:
    """The (gated) delta rule as a :class:`~workbench.mixers.state.Recurrence` over inputs q (scaled), k, v,
    beta and g (None: no decay)."""

    def run(self, inputs: RecurrenceInputs, **kwargs) -> RecurrenceOutput:
        return delta_rule(inputs.q, inputs.k, inputs.v, inputs.beta, g=inputs.g, **kwargs)

    def read(self, inputs_t, state: torch.Tensor) -> torch.Tensor:  # [..., d_v] = stateᵀ q (broadcasting)
        return torch.einsum("...k,...kv->...v", inputs_t["q"].float(), state.float())

    def effective_attention(self, inputs: RecurrenceInputs) -> Float[torch.Tensor, "batch head pos pos"]:
        """A = tril(Γ⊙QKᵀ) · (I + tril(diag(β) Γ⊙KKᵀ, −1))⁻¹ · diag(β), in float64 (Γ = 1 without decay; with a
        decay per key channel the products decay channel by channel, Σ_c q_tc k_ic Γ_tic)."""
        q, k = inputs.q.double().transpose(1, 2), inputs.k.double().transpose(1, 2)  # [batch, head, pos, d_k]
        if inputs.g is not None:
            cum = cumulative_log_decay(inputs.g.transpose(1, 2), dim=2)  # [batch, head, pos(, d_k)]
            qk = decayed_products(q, k, cum, dtype=torch.float64)
            kk = decayed_products(k, k, cum, dtype=torch.float64)
        else:
            qk, kk = q @ k.transpose(-1, -2), k @ k.transpose(-1, -2)
        beta = inputs.beta.double().transpose(1, 2)  # [batch, head, pos]
        t_mat = solve_unit_lower(beta[..., :, None] * kk, torch.diag_embed(beta))  # L⁻¹ diag(β)
        return (qk.tril() @ t_mat).float()


def readout_from_writes(
    q: Float[torch.Tensor, "batch pos head d_k"],  # already scaled
    k: Float[torch.Tensor, "batch pos head d_k"],
    u: Float[torch.Tensor, "batch pos head d_v"],  # the values written at each position
    g: Optional[torch.Tensor] = None,  # log decay [batch, pos, head] (or [batch, pos, head, d_k]: per key channel)
) -> Float[torch.Tensor, "batch pos head d_v"]:
    """o_t = Σ_{i≤t} Γ_ti (q_t·k_i) u_i: the sum-rule read-out of given writes."""
    if g is not None:
        cum = cumulative_log_decay(g.transpose(1, 2), dim=2)
        scores = decayed_products(q.float().transpose(1, 2), k.float().transpose(1, 2), cum)
    else:
        scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float()).tril()
    return torch.einsum("bhqk,bkhd->bqhd", scores, u.float()).to(u.dtype)


def phi_label(cfg: DeltaConfig) -> str:
    """The label's suffix for ``cfg.phi``: empty for DeltaNet's SiLU, else e.g. ``" (DPFP-2, sum-normalised)"``."""
    if cfg.phi == "silu":
        return ""
    name = {"elu1": "elu+1", "dpfp": f"DPFP-{cfg.dpfp_nu}", "favor": f"FAVOR+ {cfg.favor_features}"}[cfg.phi]
    return f" ({name}, {'sum' if cfg.qk_norm == 'sum' else 'L2'}-normalised)"


@register
class DeltaNet(Mixer):
    Config = DeltaConfig
    recurrence = DeltaRule()
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_q", "hook_k", "hook_v", "hook_beta")
    patch_hooks: ClassVar[dict[str, str]] = {"write": "hook_delta", "beta": "hook_beta"}  # see Mixer.patch_sites
    supports_step: ClassVar[bool] = True

    def __init__(self, cfg: DeltaConfig, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        h, dm, dh = self.n_heads, self.d_model, self.d_head
        hk, dv = self.n_qk_heads, self.d_v
        self.W_Q = nn.Parameter(torch.empty(hk, dm, dh))
        self.W_K = nn.Parameter(torch.empty(hk, dm, dh))
        self.W_V = nn.Parameter(torch.empty(h, dm, dv))
        if cfg.phi != "silu":
            self.feature_map = FeatureMap(cfg.phi, dh, h, cfg.dpfp_nu, cfg.favor_features, model.seed)
        if cfg.use_beta:
            self.W_beta = nn.Parameter(torch.empty(dm, h))
            self.b_beta = nn.Parameter(torch.zeros(h))
        self.W_O = nn.Parameter(torch.empty(h, dv, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.w_norm = nn.Parameter(torch.ones(dv))  # per-head output RMSNorm weight (shared by heads)
        self.add_decay_()
        if cfg.output_gate:
            self.W_G = nn.Parameter(torch.empty(h, dm, dv))
        if cfg.conv_size > 0:
            self.conv_q = ShortConv(hk * dh, cfg.conv_size)
            self.conv_k = ShortConv(hk * dh, cfg.conv_size)
            self.conv_v = ShortConv(h * dv, cfg.conv_size)
        self.scale = self.d_k ** -0.5
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q, before conv and activation/φ (n_qk_heads)
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K, before conv and activation/φ (n_qk_heads)
        self.hook_v_pre = HookPoint()  # [batch, pos, head, d_v]  x W_V, before conv and SiLU
        self.hook_beta_pre = HookPoint()  # [batch, pos, head]  x W_β + b_β, before the sigmoid (with use_beta)
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  after conv, activation/φ, qk_norm (and gain); per value head
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  after conv, activation/φ and qk_norm; per value head
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]  after conv and SiLU (no SiLU with a feature map φ)
        self.hook_beta = HookPoint()  # [batch, pos, head]  write strength β_t
        self.hook_delta = HookPoint()  # [batch, pos, head, d_v]  delta error u_t = β_t(v_t − S_{t-1}ᵀk_t)
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  W_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  memory read-out S_tᵀ(scale·q_t)
        self.hook_o_in = HookPoint()  # [batch, pos, head, d_v]  RMSNorm_head(z) (⊙ gate): what W_O reads

    def add_decay_(self) -> None:
        """Register the parameters of a decay (none here; Gated DeltaNet adds W_a, A_log, dt_bias), before W_G
        so that the seeded initialisation draws them in the order it always did."""

    @property
    def n_qk_heads(self) -> int:
        return self.cfg.n_qk_heads or self.n_heads

    @property
    def d_v(self) -> int:
        return self.cfg.d_head_v or self.d_head

    def expand_qk(self, x: torch.Tensor) -> torch.Tensor:
        """``[..., qk_head, d]`` → ``[..., head, d]``: value head i uses query/key head i // group."""
        group = self.n_heads // self.n_qk_heads
        return x if group == 1 else x.repeat_interleave(group, dim=-2)

    @classmethod
    def label(cls, cfg: DeltaConfig) -> str:
        return "DeltaNet" + phi_label(cfg)

    def qk_norm_modules(self) -> tuple[nn.Module, nn.Module]:
        """Outlier Protected QK-norm: a learned gain on the L2 query only; keys stay unit-norm (see above)."""
        return Gain(self.d_k), nn.Identity()

    def added_since_saved(self) -> dict[str, float]:
        """The Outlier Protected query gain came later: w_q = 1 is the plain L2 query of older checkpoints."""
        return {"q_norm.w": 1.0} if any(n == "q_norm.w" for n, _ in self.named_parameters()) else {}

    # -- pieces a subclass (gated) extends ------------------------------------------------------
    def log_decay(self, x: torch.Tensor) -> Optional[torch.Tensor]:  # [batch, pos, head] or None
        return None

    def cached_log_decay(self, get: CacheGetter) -> Optional[torch.Tensor]:
        return None

    def output_norm(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_v]
        eps = self.cfg.output_norm_eps or self.model_cfg.norm_eps
        z = rms_normalize(z, eps) * self.w_norm
        if self.cfg.output_gate:
            gate = torch.einsum("...m,hmd->...hd", x, self.W_G)
            z = z * (F.silu(gate) if self.cfg.gate_activation == "silu" else torch.sigmoid(gate))
        return z

    # -- the interface --------------------------------------------------------------------------
    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(q=get("hook_q") * self.scale, k=get("hook_k"), v=get("hook_v"),
                                     beta=get("hook_beta"), g=self.cached_log_decay(get)))

    write_hooks: ClassVar[tuple[str, ...]] = ("hook_k", "hook_delta")

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """(k_t, u_t): the delta rule writes k_t u_tᵀ after any decay, u_t = β_t(v_t − (α_t W_{t-1})ᵀ k_t)."""
        return get("hook_k"), get("hook_delta")

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return super().head_outputs(self.output_norm(z, x), x)

    def qk_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        front = [part for flag, part in ((self.cfg.conv_size, f"a short convolution ({self.cfg.conv_size} taps)"),
                                         (self.cfg.phi != "silu", f"the feature map {self.cfg.phi!r}"),
                                         (self.cfg.phi == "silu" and self.cfg.qk_activation != "identity",
                                          f"the activation {self.cfg.qk_activation!r}"),
                                         (self.cfg.qk_norm != "none", f"the {self.cfg.qk_norm!r} normalisation"))
                 if flag]
        raise NotDefinedForMixer(
            f"the {self.label(self.cfg)} layer has no QK circuit: its mixing is the delta rule's exact effective "
            "attention A = tril(Γ⊙QKᵀ)(I + tril(diag(β) Γ⊙KKᵀ, −1))⁻¹ diag(β), which depends on every earlier key "
            "(the key-removal term), not on q·k alone" + (f"; and {', '.join(front)} sit(s) between x W_Q, x W_K and "
                                                          "q, k" if front else "")
            + "; model.effective_attention(tokens, layer) gives A")

    def ov_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotDefinedForMixer(
            f"the {self.label(self.cfg)} layer has no OV circuit: each head's read-out is RMS-normalised"
            + (" and gated" if self.cfg.output_gate else "") + " before W_O"
            + "".join(f", and its values pass through {part}" for part in [" and ".join(
                p for flag, p in ((self.cfg.conv_size, "a short convolution"), (self.cfg.phi == "silu", "SiLU"))
                if flag)] if part)
            + "; cache.stack_head_results() gives each head's exact output")

    def linear_sites(self) -> list[LinearSite]:
        hk, hv = self.n_qk_heads * self.d_head, self.n_heads * self.d_v
        sites = [LinearSite(kind, f"W_{kind.upper()}", f"hook_{kind}_pre", self.d_model, width, "head_in_out")
                 for kind, width in (("q", hk), ("k", hk), ("v", hv))]
        if self.cfg.use_beta:
            sites.append(LinearSite("beta", "W_beta", "hook_beta_pre", self.d_model, self.n_heads, "in_out"))
        sites.append(LinearSite("o", "W_O", None, hv, self.d_model, "head_out", input_hook="hook_o_in"))
        return sites

    # -- forward --------------------------------------------------------------------------------
    def _project(self, x: torch.Tensor, W: torch.Tensor, conv: Optional[nn.Module], hook: HookPoint,
                 act) -> torch.Tensor:
        """act(conv(x W)) ``[batch, pos, heads, width]`` (act may change the width: a feature map φ)."""
        b, p, _ = x.shape
        heads, width = W.shape[0], W.shape[2]
        y = x @ W.permute(1, 0, 2).reshape(x.shape[-1], -1)  # [batch, pos, heads·width]
        y = hook(y.view(b, p, heads, width)).reshape(b, p, -1)
        if conv is not None:
            y = self.causal_conv(conv, y)
        return act(y.view(b, p, heads, width))

    def _qk_activation(self, x: torch.Tensor) -> torch.Tensor:
        """The map of q and k after the conv: a feature map φ (Schlag et al.), else ``qk_activation``."""
        if self.cfg.phi != "silu":
            return self.feature_map(x)
        kind = self.cfg.qk_activation
        if kind == "silu":
            return F.silu(x)
        if kind == "relu":
            return F.relu(x)
        if kind == "elu1":
            return F.elu(x) + 1
        return x

    def _v_activation(self, x: torch.Tensor) -> torch.Tensor:
        """SiLU, as DeltaNet; none with a feature map φ (Schlag et al.'s values are linear)."""
        return F.silu(x) if self.cfg.phi == "silu" else x

    def _qk_norm(self, x: torch.Tensor) -> torch.Tensor:
        kind = self.cfg.qk_norm
        if kind == "l2":
            return F.normalize(x, dim=-1, eps=1e-6)
        if kind == "l2_rsqrt":  # as fla's l2norm kernel (fla/modules/norm/l2norm.py)
            return x * torch.rsqrt(x.pow(2).sum(-1, keepdim=True) + 1e-6)
        if kind == "l1":  # as fla's sum_norm (fla/layers/delta_net.py)
            return F.normalize(x, p=1, dim=-1, eps=1e-6)
        if kind == "sum":
            return x / (x.sum(-1, keepdim=True) + 1e-6)
        return x

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        has_conv = self.cfg.conv_size > 0
        act = self._qk_activation
        q = self._project(x, self.W_Q, self.conv_q if has_conv else None, self.hook_q_pre, act)
        k = self._project(x, self.W_K, self.conv_k if has_conv else None, self.hook_k_pre, act)
        q = self.hook_q(self.expand_qk(self.q_norm(self._qk_norm(q))))
        k = self.hook_k(self.expand_qk(self.k_norm(self._qk_norm(k))))
        v = self.hook_v(self._project(x, self.W_V, self.conv_v if has_conv else None, self.hook_v_pre,
                                      self._v_activation))
        if self.cfg.use_beta:
            beta = torch.sigmoid(self.hook_beta_pre(x @ self.W_beta + self.b_beta))
        else:
            beta = x.new_ones(*x.shape[:-1], self.n_heads)
        if self.cfg.allow_neg_eigval:
            beta = 2 * beta
        beta = self.hook_beta(beta)
        g = self.log_decay(x)
        q = q * self.scale
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v, beta=beta, g=g))
        res = self.run_recurrence(inputs, output_delta=True)
        z, delta, state_patched = expose_and_patch(self, inputs, res)
        patched, edited = fire(self.hook_delta, delta)
        if edited:  # a hook replaced or edited the writes
            if state_patched:
                raise ValueError("patch hook_state or hook_delta in one run, not both")
            if self.step_cache is not None:
                raise ValueError("a hook_delta patch re-reads the memory from the given writes of the whole sequence, "
                                 "which a step cache does not keep (it carries the unpatched state); patch it on the "
                                 "full sequence (generate with use_past_kv_cache=False)")
            z = readout_from_writes(q, k, patched, g)
        z = self.hook_z(z)
        return torch.einsum("bphd,hdm->bpm", self.hook_o_in(self.output_norm(z, x)), self.W_O) + self.b_O
