"""flash-linear-attention ``GLAForCausalLM`` (``model_type: gla``) → our Gated Linear Attention (:mod:`..mixers.gla`).

Read from fla 0.6.0 ``fla/models/gla/configuration_gla.py``, ``fla/models/gla/modeling_gla.py`` (the block passes
``hidden_act`` as the output gate's activation) and ``fla/layers/gla.py``: q, k, v = x W (SiLU(conv(·)) with
``use_short_conv``), φ = ``feature_map`` on q and k, log decay ``logsigmoid(gk_proj(x)) / 16`` (clamped at
``clamp_min``) per key channel, read-out scale head_k_dim^-½, per-head RMSNorm (weight with
``elementwise_affine``) gated by SiLU(x W_g) (``use_output_gate``), o_proj. Widths: key ``hidden·expand_k /
num_heads``, value ``hidden·expand_v / num_heads``. ``use_gk``/``use_gv`` are stored by the config but not
read by the layer.
"""

from __future__ import annotations

import math

import torch

from ..mixers.gla import GLAConfig
from . import _fla
from .registry import register_converter

_FEATURE_MAPS = {None: "identity", "relu": "relu", "swish": "silu", "silu": "silu", "sigmoid": "sigmoid"}


def _width(cfg, total: float, heads: int, what: str) -> int:
    if not math.isclose(total, round(total)) or round(total) % heads:
        raise ValueError(f"{cfg.where}: the {what} width {total} must be a whole multiple of num_heads = {heads}")
    return round(total) // heads


@register_converter("gla")
def convert(cfg, src):
    common = _fla.read_common(cfg)
    cfg.ignore("use_gk", "use_gv")  # kept by GLAConfig, never read by fla/layers/gla.py
    d_model = common["d_model"]
    heads = cfg.get("num_heads", 4)
    if cfg.get("num_kv_heads", None) not in (None, heads):
        raise ValueError(f"{cfg.where}: num_kv_heads = {cfg.data['num_kv_heads']} (keys and values shared by groups "
                         "of GLA heads) is not supported by workbench; see docs/pretrained.md")
    d_k = _width(cfg, d_model * cfg.get("expand_k", 0.5), heads, "key")
    d_v = _width(cfg, d_model * cfg.get("expand_v", 1.0), heads, "value")
    use_conv = cfg.get("use_short_conv", False, allowed=[True, False])
    if not use_conv:
        cfg.ignore("conv_size")
    clamp_min = cfg.get("clamp_min", None)
    affine = cfg.get("elementwise_affine", True, allowed=[True, False])
    mixer = GLAConfig(
        feature_map=_FEATURE_MAPS[cfg.get("feature_map", None, allowed=list(_FEATURE_MAPS))],
        conv_size=cfg.get("conv_size", 4) if use_conv else 0,
        output_gate=cfg.get("use_output_gate", True, allowed=[True, False]),
        d_head_v=0 if d_v == d_k else d_v,
        clamp_min=None if clamp_min is None else float(clamp_min),
    )
    mc, attention = _fla.model_config(cfg, common, heads, d_k, mixer)
    tensors = _fla.common_tensors(cfg, mc, src)
    for layer in range(mc.n_layers):
        if layer in attention:
            tensors.update(_fla.attention_tensors(mc, src, layer))
        else:
            tensors.update(gla_tensors(mc, src, layer, affine))
    return mc, tensors


def gla_tensors(mc, src, layer: int, affine: bool) -> dict[str, torch.Tensor]:
    """One fla ``GatedLinearAttention`` layer's tensors (``model.layers.{i}.attn.*``) as our mixer's."""
    m = mc.layer_mixers[layer]
    h, dm, dk = mc.n_heads, mc.d_model, mc.d_head
    dv = m.d_head_v or dk
    p, q = f"model.layers.{layer}.attn.", f"blocks.{layer}.attn."
    rank = src.shape(p + "gk_proj.0.weight")[0]  # fla's gate_low_rank_dim (16)
    down = src.take(p + "gk_proj.0.weight", (rank, dm))
    up = src.take(p + "gk_proj.1.weight", (h * dk, rank))
    out = {
        q + "W_Q": _fla._heads_in(src.take(p + "q_proj.weight", (h * dk, dm)), h, dk),
        q + "W_K": _fla._heads_in(src.take(p + "k_proj.weight", (h * dk, dm)), h, dk),
        q + "W_V": _fla._heads_in(src.take(p + "v_proj.weight", (h * dv, dm)), h, dv),
        q + "W_a": (up.double() @ down.double()).T.to(up.dtype),
        q + "b_a": src.take(p + "gk_proj.1.bias", (h * dk,)),
        q + "W_O": src.take(p + "o_proj.weight", (dm, h * dv)).T.reshape(h, dv, dm),
        q + "b_O": torch.zeros(dm),
    }
    # fused norm and gate (fuse_norm with the output gate) or a plain RMSNorm: the same maths, two names
    norm = p + ("g_norm_swish_gate.weight" if src.has_prefix(p + "g_norm_swish_gate.") else "g_norm.weight")
    if affine:
        out[q + "w_norm"] = src.take(norm, (dv,))
    else:
        out[q + "w_norm"] = torch.ones(dv)
    if m.output_gate:
        out[q + "W_G"] = _fla._heads_in(src.take(p + "g_proj.weight", (h * dv, dm)), h, dv)
    if m.conv_size:
        for name, channels in (("q", h * dk), ("k", h * dk), ("v", h * dv)):
            out[q + f"conv_{name}.weight"] = src.take(p + f"{name}_conv1d.weight", (channels, 1, m.conv_size))
    return out
