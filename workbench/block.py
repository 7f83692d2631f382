"""A transformer block: two residual lines, each hooked like TransformerLens.

Pre-norm (default):      x = x + attn(ln1(x));      x = x + mlp(ln2(x))
Post-norm layers:        x = x + ln_attn_out(attn(x));   x = x + ln_mlp_out(mlp(x))    (cfg.post_norm_layers;
                         OLMo 2's block: the norms on the branch outputs, no ln1 / ln2)
Outlier Protected:       x = x + β·attn(x);         x = x + β·mlp(x)      (β = cfg.branch_scale; He et al.
                         2024: no norm inside the block, the model normalises the first block's input,
                         and the mixer gets its QK-norm)
hook_attn_out / hook_mlp_out hold what is added to the residual stream (after β).
A block may hold one branch only (``cfg.block_kinds``: Nemotron-H's layers): a mixer-only block has ln1, attn,
hook_attn_out; an MLP-only block ln2, mlp, hook_mlp_out; neither has hook_resid_mid (it would be resid_pre or
resid_post). ``has_mixer`` / ``has_mlp`` say which; code that walks layers asks them.
The mixer is whatever the layer's mixer config names (:mod:`workbench.mixers`).
"""

from __future__ import annotations

import torch
from jaxtyping import Float
from torch import nn
from transformer_lens.hook_points import HookPoint

from .components.mlp import MLP
from .components.moe import MoE
from .components.norms import make_norm
from .mixers import mixer_class


class TransformerBlock(nn.Module):
    def __init__(self, cfg, layer: int):
        super().__init__()
        pre_norm = cfg.block == "pre_norm"
        post = layer in cfg.post_norm_layers
        self.branch_scale = 1.0 if pre_norm else cfg.branch_scale
        self.has_mixer, self.has_mlp = cfg.has_mixer(layer), cfg.has_mlp(layer)
        self.hook_resid_pre = HookPoint()  # [batch, pos, d_model]
        if self.has_mixer:
            self.ln1 = make_norm(cfg.norm if pre_norm and not post else "none", cfg.d_model, cfg.norm_eps)
            self.ln_attn_out = make_norm(cfg.norm if post else "none", cfg.d_model, cfg.norm_eps)
            mixer_cfg = cfg.layer_mixers[layer]
            self.attn = mixer_class(mixer_cfg.kind)(mixer_cfg, cfg, qk_norm=cfg.qk_norm)
            self.hook_attn_out = HookPoint()  # [batch, pos, d_model]
        if self.has_mixer and self.has_mlp:
            self.hook_resid_mid = HookPoint()  # [batch, pos, d_model]
        if self.has_mlp:
            self.ln2 = make_norm(cfg.norm if pre_norm and not post else "none", cfg.d_model, cfg.norm_eps)
            self.ln_mlp_out = make_norm(cfg.norm if post else "none", cfg.d_model, cfg.norm_eps)
            moe = cfg.moe_at(layer)
            self.mlp = MLP(cfg.d_model, cfg.d_mlp, cfg.mlp) if moe is None else MoE(moe, cfg.d_model, cfg.mlp)
            self.hook_mlp_out = HookPoint()  # [batch, pos, d_model]
        self.hook_resid_post = HookPoint()  # [batch, pos, d_model]

    def forward(self, x: Float[torch.Tensor, "batch pos d_model"]) -> Float[torch.Tensor, "batch pos d_model"]:
        x = self.hook_resid_pre(x)
        if self.has_mixer:
            x = x + self.hook_attn_out(self.branch_scale * self.ln_attn_out(self.attn(self.ln1(x))))
        if self.has_mixer and self.has_mlp:
            x = self.hook_resid_mid(x)
        if self.has_mlp:
            x = x + self.hook_mlp_out(self.branch_scale * self.ln_mlp_out(self.mlp(self.ln2(x))))
        return self.hook_resid_post(x)
