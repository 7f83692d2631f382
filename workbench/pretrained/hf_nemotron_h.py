"""transformers ``NemotronHForCausalLM`` (``model_type: nemotron_h``) → blocks of one branch each: Mamba-2 mixers,
softmax attention, squared-ReLU MLPs and squared-ReLU mixtures of experts (``ModelConfig.block_kinds``).

Read from transformers 5.x ``models/nemotron_h/modeling_nemotron_h.py`` and ``configuration_nemotron_h.py``. Every
layer is ``x + mixer(RMSNorm(x))`` where the "mixer" is ONE of, by ``layers_block_type`` (or the older
``hybrid_override_pattern`` string ``M * - E``):

- ``linear_attention`` (``M``; legacy ``mamba``): ``NemotronHMamba2Mixer``, Mamba-2's mixer (see :mod:`.hf_mamba2`)
  with ``mamba_num_heads`` heads of ``mamba_head_dim`` channels and ``ssm_state_size`` states, the step clamped to
  ``[time_step_min, ∞)`` (the mixer never reads ``time_step_limit``) → our ``mamba2`` mixer, a mixer-only block;
- ``full_attention`` (``*``; legacy ``attention``): ``NemotronHAttention``: grouped-query softmax attention with
  ``num_attention_heads`` heads of ``head_dim``, ``num_key_value_heads`` KV heads, scale head_dim^-½, **no rotary
  positions** and no biases (its projections are built with ``bias=False`` whatever ``attention_bias`` says) →
  our ``softmax`` mixer, a mixer-only block;
- ``mlp`` (``-``): ``NemotronHMLP``: ``down(relu2(up(x)))`` (biases with ``mlp_bias``) → our ``relu2`` MLP, an
  MLP-only block;
- ``moe`` (``E``): ``NemotronHMoE``: Kimi's / DeepSeek-V3's router (sigmoid scores, the correction bias
  ``e_score_correction_bias``, ``n_group`` / ``topk_group``, ``norm_topk_prob``, ``routed_scaling_factor``) over
  ``n_routed_experts`` squared-ReLU experts without biases, plus one squared-ReLU shared expert without a gate
  → our :class:`~workbench.components.moe.MoE` with ``mlp="relu2"``, an MLP-only block.

RMSNorms ``layer_norm_epsilon`` (the Mamba gated group norm too), final ``norm_f``, an untied ``lm_head``
(``NemotronHForCausalLM`` declares no tied weights, so ``tie_word_embeddings`` changes nothing). Checkpoints name
the trunk ``backbone.`` (transformers reads ``model.`` too); the multi-token-prediction layers ``mtp.*`` are not
part of the next-token forward and are left out, as transformers does.
"""

from __future__ import annotations

import torch

from ..components.moe import MoEConfig
from ..config import ModelConfig
from ..mixers.mamba2 import Mamba2Config
from ..mixers.softmax import SoftmaxConfig
from .hf_mamba2 import _number, mamba_tensors
from .registry import register_converter
from .source_config import SourceConfig
from .tensors import Tensors

MAMBA, ATTENTION, MLP, MOE = "linear_attention", "full_attention", "mlp", "moe"
_PATTERN = {"M": MAMBA, "*": ATTENTION, "-": MLP, "E": MOE}
_LEGACY = {"mamba": MAMBA, "attention": ATTENTION}  # transformers' remap_legacy_layer_types
_BLOCK = {MAMBA: "mixer", ATTENTION: "mixer", MLP: "mlp", MOE: "mlp"}


def _alias(cfg: SourceConfig, key: str, legacy: str, default):
    """A key NemotronHConfig also reads under an older name (``mamba_n_groups`` for ``n_groups``, …)."""
    if legacy in cfg.data:
        if key in cfg.data and cfg.data[key] != cfg.data[legacy]:
            raise ValueError(f"{cfg.where} has both {key} = {cfg.data[key]!r} and its older name {legacy} = "
                             f"{cfg.data[legacy]!r}")
        cfg.ignore(key)
        return cfg.get(legacy)
    cfg.ignore(legacy)
    return cfg.get(key, default)


def layer_kinds(cfg: SourceConfig) -> list[str]:
    kinds = cfg.get("layers_block_type", None)
    pattern = cfg.get("hybrid_override_pattern", None)
    if kinds is None and pattern is not None:
        if not isinstance(pattern, str) or not pattern or set(pattern) - set(_PATTERN):
            raise ValueError(f"{cfg.where}: hybrid_override_pattern must be a string of {sorted(_PATTERN)}, got "
                             f"{pattern!r}")
        kinds = [_PATTERN[c] for c in pattern]
    if kinds is None:
        kinds = [MAMBA, MOE, ATTENTION, MLP]  # NemotronHConfig's default
    if not isinstance(kinds, list) or not kinds:
        raise ValueError(f"{cfg.where}: layers_block_type must be a non-empty list, got {kinds!r}")
    kinds = [_LEGACY.get(k, k) for k in kinds]
    bad = sorted(set(kinds) - set(_BLOCK), key=str)
    if bad:
        raise ValueError(f"{cfg.where}: layers_block_type holds {bad}; workbench opens {sorted(_BLOCK)}")
    n = cfg.get("num_hidden_layers", len(kinds))  # deprecated in transformers: the list decides
    if n != len(kinds):
        raise ValueError(f"{cfg.where}: num_hidden_layers = {n} but layers_block_type lists {len(kinds)} layers")
    return kinds


def mamba_config(cfg: SourceConfig) -> tuple[Mamba2Config, int, int, int]:
    """(mixer config, heads, head width P, state size N) of the Mamba-2 layers."""
    cfg.ignore(
        "expand",  # the inner width is mamba_num_heads · mamba_head_dim (the mixer never reads expand)
        "mamba_proj_bias",  # never read: in_proj / out_proj biases follow use_bias
        "use_mamba_kernels",  # deprecated, no effect (transformers picks a kernel by what is installed)
        "chunk_size", "mamba_chunk_size",  # the chunk length of transformers' scan: the same maths
        "mamba_ssm_cache_dtype",  # the dtype of the generation cache; fast_weights returns float32
        "time_step_limit", "mamba_dt_limit",  # never read by NemotronHMamba2Mixer: it clamps to [time_step_min, ∞)
        "time_step_max", "mamba_dt_max", "time_step_floor", "mamba_dt_init_floor", "rescale_prenorm_residual",  # init
    )
    cfg.get("mamba_hidden_act", "silu", allowed=["silu"])
    heads, p, n = cfg.get("mamba_num_heads", 128), cfg.get("mamba_head_dim", 64), cfg.get("ssm_state_size", 128)
    groups = _alias(cfg, "n_groups", "mamba_n_groups", 8)
    if not isinstance(groups, int) or groups < 1 or heads % groups:
        raise ValueError(f"{cfg.where}: n_groups = {groups!r} must divide mamba_num_heads = {heads}")
    dt_min = _number(cfg, _alias(cfg, "time_step_min", "mamba_dt_min", 0.001))
    if dt_min < 0:
        raise ValueError(f"{cfg.where}: time_step_min = {dt_min} must be ≥ 0")
    conv = _alias(cfg, "conv_kernel", "mamba_d_conv", 4)
    mixer = Mamba2Config(d_head_v=0 if p == n else p, n_groups=groups, conv_size=conv, dt_min=dt_min)
    return mixer, heads, p, n


def attention_config(cfg: SourceConfig, n_heads: int, d_head: int) -> SoftmaxConfig:
    cfg.ignore(
        "attention_bias",  # NemotronHAttention builds q/k/v/o_proj with bias=False whatever this says
        "attention_dropout",  # training only
    )
    # create_causal_mask never reads it on the eager/SDPA paths, but flash-attention would; we refuse to guess
    cfg.refuse("sliding_window", "workbench opens Nemotron-H attention over the whole causal prefix")
    heads = cfg.get("num_attention_heads", 32)
    width = cfg.get("head_dim", None) or cfg.get("hidden_size") // heads
    kv = cfg.get("num_key_value_heads", None) or heads
    if heads % kv:
        raise ValueError(f"{cfg.where}: num_key_value_heads = {kv} must divide num_attention_heads = {heads}")
    return SoftmaxConfig(n_kv_heads=0 if kv == heads else kv, n_heads=0 if heads == n_heads else heads,
                         d_head=0 if width == d_head else width)


def moe_config(cfg: SourceConfig, kinds: list[str]) -> MoEConfig | None:
    keys = ("n_routed_experts", "num_experts_per_tok", "moe_intermediate_size", "moe_shared_expert_intermediate_size",
            "norm_topk_prob", "n_group", "topk_group", "routed_scaling_factor", "moe_latent_size")
    cfg.ignore(
        "output_router_logits",  # the training loss only
        "n_shared_experts",  # NemotronHMoE builds exactly one shared expert (moe_shared_expert_intermediate_size)
        "moe_shared_expert_overlap",  # never read by the forward (a Megatron scheduling flag)
    )
    if MOE not in kinds:
        cfg.ignore(*keys)  # no mixture-of-experts layer: these change nothing
        return None
    cfg.refuse("moe_latent_size", "the latent projections fc1_latent_proj / fc2_latent_proj around the experts are "
               "not supported")
    return MoEConfig(
        n_experts=cfg.get("n_routed_experts", 8), top_k=cfg.get("num_experts_per_tok", 2),
        d_expert=cfg.get("moe_intermediate_size", 7688),
        d_shared=cfg.get("moe_shared_expert_intermediate_size", 7688),
        norm_topk_prob=cfg.get("norm_topk_prob", True, allowed=[True, False]), sigmoid_scores=True,
        n_group=cfg.get("n_group", 1), topk_group=cfg.get("topk_group", 1),
        routed_scaling_factor=float(cfg.get("routed_scaling_factor", 1.0)), score_bias=True, shared_gate=False,
        dense_layers=tuple(i for i, k in enumerate(kinds) if k != MOE))


@register_converter("nemotron_h")
def convert(cfg: SourceConfig, src: Tensors):
    src.drop_prefix("mtp.")  # the multi-token-prediction layers: not part of the next-token forward
    cfg.ignore(
        "num_nextn_predict_layers", "mtp_layers_block_type", "mtp_hybrid_override_pattern",  # the MTP layers
        "num_logits_to_keep",  # generation only
        "hidden_dropout",  # training only
        "residual_in_fp32",  # never read by the forward (the residual stream stays in the model's dtype)
        "tie_word_embeddings",  # NemotronHForCausalLM declares no tied weights: lm_head is its own
    )
    kinds = layer_kinds(cfg)
    dm, vocab = cfg.get("hidden_size"), cfg.get("vocab_size")
    eps = float(cfg.get("layer_norm_epsilon", 1e-5))
    mlp_act = cfg.get("mlp_hidden_act", "relu2", allowed=["relu2"])
    mlp_bias = cfg.get("mlp_bias", False, allowed=[True, False])
    use_bias = cfg.get("use_bias", False, allowed=[True, False])
    conv_bias = _alias(cfg, "use_conv_bias", "mamba_conv_bias", True)
    if conv_bias not in (True, False):
        raise ValueError(f"{cfg.where}: use_conv_bias must be true or false, got {conv_bias!r}")
    mamba, heads, p, n = mamba_config(cfg)
    attention_heads = cfg.data.get("num_attention_heads", 32)
    if MAMBA in kinds:
        n_heads, d_head = heads, n
    else:  # no Mamba layer: the model's heads are the attention layers'
        n_heads, d_head = attention_heads, cfg.data.get("head_dim") or dm // attention_heads
    attention = attention_config(cfg, n_heads, d_head)
    moe = moe_config(cfg, kinds)
    d_mlp = cfg.get("intermediate_size", 21504)
    mc = ModelConfig(d_vocab=vocab, d_model=dm, n_layers=len(kinds), n_heads=n_heads, d_head=d_head,
                     n_ctx=cfg.data.get("max_position_embeddings") or 4096, norm="rmsnorm", mlp=mlp_act, d_mlp=d_mlp,
                     positional="none", norm_eps=eps, moe=moe, block_kinds=tuple(_BLOCK[k] for k in kinds),
                     mixer=[mamba if k == MAMBA else attention if k == ATTENTION else None for k in kinds])
    root = "backbone." if src.has_prefix("backbone.") else "model."
    tensors = {"embed.W_E": src.take(root + "embeddings.weight", (vocab, dm)), "unembed.b_U": torch.zeros(vocab),
               "ln_final.w": src.take(root + "norm_f.weight", (dm,)),
               "unembed.W_U": src.take("lm_head.weight", (vocab, dm)).T}
    for i, kind in enumerate(kinds):
        s, q = f"{root}layers.{i}.", f"blocks.{i}."
        tensors[q + ("ln1.w" if _BLOCK[kind] == "mixer" else "ln2.w")] = src.take(s + "norm.weight", (dm,))
        s = s + "mixer."
        if kind == MAMBA:
            tensors.update(mamba_tensors(src, s, q + "attn.", dm, heads, p, n, mamba.n_groups, mamba.conv_size,
                                         use_bias=use_bias, conv_bias=conv_bias))
        elif kind == ATTENTION:
            tensors.update(attention_tensors(attention, src, s, q + "attn.", dm, n_heads, d_head))
        elif kind == MLP:
            tensors.update(mlp_tensors(src, s, q + "mlp.", dm, d_mlp, bias=mlp_bias))
        else:
            tensors.update(moe_tensors(moe, src, s, q + "mlp.", dm, bias=mlp_bias))
    return mc, tensors


def attention_tensors(m: SoftmaxConfig, src: Tensors, s: str, q: str, dm: int, n_heads: int, d_head: int
                      ) -> dict[str, torch.Tensor]:
    h, dh = m.n_heads or n_heads, m.d_head or d_head
    hkv = m.n_kv_heads or h

    def heads_in(name: str, count: int) -> torch.Tensor:  # nn.Linear [count·dh, dm] → ours [count, dm, dh]
        return src.take(s + name, (count * dh, dm)).reshape(count, dh, dm).permute(0, 2, 1)

    return {q + "W_Q": heads_in("q_proj.weight", h), q + "W_K": heads_in("k_proj.weight", hkv),
            q + "W_V": heads_in("v_proj.weight", hkv),
            q + "W_O": src.take(s + "o_proj.weight", (dm, h * dh)).T.reshape(h, dh, dm), q + "b_O": torch.zeros(dm)}


def mlp_tensors(src: Tensors, s: str, q: str, dm: int, d: int, *, bias: bool) -> dict[str, torch.Tensor]:
    """``up_proj`` → W_in, ``down_proj`` → W_out (relu2 between), biases with ``mlp_bias``."""
    return {q + "W_in": src.take(s + "up_proj.weight", (d, dm)).T,
            q + "b_in": src.take(s + "up_proj.bias", (d,)) if bias else torch.zeros(d),
            q + "W_out": src.take(s + "down_proj.weight", (dm, d)).T,
            q + "b_out": src.take(s + "down_proj.bias", (dm,)) if bias else torch.zeros(dm)}


def moe_tensors(moe: MoEConfig, src: Tensors, s: str, q: str, dm: int, *, bias: bool) -> dict[str, torch.Tensor]:
    """The router, its correction bias, the experts (``experts.{j}.up_proj / down_proj``, or transformers'
    in-memory 3-D ``experts.up_proj`` / ``experts.down_proj``) and the shared expert."""
    n, d = moe.n_experts, moe.d_expert
    out = {q + "W_router": src.take(s + "gate.weight", (n, dm)).T,
           q + "b_router": src.take(s + "gate.e_score_correction_bias", (n,))}
    if s + "experts.up_proj" in src:
        up, down = src.take(s + "experts.up_proj", (n, d, dm)), src.take(s + "experts.down_proj", (n, dm, d))
    else:
        up = torch.stack([src.take(s + f"experts.{j}.up_proj.weight", (d, dm)) for j in range(n)])
        down = torch.stack([src.take(s + f"experts.{j}.down_proj.weight", (dm, d)) for j in range(n)])
    out[q + "W_in"], out[q + "W_out"] = up.transpose(1, 2), down.transpose(1, 2)
    out.update(mlp_tensors(src, s + "shared_experts.", q + "shared.", dm, moe.d_shared, bias=bias))
    return out
