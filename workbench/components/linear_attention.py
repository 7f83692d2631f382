"""Linear attention with the feature maps of Schlag et al. 2021: the sum-rule fast weight programmer."""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..config import ModelConfig
from ..kernels import linear_attention
from .fast_weight_state import expose_and_patch
from .feature_maps import FeatureMap
from .norms import QKRMSNorm


class LinearAttention(nn.Module):
    """S_t = S_{t-1} + φ(k_t) v_tᵀ;  z_t = S_tᵀ (scale·φ(q_t))  (÷ Σ_{j≤t} φ(k_j)ᵀφ(q_t) with sum_norm).

    ``scale`` is 1 with ``sum_norm`` (it cancels) and d_key^-½ without. In the Outlier Protected block
    the projected q and k are RMS-normalised per head with a learnable gain each (QK-norm) after
    ``hook_q_pre``/``hook_k_pre`` and before the feature map (the sum rule has no stability condition on
    ‖k‖, so both sides carry a gain, as in softmax attention).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        h, dm, dh = cfg.n_heads, cfg.d_model, cfg.d_head
        self.cfg = cfg
        self.W_Q = nn.Parameter(torch.empty(h, dm, dh))
        self.W_K = nn.Parameter(torch.empty(h, dm, dh))
        self.W_V = nn.Parameter(torch.empty(h, dm, dh))
        self.W_O = nn.Parameter(torch.empty(h, dh, dm))
        self.b_O = nn.Parameter(torch.zeros(dm))
        self.feature_map = FeatureMap(cfg.feature_map, dh, h, cfg.dpfp_nu, cfg.favor_features, cfg.seed)
        self.scale = 1.0 if cfg.sum_norm else cfg.d_key ** -0.5
        if cfg.block == "outlier_protected":
            self.q_norm, self.k_norm = QKRMSNorm(dh, cfg.norm_eps), QKRMSNorm(dh, cfg.norm_eps)
        self.hook_q_pre = HookPoint()  # [batch, pos, head, d_head]  x W_Q, before the feature map
        self.hook_k_pre = HookPoint()  # [batch, pos, head, d_head]  x W_K, before the feature map
        self.hook_q = HookPoint()  # [batch, pos, head, d_key]  φ(q), what the memory is read with
        self.hook_k = HookPoint()  # [batch, pos, head, d_key]  φ(k), what the memory is written with
        self.hook_v = HookPoint()  # [batch, pos, head, d_head]
        self.hook_state = HookPoint()  # [batch, n_positions, head, d_key, d_head(+1)]  W_t; only inside expose_states
        self.hook_z = HookPoint()  # [batch, pos, head, d_head]
        self.state_request = None  # set only inside HookedFastWeightLM.expose_states

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        q = self.hook_q_pre(torch.einsum("bpm,hmd->bphd", x, self.W_Q))
        k = self.hook_k_pre(torch.einsum("bpm,hmd->bphd", x, self.W_K))
        if hasattr(self, "q_norm"):  # Outlier Protected QK-norm, before the feature map
            q, k = self.q_norm(q), self.k_norm(k)
        q, k = self.hook_q(self.feature_map(q)), self.hook_k(self.feature_map(k))
        v = self.hook_v(torch.einsum("bpm,hmd->bphd", x, self.W_V))
        q = q * self.scale
        res = linear_attention(q, k, v, normalize=self.cfg.sum_norm, chunk_size=self.cfg.chunk_size,
                               backend=self.cfg.backend)
        z, _, _ = expose_and_patch(self, "sum", q, k, v, None, None, self.cfg.sum_norm, res)
        z = self.hook_z(z)
        return torch.einsum("bphd,hdm->bpm", z, self.W_O) + self.b_O
