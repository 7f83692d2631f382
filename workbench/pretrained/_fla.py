"""What flash-linear-attention's causal LMs share: embeddings, pre-norm blocks with a SwiGLU MLP, the final
norm and the head, and the tensors of its DeltaNet-family layers. Read from fla 0.6.0:
``fla/models/delta_net/modeling_delta_net.py`` (the block and model), ``fla/modules/mlp.py`` (GatedMLP and
its intermediate size), ``fla/models/modeling_utils.py`` (the head), ``fla/layers/delta_net.py`` and
``fla/layers/gated_deltanet.py`` (the layers' parameters).

fla's block: ``h = x + attn(RMSNorm(x)); out = h + mlp(RMSNorm(h))`` — our pre-norm block with RMSNorm and
SwiGLU (fla's ``swiglu(gate, up) = silu(gate) · up``). fla has no biases; ours are loaded as zeros.
"""

from __future__ import annotations

import torch

from ..config import ModelConfig
from ..mixers import MixerConfig
from ..mixers.softmax import SoftmaxConfig
from .source_config import SourceConfig
from .tensors import Tensors


def read_common(cfg: SourceConfig) -> dict:
    """The ModelConfig fields every fla causal LM sets (the mixer and head sizes come from the converter)."""
    cfg.ignore(
        "attn_mode",  # the kernel (chunk / fused_recurrent): same maths
        "fuse_norm", "fuse_swiglu",  # fused Triton versions of the same norm and MLP
        "fuse_cross_entropy", "fuse_linear_cross_entropy", "use_l2warp",  # the training loss only
    )
    cfg.refuse("attnres_block_size", "attention residuals (fla.ops.attnres) are not supported")
    # fla before Feb 2025: norm_first=true put the pre-norms inside the layers (fused with their projections)
    cfg.refuse("norm_first", "the norm-inside-the-layer variant of fla < 0.2 is not supported", harmless=(None, False))
    d_model = cfg.get("hidden_size")
    cfg.get("hidden_act", "swish", allowed=["swish"])
    d_mlp = cfg.get("intermediate_size", None)
    hidden_ratio = cfg.get("hidden_ratio", 4)
    if d_mlp is None:  # fla/modules/mlp.py GatedMLP: 2/3 · hidden_ratio · hidden, rounded up to a multiple of 256
        d_mlp = int(d_model * hidden_ratio * 2 / 3)
        d_mlp = 256 * ((d_mlp + 256 - 1) // 256)
    return dict(
        d_vocab=cfg.get("vocab_size"), d_model=d_model, n_layers=cfg.get("num_hidden_layers"),
        n_ctx=cfg.data.get("max_position_embeddings") or 2048, norm="rmsnorm", mlp="swiglu", d_mlp=d_mlp,
        positional="none", norm_eps=float(cfg.get("norm_eps", 1e-6)),
    )


def model_config(cfg: SourceConfig, common: dict, n_heads: int, d_head: int, mixer: MixerConfig
                 ) -> tuple[ModelConfig, set[int]]:
    """One ``mixer`` per layer, except the softmax-attention layers of a hybrid (``attn``); and those layers."""
    attention = attention_layers(cfg, common["n_layers"], common["d_model"], n_heads, d_head)
    mixers = [attention.get(i, mixer) for i in range(common["n_layers"])]
    return ModelConfig(**common, n_heads=n_heads, d_head=d_head, mixer=mixers), set(attention)


_ATTN_KEYS = {"layers", "num_heads", "num_kv_heads", "qkv_bias", "window_size", "rope_theta"}


def attention_layers(cfg: SourceConfig, n_layers: int, d_model: int, n_heads: int, d_head: int
                     ) -> dict[int, SoftmaxConfig]:
    """fla's ``attn``: softmax attention at the listed layers (fla/layers/attn.py: head width hidden / num_heads,
    q/k/v/o projections, optional q/k/v biases, grouped KV heads, rotary positions on all of each head's
    channels with base rope_theta, causal flash attention with an optional window)."""
    attn = cfg.get("attn", None)
    if attn is None:
        return {}
    specs = [attn] if isinstance(attn, dict) else attn
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ValueError(f"{cfg.where}: attn must be a dict or a list of dicts, got {attn!r}")
    out: dict[int, SoftmaxConfig] = {}
    for spec in specs:
        unknown = sorted(set(spec) - _ATTN_KEYS)
        if unknown:
            raise ValueError(f"{cfg.where}: attn options {unknown} are not supported by workbench (supported: "
                             f"{sorted(_ATTN_KEYS)})")
        heads = spec["num_heads"]
        if d_model % heads:
            raise ValueError(f"{cfg.where}: attn num_heads = {heads} must divide hidden_size = {d_model}")
        width = d_model // heads
        mixer = SoftmaxConfig(
            n_kv_heads=0 if spec.get("num_kv_heads") in (None, heads) else spec["num_kv_heads"],
            rotary_base=float(spec.get("rope_theta") or 10000.0),
            qkv_bias=bool(spec.get("qkv_bias", False)),
            window=spec.get("window_size") or 0,
            n_heads=0 if heads == n_heads else heads,
            d_head=0 if width == d_head else width,
        )
        for layer in spec["layers"]:
            if not isinstance(layer, int) or not 0 <= layer < n_layers or layer in out:
                raise ValueError(f"{cfg.where}: attn layers {spec['layers']} must be distinct layers in "
                                 f"[0, {n_layers - 1}]")
            out[layer] = mixer
    return out


def attention_tensors(mc: ModelConfig, src: Tensors, layer: int) -> dict[str, torch.Tensor]:
    """One fla ``Attention`` layer's tensors as our softmax mixer's (biases fla lacks as zeros)."""
    m = mc.layer_mixers[layer]
    h, dh, dm = m.n_heads or mc.n_heads, m.d_head or mc.d_head, mc.d_model
    hkv = m.n_kv_heads or h
    p, q = f"model.layers.{layer}.attn.", f"blocks.{layer}.attn."
    out = {
        q + "W_Q": _heads_in(src.take(p + "q_proj.weight", (h * dh, dm)), h, dh),
        q + "W_K": _heads_in(src.take(p + "k_proj.weight", (hkv * dh, dm)), hkv, dh),
        q + "W_V": _heads_in(src.take(p + "v_proj.weight", (hkv * dh, dm)), hkv, dh),
        q + "W_O": src.take(p + "o_proj.weight", (dm, h * dh)).T.reshape(h, dh, dm),
        q + "b_O": torch.zeros(dm),
    }
    if m.qkv_bias:
        for name, heads in (("Q", h), ("K", hkv), ("V", hkv)):
            out[q + f"b_{name}"] = src.take(p + f"{name.lower()}_proj.bias", (heads * dh,)).view(heads, dh)
    return out


def mixer_tensors(mc: ModelConfig, src: Tensors, layer: int, attention: set[int], *, gated: bool
                  ) -> dict[str, torch.Tensor]:
    """The tensors of layer ``layer``'s mixer: fla's attention (the layers in ``attention``) or its
    DeltaNet-family layer."""
    if layer in attention:
        return attention_tensors(mc, src, layer)
    return delta_family_tensors(mc, src, layer, gated=gated)


def common_tensors(cfg: SourceConfig, mc: ModelConfig, src: Tensors) -> dict[str, torch.Tensor]:
    """Embeddings, block norms, MLPs, final norm and head (``lm_head`` = the embedding when tied)."""
    dm, dv, dmlp = mc.d_model, mc.d_vocab, mc.d_mlp
    out: dict[str, torch.Tensor] = {}
    w_e = src.take("model.embeddings.weight", (dv, dm))
    out["embed.W_E"] = w_e
    if cfg.get("tie_word_embeddings", False, allowed=[True, False]):
        src.drop("lm_head.weight")
        out["unembed.W_U"] = w_e.T.clone()
    else:
        out["unembed.W_U"] = src.take("lm_head.weight", (dv, dm)).T
    out["unembed.b_U"] = torch.zeros(dv)
    out["ln_final.w"] = src.take("model.norm.weight", (dm,))
    for i in range(mc.n_layers):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        out[q + "ln1.w"] = src.take(p + "attn_norm.weight", (dm,))
        out[q + "ln2.w"] = src.take(p + "mlp_norm.weight", (dm,))
        if p + "mlp.up_proj.weight" in src:
            out[q + "mlp.W_gate"] = src.take(p + "mlp.gate_proj.weight", (dmlp, dm)).T
            out[q + "mlp.W_in"] = src.take(p + "mlp.up_proj.weight", (dmlp, dm)).T
        else:  # fla before Feb 2025 (commit b48ca31d): one gate_proj [2·d_mlp, hidden], the gate then the up half
            gate, up = src.take(p + "mlp.gate_proj.weight", (2 * dmlp, dm)).chunk(2, dim=0)
            out[q + "mlp.W_gate"], out[q + "mlp.W_in"] = gate.T, up.T
        out[q + "mlp.b_in"] = torch.zeros(dmlp)
        out[q + "mlp.W_out"] = src.take(p + "mlp.down_proj.weight", (dm, dmlp)).T
        out[q + "mlp.b_out"] = torch.zeros(dm)
    return out


def _heads_in(w: torch.Tensor, heads: int, width: int) -> torch.Tensor:
    """nn.Linear weight ``[heads·width, d_model]`` → ours ``[heads, d_model, width]``."""
    return w.view(heads, width, -1).permute(0, 2, 1)


def delta_family_tensors(mc: ModelConfig, src: Tensors, layer: int, *, gated: bool) -> dict[str, torch.Tensor]:
    """One fla DeltaNet / Gated DeltaNet layer's tensors (``model.layers.{i}.attn.*``) as our mixer's."""
    m = mc.layer_mixers[layer]
    h, dm, dk = mc.n_heads, mc.d_model, mc.d_head
    hk, dv = m.n_qk_heads or h, m.d_head_v or dk
    p, q = f"model.layers.{layer}.attn.", f"blocks.{layer}.attn."
    out = {
        q + "W_Q": _heads_in(src.take(p + "q_proj.weight", (hk * dk, dm)), hk, dk),
        q + "W_K": _heads_in(src.take(p + "k_proj.weight", (hk * dk, dm)), hk, dk),
        q + "W_V": _heads_in(src.take(p + "v_proj.weight", (h * dv, dm)), h, dv),
        q + "W_O": src.take(p + "o_proj.weight", (dm, h * dv)).T.reshape(h, dv, dm),
        q + "b_O": torch.zeros(dm),
        q + "w_norm": src.take(p + "o_norm.weight", (dv,)),
    }
    if m.use_beta:
        out[q + "W_beta"] = src.take(p + "b_proj.weight", (h, dm)).T
        out[q + "b_beta"] = torch.zeros(h)
    if m.output_gate:
        out[q + "W_G"] = _heads_in(src.take(p + "g_proj.weight", (h * dv, dm)), h, dv)
    if m.conv_size:
        for name, channels in (("q", hk * dk), ("k", hk * dk), ("v", h * dv)):
            out[q + f"conv_{name}.weight"] = src.take(p + f"{name}_conv1d.weight", (channels, 1, m.conv_size))
    if gated:
        out[q + "W_a"] = src.take(p + "a_proj.weight", (h, dm)).T
        out[q + "A_log"] = src.take(p + "A_log", (h,))
        out[q + "dt_bias"] = src.take(p + "dt_bias", (h,))
    return out
