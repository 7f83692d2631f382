"""flash-linear-attention ``GatedDeltaNetForCausalLM`` (``model_type: gated_deltanet``) → our Gated DeltaNet.

Read from fla 0.6.0 ``fla/models/gated_deltanet/configuration_gated_deltanet.py``,
``fla/layers/gated_deltanet.py`` and ``fla/ops/gated_delta_rule/chunk.py``: q, k, v = SiLU(conv(x W)), q and
k L2-normalised in the kernel (x / √(Σx² + 1e-6): our ``qk_norm="l2_rsqrt"``), β = sigmoid(x W_b) (×2 with
``allow_neg_eigval``), g = −exp(A_log)·softplus(x W_a + dt_bias) per value head, read-out scale
head_dim^-½, per-head RMSNorm gated by act(x W_g) (``use_gate``; act = swish or sigmoid), o_proj. Widths:
key ``head_dim``, value ``head_dim · expand_v``; ``num_v_heads`` value heads (default ``num_heads``), value
head i using q/k head i // (num_v_heads / num_heads).
"""

from __future__ import annotations

import math

from ..mixers.gated_delta import GatedDeltaConfig
from . import _fla
from .registry import register_converter

_GATE_ACTIVATION = {"swish": "silu", "silu": "silu", "sigmoid": "sigmoid"}


@register_converter("gated_deltanet")
def convert(cfg, src):
    common = _fla.read_common(cfg)
    n_qk = cfg.get("num_heads", 6)
    n_v = cfg.get("num_v_heads", n_qk)
    if n_v < n_qk or n_v % n_qk:
        raise ValueError(f"{cfg.where}: num_v_heads = {n_v} must be a multiple of num_heads = {n_qk}")
    d_k = cfg.get("head_dim", 256)
    d_v = d_k * cfg.get("expand_v", 2.0)
    if not math.isclose(d_v, round(d_v)):
        raise ValueError(f"{cfg.where}: head_dim · expand_v = {d_v} must be a whole number")
    d_v = round(d_v)
    use_conv = cfg.get("use_short_conv", True, allowed=[True, False])
    use_gate = cfg.get("use_gate", True, allowed=[True, False])
    gate_act = cfg.get("output_gate_activation", "swish", allowed=list(_GATE_ACTIVATION))
    mixer = GatedDeltaConfig(
        qk_norm="l2_rsqrt",
        conv_size=cfg.get("conv_size", 4) if use_conv else 0,
        allow_neg_eigval=cfg.get("allow_neg_eigval", False, allowed=[True, False]),
        output_gate=use_gate,
        gate_activation=_GATE_ACTIVATION[gate_act],
        d_head_v=0 if d_v == d_k else d_v,
        n_qk_heads=0 if n_v == n_qk else n_qk,
    )
    if not use_conv:
        cfg.ignore("conv_size")
    mc, attention = _fla.model_config(cfg, common, n_v, d_k, mixer)
    tensors = _fla.common_tensors(cfg, mc, src)
    for layer in range(mc.n_layers):
        tensors.update(_fla.mixer_tensors(mc, src, layer, attention, gated=True))
    return mc, tensors
