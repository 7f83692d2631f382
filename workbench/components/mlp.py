"""MLPs: GELU or SwiGLU, with hooks on the hidden pre- and post-activation."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, kind: str = "gelu"):
        super().__init__()
        self.kind = kind
        self.W_in = nn.Parameter(torch.empty(d_model, d_mlp))
        self.b_in = nn.Parameter(torch.zeros(d_mlp))
        if kind == "swiglu":
            self.W_gate = nn.Parameter(torch.empty(d_model, d_mlp))
            self.hook_pre_linear = HookPoint()  # [batch, pos, d_mlp]  the linear half of SwiGLU
        self.W_out = nn.Parameter(torch.empty(d_mlp, d_model))
        self.b_out = nn.Parameter(torch.zeros(d_model))
        self.hook_pre = HookPoint()  # [batch, pos, d_mlp]  before the nonlinearity (SwiGLU: the gate)
        self.hook_post = HookPoint()  # [batch, pos, d_mlp]  after it

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [batch, pos, d_model]
        if self.kind == "swiglu":
            pre = self.hook_pre(x @ self.W_gate)
            lin = self.hook_pre_linear(x @ self.W_in + self.b_in)
            post = self.hook_post(F.silu(pre) * lin)
        else:
            pre = self.hook_pre(x @ self.W_in + self.b_in)
            post = self.hook_post(F.gelu(pre))
        return post @ self.W_out + self.b_out
