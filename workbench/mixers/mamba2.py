"""Mamba-2 (Dao & Gu 2024, state space duality) as a fast-weight memory: the sum rule with one data-dependent
decay per head, keys B, queries C and values dt·x. Laid out as transformers' ``Mamba2Mixer``
(models/mamba2/modeling_mamba2.py, transformers 5.x, its torch path ``mamba2_chunk_scan``).

    [gate | x̃ B̃ C̃ | dt̃] = x W_in + b_in                       one input projection, split
    x, B, C = SiLU(conv([x̃ B̃ C̃]) + b_conv)                      one depthwise causal conv over x, B and C
    dt_t    = clamp(softplus(dt̃_t + dt_bias), dt_min, dt_max)     [head]
    g_t     = −exp(A_log) · dt_t                                   log decay per head (a_t = exp(dt_t A))
    k_t, q_t, v_t = B_t, C_t, dt_t x_t                             B and C shared by groups of heads (n_groups)
    S_t     = exp(g_t) S_{t-1} + k_t v_tᵀ;   z_t = S_tᵀ q_t        [d_k = state_size, d_v = head_dim]
    y_t     = z_t + D ⊙ x_t                                         the skip, per head
    out     = (GroupRMSNorm(y ⊙ SiLU(gate)) · w_norm) W_O + b_O     the norm over groups of d_inner / n_groups

The memory is the decay-gated sum rule of the linear-attention kernel (kernels/README.md), so the state at any
position, readout and carry patches and the exact effective attention (A_ti = Π_{j=i+1..t} exp(g_j) · C_t·B_i,
with ``hook_z = A · hook_v``) come from :class:`~.linear.SumRule`. transformers keeps the state as
``[head, head_dim, state_size]``; ours is its transpose ``[state_size, head_dim]`` (a key indexes a row).

Hooks: ``hook_z`` is the memory read-out alone; the skip D ⊙ x is ``hook_skip`` (so a state patch changes z and
the skip stays).

Per-head outputs. ``head_outputs(z, x)`` (a run's ``hook_z`` and mixer input, ``[batch, pos, …]``) gives head h
its read-out *and* its skip: ((z_h + D_h x_h) ⊙ SiLU(gate_h)) · r_g · w_norm_h · W_O[h], with r_g the group
norm's 1/RMS of that position and group, computed from the whole y = z + D ⊙ x as the forward does (frozen, as
TransformerLens freezes a LayerNorm scale to split a residual stream). The norm is one scalar per (position,
group), so the split is exact: Σ_h head_outputs + b_O is the mixer output. A head's share does depend on the
other heads of its group through r_g (as any normalised output does). x_h is SiLU(conv(x W_in)) over earlier
positions, so ``head_outputs`` needs the positions of the run in order (a ``[batch, pos, d_model]`` input);
``readout_outputs(r, x)`` maps a read-out vector r (a probe's Wᵀk at one position) through the gate, the group
norm of r alone and W_O, without the skip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Optional

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


@dataclass(frozen=True)
class Mamba2Config(MixerConfig):
    """Mamba-2 options. The model's ``d_head`` is the state size N (the key width); ``d_head_v`` the head width P
    (0: d_head); ``n_groups`` groups of heads sharing B and C (0: one per head); ``conv_size`` taps of the conv
    over x, B, C; ``dt_min``/``dt_max`` clamp the step (transformers' ``time_step_limit``; dt_max 0: none);
    ``output_norm_eps`` the ε of the gated group RMSNorm (0: the model's ``norm_eps``)."""

    kind: ClassVar[str] = "mamba2"
    d_head_v: int = 0
    n_groups: int = 1
    conv_size: int = 4
    dt_min: float = 0.0
    dt_max: float = 0.0
    output_norm_eps: float = 0.0

    def check(self, model, qk_norm: bool = False) -> None:
        check_int_fields(self, ("d_head_v", "n_groups"), minimum=0)
        check_int_fields(self, ("conv_size",), minimum=1)
        if self.n_groups and model.n_heads % self.n_groups:
            raise ValueError(f"Mamba2Config.n_groups = {self.n_groups} must divide n_heads = {model.n_heads}")
        for name in ("dt_min", "dt_max", "output_norm_eps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"Mamba2Config.{name} must be a non-negative number, got {value!r}")
        if self.dt_max and self.dt_max < self.dt_min:
            raise ValueError(f"Mamba2Config.dt_max = {self.dt_max} must be ≥ dt_min = {self.dt_min} (0: no bound)")
        if qk_norm:
            raise ValueError("the mamba2 mixer has no Outlier Protected QK-norm; use block='pre_norm'")


@register
class Mamba2(Mixer):
    Config = Mamba2Config
    recurrence = SumRule()
    input_hooks: ClassVar[tuple[str, ...]] = ("hook_q", "hook_k", "hook_v", "hook_log_decay")
    patch_hooks: ClassVar[dict[str, str]] = {"decay": "hook_log_decay"}  # see Mixer.patch_sites
    skip_default_init: ClassVar[tuple[str, ...]] = ("A_log", "dt_bias", "D")
    supports_step: ClassVar[bool] = True

    def __init__(self, cfg: Mamba2Config, model, qk_norm: bool = False):
        super().__init__(cfg, model, qk_norm)
        h, dm, n, p, g = self.n_heads, self.d_model, self.d_head, self.d_v, self.n_groups
        self.d_inner, self.d_conv = h * p, h * p + 2 * g * n
        self.W_in = nn.Parameter(torch.empty(dm, self.d_inner + self.d_conv + h))  # [gate | x B C | dt]
        self.b_in = nn.Parameter(torch.zeros(self.d_inner + self.d_conv + h))
        self.conv = ShortConv(self.d_conv, cfg.conv_size)
        self.b_conv = nn.Parameter(torch.zeros(self.d_conv))
        self.dt_bias = nn.Parameter(torch.empty(h))
        self.A_log = nn.Parameter(torch.empty(h))
        self.D = nn.Parameter(torch.empty(h))
        self.w_norm = nn.Parameter(torch.ones(self.d_inner))  # the gated group RMSNorm's weight
        self.W_O = nn.Parameter(torch.empty(h, p, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.scale = 1.0  # q = C_t enters unscaled (hook_q is what the memory is read with)
        self.hook_x = HookPoint()  # [batch, pos, head, d_v]  x after the conv and SiLU
        self.hook_dt = HookPoint()  # [batch, pos, head]  step dt_t > 0
        self.hook_log_decay = HookPoint()  # [batch, pos, head]  g_t = dt_t · A ≤ 0
        self.hook_q = HookPoint()  # [batch, pos, head, d_k]  C_t (each head's copy of its group's)
        self.hook_k = HookPoint()  # [batch, pos, head, d_k]  B_t (each head's copy of its group's)
        self.hook_v = HookPoint()  # [batch, pos, head, d_v]  dt_t x_t, the value written
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_k, d_v]  S_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_v]  memory read-out S_tᵀ C_t
        self.hook_skip = HookPoint()  # [batch, pos, head, d_v]  D ⊙ x_t, added to z
        self.hook_o_in = HookPoint()  # [batch, pos, head, d_v]  GroupRMSNorm((z + skip) ⊙ SiLU(gate)): what W_O reads

    @classmethod
    def label(cls, cfg: Mamba2Config) -> str:
        return "Mamba-2"

    @property
    def d_v(self) -> int:
        return self.cfg.d_head_v or self.d_head

    @property
    def n_groups(self) -> int:
        return self.cfg.n_groups or self.n_heads

    @torch.no_grad()
    def init_extra_(self, generator: torch.Generator) -> None:
        """As transformers' ``init_mamba2_weights``: A = 1..H, D = 1, dt ~ logU(1e-3, 1e-1), dt_bias = softplus⁻¹(dt)."""
        h = self.A_log.shape[0]
        self.A_log.copy_(torch.arange(1, h + 1, dtype=torch.float32).log())
        self.D.fill_(1.0)
        dt = (torch.rand(h, generator=generator) * (torch.tensor(0.1).log() - torch.tensor(1e-3).log())
              + torch.tensor(1e-3).log()).exp().clamp(min=1e-4)
        self.dt_bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    # -- the interface --------------------------------------------------------------------------
    def recurrence_inputs(self, get: CacheGetter) -> RecurrenceInputs:
        return RecurrenceInputs(dict(q=get("hook_q"), k=get("hook_k"), v=get("hook_v"), g=get("hook_log_decay")))

    write_hooks: ClassVar[tuple[str, ...]] = ("hook_k", "hook_v")

    def state_write(self, get: CacheGetter) -> tuple[torch.Tensor, torch.Tensor]:
        """(B_t, dt_t x_t): the SSM adds B_t (dt_t x_t)ᵀ after the scalar decay exp(dt_t A)."""
        return get("hook_k"), get("hook_v")

    def _gate(self, x: torch.Tensor) -> torch.Tensor:  # [..., head, d_v]
        gate = x @ self.W_in[:, : self.d_inner] + self.b_in[: self.d_inner]
        return gate.unflatten(-1, (self.n_heads, self.d_v))

    def output_norm(self, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:  # [..., head, d_v]
        """RMSNorm over groups of d_inner / n_groups channels of y ⊙ SiLU(gate), times w_norm."""
        eps = self.cfg.output_norm_eps or self.model_cfg.norm_eps
        y = (y * F.silu(gate)).flatten(-2)
        grouped = y.unflatten(-1, (self.n_groups, -1))
        y = rms_normalize(grouped, eps).flatten(-2) * self.w_norm
        return y.unflatten(-1, (self.n_heads, self.d_v))

    def head_outputs(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Read-out plus skip of each head, through the gated group norm of the run's whole y = z + D ⊙ x, and W_O
        (module docstring): z ``[batch, pos, head, d_v]``, x ``[batch, pos, d_model]`` → ``[batch, pos, head,
        d_model]``; Σ_head + b_O is the mixer output."""
        if x.dim() != 3 or z.dim() != 4 or z.shape[:2] != x.shape[:2]:
            raise ValueError(f"Mamba-2's head_outputs needs a run: z [batch, pos, head, d_v] and x [batch, pos, d_model] "
                             f"(the skip D ⊙ x reads earlier positions through the conv); got z {tuple(z.shape)}, x "
                             f"{tuple(x.shape)}. For a read-out vector at one position use readout_outputs")
        proj = x @ self.W_in + self.b_in
        gate, xbc, _ = proj.split([self.d_inner, self.d_conv, self.n_heads], dim=-1)
        xs = F.silu(self.conv(xbc) + self.b_conv)[..., : self.d_inner].unflatten(-1, (self.n_heads, self.d_v))
        y = z + self.D[:, None] * xs
        return super().head_outputs(self.output_norm(y, gate.unflatten(-1, (self.n_heads, self.d_v))), x)

    def readout_outputs(self, r: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """A read-out vector r ``[..., head, d_v]`` alone through the gate (from x ``[..., d_model]``), the group norm
        of r and W_O: no skip (it needs the conv over earlier positions)."""
        return super().head_outputs(self.output_norm(r, self._gate(x)), x)

    def linear_sites(self) -> list[LinearSite]:
        """W_O (its input, hook_o_in, is per head); the fused input projection has no hook of its own output."""
        return [LinearSite("o", "W_O", None, self.d_inner, self.d_model, "head_out", input_hook="hook_o_in")]

    # -- forward --------------------------------------------------------------------------------
    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        b, t, _ = x.shape
        h, n, p, groups = self.n_heads, self.d_head, self.d_v, self.n_groups
        proj = x @ self.W_in + self.b_in
        gate, xbc, dt = proj.split([self.d_inner, self.d_conv, h], dim=-1)
        xbc = F.silu(self.causal_conv(self.conv, xbc) + self.b_conv)
        xs, B, C = xbc.split([self.d_inner, groups * n, groups * n], dim=-1)
        xs = self.hook_x(xs.view(b, t, h, p))
        dt = F.softplus(dt + self.dt_bias)
        dt = self.hook_dt(dt.clamp(self.cfg.dt_min, self.cfg.dt_max or None))
        g = self.hook_log_decay(-self.A_log.exp() * dt)
        group = h // groups
        k = self.hook_k(B.view(b, t, groups, n).repeat_interleave(group, dim=2))
        q = self.hook_q(C.view(b, t, groups, n).repeat_interleave(group, dim=2))
        v = self.hook_v(xs * dt[..., None])
        inputs = RecurrenceInputs(dict(q=q, k=k, v=v, g=g))
        res = self.run_recurrence(inputs)
        z, _, _ = expose_and_patch(self, inputs, res)
        y = self.hook_z(z) + self.hook_skip(self.D[:, None] * xs)
        o = self.hook_o_in(self.output_norm(y, gate.view(b, t, h, p)))
        return torch.einsum("bphd,hdm->bpm", o, self.W_O) + self.b_O
