"""transformers Qwen3-Next (``model_type: qwen3_next``) → Gated DeltaNet and gated softmax layers with sparse
mixture-of-experts MLPs.

Read from transformers 5.x ``models/qwen3_next/modeling_qwen3_next.py``. The layers are Qwen3.5's (see
:mod:`.hf_qwen3_5`: zero-centred RMSNorms, gated attention with per-head QK-norm and partial rotary positions)
except for the Gated DeltaNet's fused projections ``in_proj_qkvz`` and ``in_proj_ba`` (grouped by key head,
:func:`._hf_hybrid.gated_delta_tensors` with ``layout="qkvz"``) and the MLP: ``Qwen3NextSparseMoeBlock`` (our
:class:`~workbench.components.moe.MoE`) in every layer i with ``(i + 1) % decoder_sparse_step == 0`` not in
``mlp_only_layers``, the dense SwiGLU of ``intermediate_size`` elsewhere. Checkpoints hold each expert's
``gate_proj``, ``up_proj``, ``down_proj`` (``mlp.experts.{j}.*``), the router ``mlp.gate``, the shared expert
``mlp.shared_expert.*`` and its gate ``mlp.shared_expert_gate``; transformers' fused 3-D
``mlp.experts.gate_up_proj`` / ``down_proj`` are read too.
"""

from __future__ import annotations

import torch

from ..components.moe import MoEConfig
from ..config import ModelConfig
from . import _hf_hybrid as hf
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors


def moe_config(cfg: SourceConfig, n_layers: int) -> MoEConfig | None:
    cfg.ignore("output_router_logits", "router_aux_loss_coef")  # the training loss only
    n = cfg.get("num_experts", 512)
    if n == 0:
        cfg.ignore("num_experts_per_tok", "moe_intermediate_size", "shared_expert_intermediate_size",
                   "norm_topk_prob", "decoder_sparse_step", "mlp_only_layers")  # no experts: all dense
        return None
    step = cfg.get("decoder_sparse_step", 1)
    only = cfg.get("mlp_only_layers", None) or []
    if not isinstance(step, int) or step < 1 or not isinstance(only, list):
        raise ValueError(f"{cfg.where}: decoder_sparse_step must be a positive int and mlp_only_layers a list")
    dense = [i for i in range(n_layers) if i in only or (i + 1) % step]
    return MoEConfig(n_experts=n, top_k=cfg.get("num_experts_per_tok", 10), d_expert=cfg.get("moe_intermediate_size"),
                     d_shared=cfg.get("shared_expert_intermediate_size", 0) or 0,
                     norm_topk_prob=cfg.get("norm_topk_prob", True, allowed=[True, False]), dense_layers=tuple(dense))


def moe_tensors(moe: MoEConfig, src: Tensors, p: str, q: str, d_model: int) -> dict[str, torch.Tensor]:
    n, d = moe.n_experts, moe.d_expert
    out = {q + "W_router": src.take(p + "gate.weight", (n, d_model)).T}
    if p + "experts.gate_up_proj" in src:  # transformers' in-memory layout
        gate, up = src.take(p + "experts.gate_up_proj", (n, 2 * d, d_model)).split([d, d], dim=1)
        down = src.take(p + "experts.down_proj", (n, d_model, d))
    else:
        gate, up, down = (torch.stack([src.take(p + f"experts.{j}.{name}.weight", shape) for j in range(n)])
                          for name, shape in (("gate_proj", (d, d_model)), ("up_proj", (d, d_model)),
                                              ("down_proj", (d_model, d))))
    out[q + "W_gate"], out[q + "W_in"] = gate.transpose(1, 2), up.transpose(1, 2)
    out[q + "W_out"] = down.transpose(1, 2)
    if moe.d_shared:
        out.update(hf.mlp_tensors(src, p + "shared_expert.", q + "shared.", d_model, moe.d_shared, prefix=""))
        out[q + "W_shared_gate"] = src.take(p + "shared_expert_gate.weight", (1, d_model)).T
    return out


@register_converter("qwen3_next")
def convert(cfg: SourceConfig, src: Tensors):
    src.drop_prefix("mtp.")  # the multi-token-prediction module: not part of the next-token forward
    common = hf.read_common(cfg)
    n_layers, dm = common["n_layers"], common["d_model"]
    kinds = hf.layer_types(cfg, n_layers)
    n_v, _, d_k, _ = hf.linear_sizes(cfg)
    linear = hf.gated_delta_config(cfg)
    attention = hf.attention_config(cfg, n_v, d_k, qk_rmsnorm="head", output_gate=True)
    moe = moe_config(cfg, n_layers)
    mc = ModelConfig(**common, n_heads=n_v, d_head=d_k, moe=moe,
                     mixer=[linear if kind == hf.LINEAR else attention for kind in kinds])
    tensors = hf.embedding_tensors(cfg, src, "model.", mc.d_vocab, dm, zero_centred=True)
    for i, kind in enumerate(kinds):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        tensors[q + "ln1.w"] = hf.norm_weight(src, p + "input_layernorm.weight", dm, zero_centred=True)
        tensors[q + "ln2.w"] = hf.norm_weight(src, p + "post_attention_layernorm.weight", dm, zero_centred=True)
        if mc.moe_at(i) is None:
            tensors.update(hf.mlp_tensors(src, p, q, dm, mc.d_mlp))
        else:
            tensors.update(moe_tensors(mc.moe, src, p + "mlp.", q + "mlp.", dm))
        if kind == hf.LINEAR:
            tensors.update(hf.gated_delta_tensors(cfg, src, p + "linear_attn.", q + "attn.", dm, layout="qkvz",
                                                  names=dict(out="out_proj", norm="norm")))
        else:
            tensors.update(hf.attention_tensors(attention, src, p + "self_attn.", q + "attn.", dm, n_v, d_k,
                                                zero_centred=True))
    return mc, tensors
