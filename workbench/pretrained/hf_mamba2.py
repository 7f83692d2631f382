"""transformers ``Mamba2ForCausalLM`` (``model_type: mamba2``) → our ``mamba2`` mixer (:mod:`..mixers.mamba2`).

Read from transformers 5.x ``models/mamba2/modeling_mamba2.py`` and ``configuration_mamba2.py``: the block is
``x + mixer(RMSNorm(x))`` with no MLP (our pre-norm block with ``mlp="none"``), RMSNorm ``layer_norm_epsilon``,
a final ``norm_f`` and ``lm_head``. The mixer: ``in_proj`` → [gate (d_inner) | x B C (d_inner + 2·n_groups·
state_size) | dt (num_heads)], a depthwise causal ``conv1d`` (optional bias) over x, B, C then ``hidden_act``
(SiLU), dt = softplus(dt + dt_bias) clamped to ``time_step_limit``, A = −exp(A_log), the SSD scan with D skip,
the gated group RMSNorm (``norm``: y ⊙ SiLU(gate), RMS over groups of d_inner / n_groups, ε =
layer_norm_epsilon), ``out_proj``. transformers' cached state ``[head, head_dim, state_size]`` is our
``fast_weights`` transposed.
"""

from __future__ import annotations

import math

import torch

from ..config import ModelConfig
from ..mixers.mamba2 import Mamba2Config
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors


@register_converter("mamba2")
def convert(cfg: SourceConfig, src: Tensors):
    cfg.ignore(
        "chunk_size",  # the chunk length of transformers' scan: the same maths
        "time_step_rank", "time_step_min", "time_step_max", "time_step_floor", "rescale_prenorm_residual",  # init only
        "residual_in_fp32",  # the residual stream's dtype: ours is the model's dtype (identical in fp32)
        "layer_types",  # every layer is a Mamba-2 mixer
    )
    cfg.get("hidden_act", "silu", allowed=["silu"])
    dm, heads, p = cfg.get("hidden_size"), cfg.get("num_heads"), cfg.get("head_dim")
    n, groups, expand = cfg.get("state_size"), cfg.get("n_groups", 8), cfg.get("expand", 2)
    if heads * p != dm * expand:
        raise ValueError(f"{cfg.where}: num_heads · head_dim = {heads * p} must equal hidden_size · expand = {dm * expand}")
    if heads % groups:
        raise ValueError(f"{cfg.where}: n_groups = {groups} must divide num_heads = {heads}")
    limit = cfg.get("time_step_limit", [0.0, math.inf])
    if not isinstance(limit, (list, tuple)) or len(limit) != 2:
        raise ValueError(f"{cfg.where}: time_step_limit must be [min, max], got {limit!r}")
    lo, hi = (_number(cfg, v) for v in limit)
    if not (0 <= lo <= hi):
        raise ValueError(f"{cfg.where}: time_step_limit = {[lo, hi]!r} must be 0 ≤ min ≤ max")
    use_bias = cfg.get("use_bias", False, allowed=[True, False])
    conv_bias = cfg.get("use_conv_bias", True, allowed=[True, False])
    mixer = Mamba2Config(d_head_v=0 if p == n else p, n_groups=groups, conv_size=cfg.get("conv_kernel", 4),
                         dt_min=float(lo), dt_max=0.0 if hi == math.inf else float(hi))
    n_layers, vocab = cfg.get("num_hidden_layers"), cfg.get("vocab_size")
    mc = ModelConfig(d_vocab=vocab, d_model=dm, n_layers=n_layers, n_heads=heads, d_head=n,
                     n_ctx=cfg.data.get("max_position_embeddings") or 2048, norm="rmsnorm", mlp="none",
                     positional="none", norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)), mixer=mixer)
    # transformers' Mamba2Model.load_hook reads an older "backbone.embedding.weight" as "backbone.embeddings.weight"
    emb = "backbone.embeddings.weight" if "backbone.embeddings.weight" in src else "backbone.embedding.weight"
    w_e = src.take(emb, (vocab, dm))
    tensors = {"embed.W_E": w_e, "unembed.b_U": torch.zeros(vocab), "ln_final.w": src.take("backbone.norm_f.weight", (dm,))}
    if cfg.get("tie_word_embeddings", False, allowed=[True, False]):
        src.drop("lm_head.weight")
        tensors["unembed.W_U"] = w_e.T.clone()
    else:
        tensors["unembed.W_U"] = src.take("lm_head.weight", (vocab, dm)).T
    for i in range(n_layers):
        s, q = f"backbone.layers.{i}.", f"blocks.{i}."
        tensors[q + "ln1.w"] = src.take(s + "norm.weight", (dm,))
        tensors.update(mamba_tensors(src, s + "mixer.", q + "attn.", dm, heads, p, n, groups, mixer.conv_size,
                                     use_bias=use_bias, conv_bias=conv_bias))
    return mc, tensors


def mamba_tensors(src: Tensors, s: str, q: str, dm: int, heads: int, p: int, n: int, groups: int, conv: int, *,
                  use_bias: bool, conv_bias: bool) -> dict[str, torch.Tensor]:
    """One ``Mamba2Mixer`` of transformers (also Nemotron-H's, which has its names and layout) at source prefix ``s``
    as our mamba2 mixer's tensors at prefix ``q``."""
    d_inner, d_conv = heads * p, heads * p + 2 * groups * n
    proj = d_inner + d_conv + heads
    return {
        q + "W_in": src.take(s + "in_proj.weight", (proj, dm)).T,
        q + "b_in": src.take(s + "in_proj.bias", (proj,)) if use_bias else torch.zeros(proj),
        q + "conv.weight": src.take(s + "conv1d.weight", (d_conv, 1, conv)),
        q + "b_conv": src.take(s + "conv1d.bias", (d_conv,)) if conv_bias else torch.zeros(d_conv),
        q + "dt_bias": src.take(s + "dt_bias", (heads,)),
        q + "A_log": src.take(s + "A_log", (heads,)),
        q + "D": src.take(s + "D", (heads,)),
        q + "w_norm": src.take(s + "norm.weight", (d_inner,)),
        q + "W_O": src.take(s + "out_proj.weight", (dm, d_inner)).T.reshape(heads, p, dm),
        q + "b_O": src.take(s + "out_proj.bias", (dm,)) if use_bias else torch.zeros(dm),
    }


def _number(cfg: SourceConfig, value) -> float:
    """A float of config.json; transformers writes infinity as ``{"__float__": "Infinity"}``."""
    if isinstance(value, dict) and set(value) == {"__float__"}:
        value = value["__float__"]
    try:
        return float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{cfg.where}: time_step_limit holds {value!r}, not a number") from None
