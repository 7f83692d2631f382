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
from .source_config import SourceConfig
from .tensors import Tensors


def read_common(cfg: SourceConfig) -> dict:
    """The ModelConfig fields every fla causal LM sets (the mixer and head sizes come from the converter)."""
    cfg.ignore(
        "attn_mode",  # the kernel (chunk / fused_recurrent): same maths
        "fuse_norm", "fuse_swiglu",  # fused Triton versions of the same norm and MLP
        "fuse_cross_entropy", "fuse_linear_cross_entropy", "use_l2warp",  # the training loss only
    )
    cfg.refuse("attn", "hybrid models with softmax-attention layers (rotary, grouped KV heads) are not supported "
                       "yet; open a model without an 'attn' config")
    cfg.refuse("attnres_block_size", "attention residuals (fla.ops.attnres) are not supported")
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


def model_config(common: dict, n_heads: int, d_head: int, mixer: MixerConfig) -> ModelConfig:
    return ModelConfig(**common, n_heads=n_heads, d_head=d_head, mixer=mixer)


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
        out[q + "mlp.W_gate"] = src.take(p + "mlp.gate_proj.weight", (dmlp, dm)).T
        out[q + "mlp.W_in"] = src.take(p + "mlp.up_proj.weight", (dmlp, dm)).T
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
