"""transformers Qwen3.5 (dense) → Gated DeltaNet layers between gated softmax-attention layers.

``model_type: qwen3_5_text`` is ``Qwen3_5ForCausalLM`` (weights under ``model.``); ``model_type: qwen3_5`` is the
released multimodal ``Qwen3_5ForConditionalGeneration``, of which workbench opens the language model (its
``text_config``, weights under ``model.language_model.``); the vision tower (``model.visual.*``,
``vision_config``) is not opened.

Read from transformers 5.x ``models/qwen3_5/modeling_qwen3_5.py`` (see :mod:`._hf_hybrid` for the Gated
DeltaNet layer, here with one fused ``in_proj_qkv``, ``in_proj_z`` (the output gate), ``in_proj_b`` (β),
``in_proj_a`` (the decay), ``norm`` (the gated RMSNorm, a plain gain, ε = rms_norm_eps) and ``out_proj``):

- block: ``h = x + mixer(RMSNorm(x)); out = h + MLP(RMSNorm(h))``, the norms zero-centred: x̂ · (1 + w)
  (``Qwen3_5RMSNorm``, its weight initialised to 0), loaded as our RMSNorm with gain 1 + w (in float32);
- attention (``Qwen3_5Attention``): ``q_proj`` gives per head d_head query and d_head gate channels; q and k
  RMS-normalised per head (zero-centred gains), rotary positions on the first head_dim · partial_rotary_factor
  channels, grouped KV heads, softmax(q kᵀ / √head_dim) v, then ⊙ sigmoid(gate), ``o_proj``: our softmax
  mixer with ``qk_rmsnorm="head"``, ``rotary_dim`` and ``output_gate``;
- MLP: SwiGLU (``down(silu(gate(x)) · up(x))``); no biases anywhere (ours load as zeros).
"""

from __future__ import annotations

from ..config import ModelConfig
from . import _hf_hybrid as hf
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors

# Qwen3_5ForConditionalGeneration: the multimodal wrapper's own keys
_VISION_KEYS = ("vision_config", "image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")


@register_converter("qwen3_5_text")
def convert_text(cfg: SourceConfig, src: Tensors):
    # transformers reads a text checkpoint's weights under model.language_model. as under model. (its
    # conversion_mapping "qwen3_5_text": the prefix of the multimodal checkpoints)
    prefix = "model.language_model." if "model.language_model.embed_tokens.weight" in src else "model."
    return _convert(cfg, src, prefix)


@register_converter("qwen3_5")
def convert_multimodal(cfg: SourceConfig, src: Tensors):
    text = cfg.get("text_config")
    if not isinstance(text, dict):
        raise ValueError(f"{cfg.where}: text_config must be an object, got {text!r}")
    cfg.ignore(*_VISION_KEYS)  # the vision tower and its token ids: workbench opens the language model only
    n = src.drop_prefix("model.visual.")
    if n == 0 and "vision_config" in cfg.data:
        raise ValueError(f"{src.where}: no model.visual.* tensors, though config.json has a vision_config")
    inner = SourceConfig(dict(text), f"{cfg.where} text_config")
    # the wrapper's tie_word_embeddings decides (transformers' PreTrainedModel.get_expanded_tied_weights_keys reads
    # the model's own config); the text_config's copy is not read by Qwen3_5ForConditionalGeneration
    inner.data["tie_word_embeddings"] = cfg.get("tie_word_embeddings", False, allowed=[True, False])
    inner.ignore("model_type")
    out = _convert(inner, src, "model.language_model.")
    inner.check_all_read()
    return out


def _convert(cfg: SourceConfig, src: Tensors, prefix: str):
    src.drop_prefix("mtp.")  # the multi-token-prediction module: not part of the next-token forward
    common = hf.read_common(cfg)
    n_layers, dm = common["n_layers"], common["d_model"]
    kinds = hf.layer_types(cfg, n_layers)
    n_v, _, d_k, _ = hf.linear_sizes(cfg)
    linear = hf.gated_delta_config(cfg)
    attention = hf.attention_config(cfg, n_v, d_k, qk_rmsnorm="head", output_gate=True)
    mixers = [linear if kind == hf.LINEAR else attention for kind in kinds]
    mc = ModelConfig(**common, n_heads=n_v, d_head=d_k, mixer=mixers)
    tensors = hf.embedding_tensors(cfg, src, prefix, mc.d_vocab, dm, zero_centred=True)
    for i, kind in enumerate(kinds):
        p, q = f"{prefix}layers.{i}.", f"blocks.{i}."
        tensors[q + "ln1.w"] = hf.norm_weight(src, p + "input_layernorm.weight", dm, zero_centred=True)
        tensors[q + "ln2.w"] = hf.norm_weight(src, p + "post_attention_layernorm.weight", dm, zero_centred=True)
        tensors.update(hf.mlp_tensors(src, p, q, dm, mc.d_mlp))
        if kind == hf.LINEAR:
            tensors.update(hf.gated_delta_tensors(cfg, src, p + "linear_attn.", q + "attn.", dm, layout="qkv", names=dict(
                z="in_proj_z", a="in_proj_a", b="in_proj_b", out="out_proj", norm="norm")))
        else:
            tensors.update(hf.attention_tensors(attention, src, p + "self_attn.", q + "attn.", dm, n_v, d_k,
                                                zero_centred=True))
    return mc, tensors
