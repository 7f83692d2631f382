"""flash-linear-attention ``DeltaNetForCausalLM`` (``model_type: delta_net``) → our DeltaNet.

Read from fla 0.6.0 ``fla/models/delta_net/configuration_delta_net.py`` and ``fla/layers/delta_net.py``:
q, k = act(conv(x W)) (the conv's SiLU only when ``qk_activation == "silu"``; relu / elu+1 / identity after
it otherwise), v = SiLU(conv(x W_v)), q and k L2-normalised inside the kernel (x / √(Σx² + 1e-6), our
``qk_norm="l2_rsqrt"``) or ``sum_norm`` (L1, our ``"l1"``), β = sigmoid(x W_b) (or 1 without
``use_beta``; ×2 with ``allow_neg_eigval``), read-out scale d_k^-½, per-head RMSNorm (gated by SiLU(x W_g)
with ``use_gate``), o_proj. key width per head = hidden·expand_k / num_heads, value width = hidden·expand_v /
num_heads. fla 0.6.0's layer ignores ``use_output_norm``: it always applies the output norm.
"""

from __future__ import annotations

import math

from ..mixers.delta import DeltaConfig
from . import _fla
from .registry import register_converter

_QK_NORM = {"l2": "l2_rsqrt", "sum": "l1"}
_QK_ACTIVATION = {"silu": "silu", "relu": "relu", "elu": "elu1", "identity": "identity"}


def _head_width(cfg, key: str, d_model: int, n_heads: int) -> int:
    width = d_model * cfg.get(key, 1.0)
    if not math.isclose(width, round(width)) or round(width) % n_heads:
        raise ValueError(f"{cfg.where}: hidden_size · {key} = {width} must be a whole multiple of "
                         f"num_heads = {n_heads}")
    return round(width) // n_heads


@register_converter("delta_net")
def convert(cfg, src):
    common = _fla.read_common(cfg)
    n_heads = cfg.get("num_heads", 16)
    d_k = _head_width(cfg, "expand_k", common["d_model"], n_heads)
    d_v = _head_width(cfg, "expand_v", common["d_model"], n_heads)
    use_conv = cfg.get("use_short_conv", True, allowed=[True, False])
    cfg.get("use_output_norm", True, allowed=[True, False])  # fla 0.6.0 applies o_norm either way (see above)
    mixer = DeltaConfig(
        qk_norm=_QK_NORM[cfg.get("qk_norm", "l2", allowed=list(_QK_NORM))],
        qk_activation=_QK_ACTIVATION[cfg.get("qk_activation", "silu", allowed=list(_QK_ACTIVATION))],
        conv_size=cfg.get("conv_size", 4) if use_conv else 0,
        allow_neg_eigval=cfg.get("allow_neg_eigval", False, allowed=[True, False]),
        use_beta=cfg.get("use_beta", True, allowed=[True, False]),
        output_gate=cfg.get("use_gate", False, allowed=[True, False]),
        d_head_v=0 if d_v == d_k else d_v,
    )
    if not use_conv:
        cfg.ignore("conv_size")
    mc, attention = _fla.model_config(cfg, common, n_heads, d_k, mixer)
    tensors = _fla.common_tensors(cfg, mc, src)
    for layer in range(mc.n_layers):
        tensors.update(_fla.mixer_tensors(mc, src, layer, attention, gated=False))
    return mc, tensors
