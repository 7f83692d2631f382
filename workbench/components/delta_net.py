"""DeltaNet (Schlag et al. 2021; Yang et al. 2024), laid out as in flash-linear-attention.

    q, k, v = act(conv(x W_Q)), act(conv(x W_K)), act(conv(x W_V))     act = SiLU, conv optional
    q, k    = qk_norm(q), qk_norm(k)                                     L2 (default), sum or none
    (Outlier Protected block: q = w_q ⊙ q/‖q‖, k = k/‖k‖ — QK-norm with a learned gain on q only)
    β       = sigmoid(x W_β + b_β)        (×2 with allow_neg_eigval)
    u_t     = β_t (v_t − S_{t-1}ᵀ k_t);   S_t = S_{t-1} + k_t u_tᵀ;   z_t = S_tᵀ (q_t / √d_head)
    out     = RMSNorm_head(z) W_O + b_O

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

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..config import ModelConfig
from ..kernels import delta_rule
from .fast_weight_state import expose_and_patch
from .norms import QKL2Gain
from .short_conv import ShortConv


def readout_from_writes(
    q: torch.Tensor,  # [batch, pos, head, d_k]  (already scaled)
    k: torch.Tensor,  # [batch, pos, head, d_k]
    u: torch.Tensor,  # [batch, pos, head, d_v]  values written at each position
    g: Optional[torch.Tensor] = None,  # [batch, pos, head]  log decay
) -> torch.Tensor:  # [batch, pos, head, d_v]
    """o_t = Σ_{i≤t} exp(Σ_{j=i+1..t} g_j) (q_t·k_i) u_i: the sum-rule read-out of given writes."""
    t = q.shape[1]
    scores = torch.einsum("bqhd,bkhd->bhqk", q.float(), k.float())
    causal = torch.ones(t, t, dtype=torch.bool, device=q.device).tril()
    if g is not None:
        cum = g.float().cumsum(1).transpose(1, 2)  # [batch, head, pos]
        scores = scores * (cum[..., :, None] - cum[..., None, :]).masked_fill(~causal, float("-inf")).exp()
    scores = scores.masked_fill(~causal, 0.0)
    return torch.einsum("bhqk,bkhd->bqhd", scores, u.float()).to(u.dtype)


class DeltaNet(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, dm, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.empty(h, dm, dh))
        self.W_K = nn.Parameter(torch.empty(h, dm, dh))
        self.W_V = nn.Parameter(torch.empty(h, dm, dh))
        self.W_beta = nn.Parameter(torch.empty(dm, h))
        self.b_beta = nn.Parameter(torch.zeros(h))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.w_norm = nn.Parameter(torch.ones(dh))  # per-head output RMSNorm weight (shared by heads)
        if cfg.conv_size > 0:
            self.conv_q = ShortConv(h * dh, cfg.conv_size)
            self.conv_k = ShortConv(h * dh, cfg.conv_size)
            self.conv_v = ShortConv(h * dh, cfg.conv_size)
        self.scale = dh ** -0.5
        if cfg.block == "outlier_protected":  # QK-norm: q = w_q ⊙ q/‖q‖, k = k/‖k‖ (see the module docstring)
            self.q_norm = QKL2Gain(dh)
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q, before conv and SiLU
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K, before conv and SiLU
        self.hook_v_pre = HookPoint()  # [batch, pos, head, d_head]  x W_V, before conv and SiLU
        self.hook_beta_pre = HookPoint()  # [batch, pos, head]  x W_β + b_β, before the sigmoid
        self.hook_q = HookPoint()  # [batch, pos, head, d_head]  after conv, SiLU, qk_norm (and gain); read with scale·q
        self.hook_k = HookPoint()  # [batch, pos, head, d_head]  after conv, SiLU and qk_norm
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]  after conv and SiLU
        self.hook_beta = HookPoint()  # [batch, pos, head]  write strength β_t
        self.hook_delta = HookPoint()  # [batch, pos, head, d_head]  delta error u_t = β_t(v_t − S_{t-1}ᵀk_t)
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_head, d_head]  W_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]  memory read-out S_tᵀ(scale·q_t)
        self.hook_o_in = HookPoint()  # [batch, pos, head, d_head]  RMSNorm_head(z) (⊙ gate): what W_O reads
        self.state_request = None  # set only inside HookedFastWeightLM.expose_states

    # -- pieces a subclass (gated) extends ------------------------------------------------------
    def log_decay(self, x: torch.Tensor) -> Optional[torch.Tensor]:  # [batch, pos, head] or None
        return None

    def output_norm(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, head, d_head]
        return z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + self.cfg.norm_eps) * self.w_norm

    # -- forward --------------------------------------------------------------------------------
    def _project(self, x: torch.Tensor, W: torch.Tensor, conv: Optional[nn.Module], hook: HookPoint) -> torch.Tensor:
        b, p, _ = x.shape
        y = x @ W.permute(1, 0, 2).reshape(x.shape[-1], -1)  # [batch, pos, head·d_head]
        y = hook(y.view(b, p, self.cfg.n_heads, self.cfg.d_head)).reshape(b, p, -1)
        if conv is not None:
            y = conv(y)
        return F.silu(y).view(b, p, self.cfg.n_heads, self.cfg.d_head)

    def _qk_norm(self, x: torch.Tensor, query: bool = False) -> torch.Tensor:
        if query and hasattr(self, "q_norm"):
            return self.q_norm(x)
        if self.cfg.qk_norm == "l2":
            return F.normalize(x, dim=-1, eps=1e-6)
        if self.cfg.qk_norm == "sum":
            return x / (x.sum(-1, keepdim=True) + 1e-6)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        has_conv = self.cfg.conv_size > 0
        q = self.hook_q(self._qk_norm(self._project(x, self.W_Q, self.conv_q if has_conv else None, self.hook_q_pre),
                                      query=True))
        k = self.hook_k(self._qk_norm(self._project(x, self.W_K, self.conv_k if has_conv else None, self.hook_k_pre)))
        v = self.hook_v(self._project(x, self.W_V, self.conv_v if has_conv else None, self.hook_v_pre))
        beta = torch.sigmoid(self.hook_beta_pre(x @ self.W_beta + self.b_beta))
        if self.cfg.allow_neg_eigval:
            beta = 2 * beta
        beta = self.hook_beta(beta)
        g = self.log_decay(x)
        q = q * self.scale
        res = delta_rule(q, k, v, beta, g=g, chunk_size=self.cfg.chunk_size, backend=self.cfg.backend,
                         output_delta=True)
        z, delta, state_patched = expose_and_patch(self, "delta", q, k, v, beta, g, False, res)
        version = delta._version
        patched = self.hook_delta(delta)
        if patched is not delta or patched._version != version:  # a hook replaced or edited the writes
            if state_patched:
                raise ValueError("patch hook_state or hook_delta in one run, not both")
            z = readout_from_writes(q, k, patched, g)
        z = self.hook_z(z)
        return torch.einsum("bphd,hdm->bpm", self.hook_o_in(self.output_norm(z, x)), self.W_O) + self.b_O
