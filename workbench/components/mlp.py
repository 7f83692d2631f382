"""MLPs: GELU, SwiGLU or squared ReLU, with hooks on the hidden pre- and post-activation.

    gelu    post = gelu(x W_in + b_in)
    swiglu  post = silu(x W_gate) ⊙ (x W_in + b_in)
    relu2   post = relu(x W_in + b_in)²        (no gate; Nemotron-H's ``relu2``, transformers' ReLUSquaredActivation)
    out = post W_out + b_out
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from transformer_lens.hook_points import HookPoint

from .affine import affine


def activation(kind: str, pre: torch.Tensor) -> torch.Tensor:
    """The non-gated activations: ``"gelu"`` (exact, erf) or ``"relu2"`` (relu(x)²)."""
    if kind == "relu2":
        return torch.square(F.relu(pre))
    if kind == "gelu":
        return F.gelu(pre)
    raise ValueError(f"unknown MLP activation {kind!r}; known: 'gelu', 'relu2' (and the gated 'swiglu')")


class MLP(nn.Module):
    def __init__(self, d_model: int, d_mlp: int, kind: str = "gelu"):
        super().__init__()
        if kind not in ("gelu", "swiglu", "relu2"):
            raise ValueError(f"MLP kind must be 'gelu', 'swiglu' or 'relu2', got {kind!r}")
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
            lin = self.hook_pre_linear(affine(x, self.W_in, self.b_in))
            post = self.hook_post(F.silu(pre) * lin)
        else:
            pre = self.hook_pre(affine(x, self.W_in, self.b_in))
            post = self.hook_post(activation(self.kind, pre))
        return affine(post, self.W_out, self.b_out)
