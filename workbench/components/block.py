"""A transformer block: two residual lines, each hooked like TransformerLens.

Pre-norm (default):      x = x + attn(ln1(x));      x = x + mlp(ln2(x))
Outlier Protected:       x = x + β·attn(x);         x = x + β·mlp(x)      (β = cfg.branch_scale; He et al.
                         2024: no norm inside the block, the model normalises the first block's input)
hook_attn_out / hook_mlp_out hold what is added to the residual stream (after β).
"""

from __future__ import annotations

import torch
from torch import nn
from transformer_lens.hook_points import HookPoint

from ..config import ModelConfig
from .delta_net import DeltaNet
from .gated_delta_net import GatedDeltaNet
from .linear_attention import LinearAttention
from .mlp import MLP
from .norms import make_norm
from .softmax_attention import SoftmaxAttention

MIXERS: dict[str, type[nn.Module]] = {
    "softmax": SoftmaxAttention,
    "linear": LinearAttention,
    "delta": DeltaNet,
    "gated_delta": GatedDeltaNet,
}


class TransformerBlock(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        pre_norm = cfg.block == "pre_norm"
        self.branch_scale = 1.0 if pre_norm else cfg.branch_scale
        self.ln1 = make_norm(cfg.norm if pre_norm else "none", cfg.d_model, cfg.norm_eps)
        self.attn = MIXERS[cfg.mixer](cfg)
        self.has_mlp = cfg.mlp != "none"
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        if self.has_mlp:
            self.ln2 = make_norm(cfg.norm if pre_norm else "none", cfg.d_model, cfg.norm_eps)
            self.mlp = MLP(cfg.d_model, cfg.d_mlp, cfg.mlp)
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        x = self.hook_resid_pre(x)
        x = x + self.hook_attn_out(self.branch_scale * self.attn(self.ln1(x)))
        if self.has_mlp:
            x = self.hook_resid_mid(x)
            x = x + self.hook_mlp_out(self.branch_scale * self.mlp(self.ln2(x)))
        return self.hook_resid_post(x)
