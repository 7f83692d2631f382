"""transformers OLMo-hybrid (``model_type: olmo_hybrid``) → Gated DeltaNet layers and post-norm softmax layers.

Read from transformers 5.x ``models/olmo_hybrid/modeling_olmo_hybrid.py`` and ``configuration_olmo_hybrid.py``
(see :mod:`._hf_hybrid` for the Gated DeltaNet layer, here with separate ``q_proj``, ``k_proj``, ``v_proj``,
``a_proj``, ``b_proj``, ``g_proj`` (the output gate), ``o_norm`` and ``o_proj``):

- linear-attention layers (``OlmoHybridLinearAttentionDecoderLayer``): the pre-norm block
  ``h = x + GDN(RMSNorm(x)); out = h + MLP(RMSNorm(h))``; β ×2 with ``linear_allow_neg_eigval``; the gated
  output norm has ε = 1e-5 whatever ``rms_norm_eps`` says (as fla's FusedRMSNormGated), our
  ``output_norm_eps``;
- attention layers (``OlmoHybridAttentionDecoderLayer``): OLMo 2's post-norm block
  ``h = x + RMSNorm(attn(x)); out = h + RMSNorm(MLP(h))`` (our ``post_norm_layers``); q and k RMS-normalised
  over all heads' channels together (``q_norm`` [heads·head_dim], ``k_norm`` [kv_heads·head_dim]: our
  ``qk_rmsnorm="all"``), rotary positions on every channel when ``rope_parameters`` has a ``rope_theta`` (none
  otherwise: the released checkpoints), grouped KV heads, no output gate;
- RMSNorm x̂ · w (gains initialised to 1), SwiGLU MLP, no biases.

Tensor names: the checkpoints (and ``save_pretrained``) use OLMo-core's names, which transformers renames on
load (``transformers/conversion_mapping.py``, "olmo_hybrid"): ``attention_layer_norm`` = ``input_layernorm``,
``feedforward_layer_norm`` = ``post_attention_layernorm`` (in an attention layer: the norm after attention),
``{q,k,v}_conv1d`` = ``conv1d`` split by rows; both namings are read.
"""

from __future__ import annotations

from ..config import ModelConfig
from . import _hf_hybrid as hf
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors

_GATED_NORM_EPS = 1e-5  # OlmoHybridGatedDeltaNet.o_norm: OlmoHybridRMSNormGated(head_v_dim, eps=1e-5)


@register_converter("olmo_hybrid")
def convert(cfg: SourceConfig, src: Tensors):
    cfg.ignore("linear_a_log_min", "linear_a_log_max", "linear_dt_min", "linear_dt_max",
               "linear_dt_init_floor")  # the initialisation of A_log and dt_bias only
    src.drop_prefix("mtp.")  # transformers ignores a multi-token-prediction module on load too
    common = hf.read_common(cfg)
    n_layers, dm = common["n_layers"], common["d_model"]
    kinds = hf.layer_types(cfg, n_layers)
    n_v, _, d_k, _ = hf.linear_sizes(cfg)
    linear = hf.gated_delta_config(cfg, allow_neg_eigval=cfg.get("linear_allow_neg_eigval", True, allowed=[True, False]),
                                   output_norm_eps=_GATED_NORM_EPS)
    attention = hf.attention_config(cfg, n_v, d_k, qk_rmsnorm="all", output_gate=False)
    full = [i for i, kind in enumerate(kinds) if kind == hf.FULL]
    mc = ModelConfig(**common, n_heads=n_v, d_head=d_k, post_norm_layers=tuple(full),
                     mixer=[linear if kind == hf.LINEAR else attention for kind in kinds])
    tensors = hf.embedding_tensors(cfg, src, "model.", mc.d_vocab, dm, zero_centred=False)
    for i, kind in enumerate(kinds):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        tensors.update(hf.mlp_tensors(src, p, q, dm, mc.d_mlp))
        # the checkpoints' norm names (OLMo-core's, which transformers.save_pretrained writes) or transformers'
        first = hf.take_either(src, (p + "attention_layer_norm.weight", p + "input_layernorm.weight"), (dm,)) \
            if kind == hf.LINEAR else None
        second = hf.take_either(src, (p + "feedforward_layer_norm.weight", p + "post_attention_layernorm.weight"), (dm,))
        if kind == hf.LINEAR:
            tensors[q + "ln1.w"], tensors[q + "ln2.w"] = first, second
            tensors.update(hf.gated_delta_tensors(cfg, src, p + "linear_attn.", q + "attn.", dm, layout="separate", names=dict(
                z="g_proj", a="a_proj", b="b_proj", out="o_proj", norm="o_norm")))
        else:
            tensors[q + "ln_attn_out.w"] = second
            tensors[q + "ln_mlp_out.w"] = src.take(p + "post_feedforward_layernorm.weight", (dm,))
            tensors.update(hf.attention_tensors(attention, src, p + "self_attn.", q + "attn.", dm, n_v, d_k,
                                                zero_centred=False))
    return mc, tensors
