"""transformers Kimi Linear (``model_type: kimi_linear``) → Kimi Delta Attention layers, multi-head latent
attention layers and DeepSeek-style mixture-of-experts MLPs.

Read from transformers 5.x ``models/kimi_linear/modeling_kimi_linear.py`` and ``configuration_kimi_linear.py``:

- block: pre-norm, ``h = x + mixer(RMSNorm(x)); out = h + MLP(RMSNorm(h))`` (plain gains);
- ``KimiLinearDeltaAttention`` → our ``kda``: q, k, v projections, one conv over [q | k | v] then SiLU, q and k
  L2-normalised (x / √(Σx² + 1e-6)), scale d^-½, β = sigmoid(x W_b), the per-channel forget gate
  g = −exp(A_log)·softplus(f_b(f_a(x)) + dt_bias) (the low-rank product stored as one W_a), the output
  RMSNorm (ε = rms_norm_eps) gated by sigmoid(g_b(g_a(x))) (stored as one W_G);
- ``KimiLinearAttention`` → our ``mla`` (no rotary positions: "MLA with NoPE"; latent norms ε = 1e-6);
- ``KimiLinearMoE`` → our MoE with ``sigmoid_scores=True``: the correction bias ``e_score_correction_bias``,
  ``num_expert_group`` groups of which ``topk_group`` are kept, ``moe_renormalize``, ``routed_scaling_factor``,
  an ungated shared expert of ``moe_intermediate_size · num_shared_experts``; dense SwiGLU MLPs in the layers
  ``mlp_layer_types`` marks "dense".

Config keys are read under the checkpoint's names (what ``save_pretrained`` writes: ``num_experts``,
``num_experts_per_token``, ``num_shared_experts``, ``num_expert_group``, ``moe_renormalize``,
``model_max_length``) or transformers' (``num_local_experts``, ``num_experts_per_tok``, ``n_shared_experts``,
``n_group``, ``norm_topk_prob``); the released checkpoints' ``linear_attn_config`` and ``first_k_dense_replace``
are read as transformers reads them. Tensor names: the checkpoint's (``block_sparse_moe``, per-expert
``w1``/``w2``/``w3``, ``self_attn.f_a_proj``, ``{q,k,v}_conv1d``) or transformers' (``mlp``, fused
``experts.gate_up_proj``/``down_proj``, ``self_attn.forget_gate.*``, ``conv1d``).
"""

from __future__ import annotations

import torch

from ..components.moe import MoEConfig
from ..config import ModelConfig
from ..mixers.kda import KDAConfig
from ..mixers.mla import MLAConfig
from . import _hf_hybrid as hf
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors

_MISSING = object()


def _either(cfg: SourceConfig, names: tuple[str, ...], default=_MISSING):
    """The value of the first of ``names`` present (the checkpoint's name and transformers' for one option)."""
    present = [n for n in names if n in cfg.data]
    cfg.ignore(*names)
    if len(present) > 1 and len({repr(cfg.data[n]) for n in present}) > 1:
        raise ValueError(f"{cfg.where}: {present} name one option with different values")
    if present:
        return cfg.get(present[0], default) if default is not _MISSING else cfg.get(present[0])
    if default is _MISSING:
        raise ValueError(f"{cfg.where} has none of {list(names)}")
    return default


def _layer_types(cfg: SourceConfig, n_layers: int) -> tuple[list[str], list[str]]:
    """(mixer kinds, MLP kinds) from ``layer_types`` / ``mlp_layer_types`` or, as transformers derives them,
    from ``linear_attn_config`` (1-indexed layer lists) and ``first_k_dense_replace``."""
    lac = cfg.get("linear_attn_config", None) or {}
    unknown = sorted(set(lac) - {"head_dim", "num_heads", "short_conv_kernel_size", "full_attn_layers", "kda_layers"})
    if unknown:
        raise ValueError(f"{cfg.where}: linear_attn_config {unknown} are not supported by workbench")
    kinds = cfg.get("layer_types", None)
    if kinds is None and "full_attn_layers" in lac and "kda_layers" in lac:
        kinds = [None] * n_layers
        for i in lac["full_attn_layers"]:
            kinds[i - 1] = hf.FULL
        for i in lac["kda_layers"]:
            kinds[i - 1] = hf.LINEAR
    if kinds is None:  # transformers' default
        kinds = [hf.FULL if i and i % 4 == 0 else hf.LINEAR for i in range(n_layers)]
    cfg.data["layer_types"] = kinds
    kinds = hf.layer_types(cfg, n_layers)
    mlp = cfg.get("mlp_layer_types", None)
    first_dense = cfg.get("first_k_dense_replace", 1)
    if mlp is None:
        mlp = ["dense" if i < first_dense else "sparse" for i in range(n_layers)]
    if not isinstance(mlp, list) or len(mlp) != n_layers or not set(mlp) <= {"dense", "sparse"}:
        raise ValueError(f"{cfg.where}: mlp_layer_types must list {n_layers} of 'dense' / 'sparse', got {mlp!r}")
    return kinds, mlp


@register_converter("kimi_linear")
def convert(cfg: SourceConfig, src: Tensors):
    cfg.ignore("attention_dropout", "output_router_logits", "router_aux_loss_coef",  # training only
               "pretraining_tp",  # a training-time tensor-parallel split; transformers' layers do not read it
               "head_dim", "qk_head_dim",  # derived by transformers (qk_rope_head_dim, nope + rope)
               "use_grouped_topk",  # transformers' KimiLinearTopkRouter always selects by groups (1 group: none)
               "rope_theta", "rope_scaling", "rope_parameters")  # MLA with NoPE: transformers applies no rotation
    cfg.ignore("model_max_length")
    cfg.get("mla_use_nope", True, allowed=[True])
    cfg.get("moe_router_activation_func", "sigmoid", allowed=["sigmoid"])
    cfg.get("moe_layer_freq", 1, allowed=[1])
    cfg.refuse("attention_bias", "biases on the attention projections are not supported", harmless=(None, False))
    common = hf.read_common(cfg)
    n_layers, dm = common["n_layers"], common["d_model"]
    kinds, mlp_kinds = _layer_types(cfg, n_layers)
    lac = cfg.data.get("linear_attn_config") or {}
    h_lin = lac.get("num_heads", cfg.get("linear_num_heads", 32))
    d_lin = lac.get("head_dim", cfg.get("linear_head_dim", 128))
    conv = lac.get("short_conv_kernel_size", cfg.get("linear_conv_kernel_dim", 4))
    kda = KDAConfig(qk_norm="l2_rsqrt", conv_size=conv, output_gate=True, gate_activation="sigmoid")
    heads = cfg.get("num_attention_heads")
    if _either(cfg, ("num_key_value_heads",), heads) not in (None, heads):
        raise ValueError(f"{cfg.where}: num_key_value_heads must equal num_attention_heads for MLA (its keys and "
                         "values have one head per query head)")
    nope, rope = cfg.get("qk_nope_head_dim", 128), cfg.get("qk_rope_head_dim", 64)
    v_dim = cfg.get("v_head_dim", 128) or 128
    q_lora = cfg.get("q_lora_rank", None) or 0
    mla = MLAConfig(kv_lora_rank=cfg.get("kv_lora_rank", 512), q_lora_rank=q_lora, d_rope=rope,
                    n_heads=0 if heads == h_lin else heads, d_head=0 if nope == d_lin else nope,
                    d_head_v=0 if v_dim == nope else v_dim)
    n_exp = _either(cfg, ("num_experts", "num_local_experts"), 256)
    d_exp = cfg.get("moe_intermediate_size", 1024)
    moe = MoEConfig(n_experts=n_exp, top_k=_either(cfg, ("num_experts_per_token", "num_experts_per_tok"), 8),
                    d_expert=d_exp, d_shared=d_exp * _either(cfg, ("num_shared_experts", "n_shared_experts"), 1),
                    norm_topk_prob=_either(cfg, ("moe_renormalize", "norm_topk_prob"), True),
                    dense_layers=tuple(i for i, k in enumerate(mlp_kinds) if k == "dense"), sigmoid_scores=True,
                    n_group=_either(cfg, ("num_expert_group", "n_group"), 1),
                    topk_group=_either(cfg, ("topk_group",), 1) or 1,
                    routed_scaling_factor=float(cfg.get("routed_scaling_factor", 2.446)), score_bias=True,
                    shared_gate=False)
    mc = ModelConfig(**common, n_heads=h_lin, d_head=d_lin, moe=moe if "sparse" in mlp_kinds else None,
                     mixer=[kda if kind == hf.LINEAR else mla for kind in kinds])
    # KimiLinearForCausalLM declares no tied weights (_tied_weights_keys = {}): lm_head is always its own
    tensors = hf.embedding_tensors(cfg, src, "model.", mc.d_vocab, dm, zero_centred=False, ties=False)
    for i, kind in enumerate(kinds):
        p, q = f"model.layers.{i}.", f"blocks.{i}."
        tensors[q + "ln1.w"] = src.take(p + "input_layernorm.weight", (dm,))
        tensors[q + "ln2.w"] = src.take(p + "post_attention_layernorm.weight", (dm,))
        mp = p + ("block_sparse_moe." if src.has_prefix(p + "block_sparse_moe.") else "mlp.")
        if mc.moe_at(i) is None:
            tensors.update(hf.mlp_tensors(src, mp, q + "mlp.", dm, mc.d_mlp, prefix=""))
        else:
            tensors.update(_moe_tensors(moe, src, mp, q + "mlp.", dm))
        if kind == hf.LINEAR:
            tensors.update(_kda_tensors(src, p + "self_attn.", q + "attn.", dm, h_lin, d_lin, conv))
        else:
            tensors.update(_mla_tensors(mla, src, p + "self_attn.", q + "attn.", dm, h_lin, d_lin))
    return mc, tensors


def _kda_tensors(src: Tensors, p: str, q: str, dm: int, h: int, d: int, conv: int) -> dict[str, torch.Tensor]:
    hd = h * d
    f_a = hf.take_either(src, (p + "f_a_proj.weight", p + "forget_gate.f_a_proj.weight"), (d, dm))
    f_b = hf.take_either(src, (p + "f_b_proj.weight", p + "forget_gate.f_b_proj.weight"), (hd, d))
    g_a, g_b = src.take(p + "g_a_proj.weight", (d, dm)), src.take(p + "g_b_proj.weight", (hd, d))
    c_q, c_k, c_v = hf.conv_weight(src, p, 3 * hd, conv).split([hd, hd, hd])
    return {
        q + "W_Q": hf.heads_in(src.take(p + "q_proj.weight", (hd, dm)), h, d),
        q + "W_K": hf.heads_in(src.take(p + "k_proj.weight", (hd, dm)), h, d),
        q + "W_V": hf.heads_in(src.take(p + "v_proj.weight", (hd, dm)), h, d),
        q + "conv_q.weight": c_q, q + "conv_k.weight": c_k, q + "conv_v.weight": c_v,
        q + "W_beta": src.take(p + "b_proj.weight", (h, dm)).T, q + "b_beta": torch.zeros(h),
        q + "W_a": (f_b.double() @ f_a.double()).float().T,  # f_b(f_a(x)) as one map
        q + "A_log": hf.take_either(src, (p + "A_log", p + "forget_gate.A_log"), (1, 1, h, 1)).reshape(h),
        q + "dt_bias": hf.take_either(src, (p + "dt_bias", p + "forget_gate.dt_bias"), (hd,)),
        q + "W_G": hf.heads_in((g_b.double() @ g_a.double()).float(), h, d),
        q + "w_norm": src.take(p + "o_norm.weight", (d,)),
        q + "W_O": src.take(p + "o_proj.weight", (dm, hd)).T.reshape(h, d, dm), q + "b_O": torch.zeros(dm),
    }


def _mla_tensors(m: MLAConfig, src: Tensors, p: str, q: str, dm: int, n_heads: int, d_head: int
                 ) -> dict[str, torch.Tensor]:
    h, dn = m.n_heads or n_heads, m.d_head or d_head
    dv, dqk, r = m.d_head_v or dn, dn + m.d_rope, m.kv_lora_rank
    out = {}
    if m.q_lora_rank:
        out[q + "W_q_a"] = src.take(p + "q_a_proj.weight", (m.q_lora_rank, dm)).T
        out[q + "q_a_norm.w"] = src.take(p + "q_a_layernorm.weight", (m.q_lora_rank,))
        out[q + "W_q_b"] = src.take(p + "q_b_proj.weight", (h * dqk, m.q_lora_rank)).reshape(h, dqk, -1).permute(2, 0, 1)
    else:
        out[q + "W_Q"] = hf.heads_in(src.take(p + "q_proj.weight", (h * dqk, dm)), h, dqk)
    out[q + "W_kv_a"] = src.take(p + "kv_a_proj_with_mqa.weight", (r + m.d_rope, dm)).T
    out[q + "kv_a_norm.w"] = src.take(p + "kv_a_layernorm.weight", (r,))
    out[q + "W_kv_b"] = src.take(p + "kv_b_proj.weight", (h * (dn + dv), r)).reshape(h, dn + dv, r).permute(2, 0, 1)
    out[q + "W_O"] = src.take(p + "o_proj.weight", (dm, h * dv)).T.reshape(h, dv, dm)
    out[q + "b_O"] = torch.zeros(dm)
    return out


def _moe_tensors(moe: MoEConfig, src: Tensors, p: str, q: str, dm: int) -> dict[str, torch.Tensor]:
    n, d = moe.n_experts, moe.d_expert
    out = {q + "W_router": src.take(p + "gate.weight", (n, dm)).T,
           q + "b_router": src.take(p + "gate.e_score_correction_bias", (n,))}
    if p + "experts.gate_up_proj" in src:  # transformers' in-memory layout
        gate, up = src.take(p + "experts.gate_up_proj", (n, 2 * d, dm)).split([d, d], dim=1)
        down = src.take(p + "experts.down_proj", (n, dm, d))
    else:  # the checkpoints': w1 = gate, w3 = up, w2 = down
        gate, up, down = (torch.stack([src.take(p + f"experts.{j}.{w}.weight", shape) for j in range(n)])
                          for w, shape in (("w1", (d, dm)), ("w3", (d, dm)), ("w2", (dm, d))))
    out[q + "W_gate"], out[q + "W_in"], out[q + "W_out"] = gate.transpose(1, 2), up.transpose(1, 2), down.transpose(1, 2)
    out.update(hf.mlp_tensors(src, p + "shared_experts.", q + "shared.", dm, moe.d_shared, prefix=""))
    return out
