"""What transformers' Gated DeltaNet hybrids share (Qwen3.5, OLMo-hybrid; Qwen3-Next's layers are the same
maths): a ``layer_types`` list of ``"linear_attention"`` / ``"full_attention"`` layers, the Gated DeltaNet
layer, rotary softmax attention with QK-norm and grouped KV heads, SwiGLU MLPs, RMSNorms, embeddings and head.

Read from transformers 5.x ``models/qwen3_5/modeling_qwen3_5.py`` and ``models/olmo_hybrid/
modeling_olmo_hybrid.py`` (``*GatedDeltaNet``, ``*Attention``, ``*RotaryEmbedding``, ``*MLP``, ``*RMSNorm``):

Gated DeltaNet: one depthwise causal conv (no bias) over the concatenated [q | k | v] channels, then SiLU
(``hidden_act``); q, k L2-normalised in the rule (x·rsqrt(Σx² + 1e-6): our ``qk_norm="l2_rsqrt"``), read-out
scale d_k^-½; β = sigmoid(x W_b) (×2 with OLMo's ``linear_allow_neg_eigval``); g = −exp(A_log)·softplus(x W_a +
dt_bias); value head i reads q/k head i // (n_v / n_k) (``repeat_interleave``); the state is [d_k, d_v] per
value head, as ours; out = (RMSNorm_head(o) · w ⊙ SiLU(x W_z)) W_out. A depthwise conv over concatenated
channels is three depthwise convs over the parts, so the one conv weight is split into ours for q, k and v.
"""

from __future__ import annotations

import torch

from ..mixers.gated_delta import GatedDeltaConfig
from ..mixers.softmax import SoftmaxConfig
from .source_config import SourceConfig
from .tensors import Tensors

LINEAR, FULL = "linear_attention", "full_attention"


def layer_types(cfg: SourceConfig, n_layers: int) -> list[str]:
    kinds = cfg.get("layer_types")
    if not isinstance(kinds, list) or len(kinds) != n_layers or not set(kinds) <= {LINEAR, FULL}:
        raise ValueError(f"{cfg.where}: layer_types must list {n_layers} entries, each {LINEAR!r} or {FULL!r}; "
                         f"got {kinds!r}")
    return kinds


def read_common(cfg: SourceConfig) -> dict:
    """The ModelConfig fields every layer shares: RMSNorm, a SwiGLU MLP of ``intermediate_size``, no
    positional embedding (rotary positions live in the attention layers), an unbiased head."""
    cfg.ignore("attention_dropout")  # training only
    cfg.get("hidden_act", "silu", allowed=["silu"])  # the MLP's gate and the conv's activation
    return dict(
        d_vocab=cfg.get("vocab_size"), d_model=cfg.get("hidden_size"), n_layers=cfg.get("num_hidden_layers"),
        n_ctx=cfg.data.get("max_position_embeddings") or 2048, norm="rmsnorm", mlp="swiglu",
        d_mlp=cfg.get("intermediate_size"), positional="none", norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
    )


def linear_sizes(cfg: SourceConfig) -> tuple[int, int, int, int]:
    """(value heads, key heads, key width, value width) of the Gated DeltaNet layers."""
    n_v, n_k = cfg.get("linear_num_value_heads"), cfg.get("linear_num_key_heads")
    d_k, d_v = cfg.get("linear_key_head_dim"), cfg.get("linear_value_head_dim")
    if n_v % n_k:
        raise ValueError(f"{cfg.where}: linear_num_value_heads = {n_v} must be a multiple of linear_num_key_heads "
                         f"= {n_k}")
    return n_v, n_k, d_k, d_v


def gated_delta_config(cfg: SourceConfig, *, allow_neg_eigval: bool = False, output_norm_eps: float = 0.0
                       ) -> GatedDeltaConfig:
    n_v, n_k, d_k, d_v = linear_sizes(cfg)
    conv = cfg.get("linear_conv_kernel_dim", 4)
    if not isinstance(conv, int) or conv < 1:
        raise ValueError(f"{cfg.where}: linear_conv_kernel_dim must be a positive int, got {conv!r}")
    return GatedDeltaConfig(qk_norm="l2_rsqrt", conv_size=conv, allow_neg_eigval=allow_neg_eigval, output_gate=True,
                            gate_activation="silu", d_head_v=0 if d_v == d_k else d_v,
                            n_qk_heads=0 if n_k == n_v else n_k, output_norm_eps=output_norm_eps)


def rope(cfg: SourceConfig, head_dim: int) -> tuple[float, int]:
    """(rotary base, rotated channels per head; 0: all) from ``rope_parameters`` (transformers 5) or the
    top-level ``rope_theta`` / ``partial_rotary_factor`` / ``rope_scaling`` (transformers 4); base 0: no rotary
    positions (OLMo-hybrid's released checkpoints: ``rope_parameters`` null or without ``rope_theta``)."""
    params = cfg.get("rope_parameters", None)
    scaling = cfg.get("rope_scaling", None)
    if params is None:
        params = dict(scaling or {})
        for key in ("rope_theta", "partial_rotary_factor"):
            if key in cfg.data:
                params.setdefault(key, cfg.get(key))
    cfg.ignore("rope_theta", "partial_rotary_factor")
    if not isinstance(params, dict):
        raise ValueError(f"{cfg.where}: rope_parameters must be an object, got {params!r}")
    # mrope_section / mrope_interleaved (Qwen3.5): the multimodal 3-D positions; for text the three position
    # streams are equal and the recomposed frequencies are plain 1-D rotary positions
    unknown = sorted(set(params) - {"rope_type", "type", "rope_theta", "partial_rotary_factor", "mrope_section",
                                    "mrope_interleaved"})
    if unknown:
        raise ValueError(f"{cfg.where}: rope_parameters {unknown} are not supported by workbench (only the default "
                         "rotary positions are)")
    kind = params.get("rope_type", params.get("type", "default"))
    if kind != "default":
        raise ValueError(f"{cfg.where}: rope_type = {kind!r} is not supported by workbench (only 'default')")
    base = params.get("rope_theta")
    if base is None:
        return 0.0, 0
    factor = params.get("partial_rotary_factor", 1.0)
    dim = int(head_dim * factor)
    if dim % 2 or dim < 2:
        raise ValueError(f"{cfg.where}: head_dim · partial_rotary_factor = {dim} rotated channels must be even")
    return float(base), 0 if dim == head_dim else dim


def attention_config(cfg: SourceConfig, n_heads: int, d_head: int, *, qk_rmsnorm: str, output_gate: bool
                     ) -> SoftmaxConfig:
    """A full-attention layer: ``num_attention_heads`` heads of ``head_dim``, ``num_key_value_heads`` grouped KV
    heads, rotary positions, QK-norm; heads and width stored only where they differ from the linear layers'."""
    cfg.refuse("attention_bias", "biases on the attention projections are not supported", harmless=(None, False))
    heads = cfg.get("num_attention_heads")
    width = cfg.get("head_dim", None) or cfg.get("hidden_size") // heads
    kv = cfg.get("num_key_value_heads", None) or heads
    base, rotary_dim = rope(cfg, width)
    return SoftmaxConfig(n_kv_heads=0 if kv == heads else kv, rotary_base=base, rotary_dim=rotary_dim,
                         qk_rmsnorm=qk_rmsnorm, output_gate=output_gate, n_heads=0 if heads == n_heads else heads,
                         d_head=0 if width == d_head else width)


def heads_in(w: torch.Tensor, heads: int, width: int) -> torch.Tensor:
    """nn.Linear weight ``[heads·width, d_model]`` → ours ``[heads, d_model, width]``."""
    return w.reshape(heads, width, -1).permute(0, 2, 1)


def norm_weight(src: Tensors, name: str, d: int, zero_centred: bool) -> torch.Tensor:
    """An RMSNorm gain; a zero-centred one (Qwen3-Next / Qwen3.5: output · (1 + w)) as ours 1 + w, in float32."""
    w = src.take(name, (d,)).to(torch.float32)
    return 1.0 + w if zero_centred else w


def embedding_tensors(cfg: SourceConfig, src: Tensors, prefix: str, d_vocab: int, d_model: int, *,
                      zero_centred: bool, ties: bool = True) -> dict[str, torch.Tensor]:
    """Embedding, final norm and head (``lm_head`` = the embedding when tied; ``ties=False``: a model class that
    declares no tied weights, whose ``lm_head`` is its own whatever ``tie_word_embeddings`` says)."""
    w_e = src.take(prefix + "embed_tokens.weight", (d_vocab, d_model))
    out = {"embed.W_E": w_e, "unembed.b_U": torch.zeros(d_vocab),
           "ln_final.w": norm_weight(src, prefix + "norm.weight", d_model, zero_centred)}
    if not ties:
        cfg.ignore("tie_word_embeddings")
    if ties and cfg.get("tie_word_embeddings", False, allowed=[True, False]):
        src.drop("lm_head.weight")
        out["unembed.W_U"] = w_e.T.clone()
    else:
        out["unembed.W_U"] = src.take("lm_head.weight", (d_vocab, d_model)).T
    return out


def mlp_tensors(src: Tensors, p: str, q: str, d_model: int, d_mlp: int, prefix: str = "mlp."
                ) -> dict[str, torch.Tensor]:
    """``{p}{prefix}{gate,up,down}_proj`` → our SwiGLU ``{q}{prefix}*`` (act(gate)·up, then down)."""
    p, q = p + prefix, q + prefix
    return {
        q + "W_gate": src.take(p + "gate_proj.weight", (d_mlp, d_model)).T,
        q + "W_in": src.take(p + "up_proj.weight", (d_mlp, d_model)).T,
        q + "b_in": torch.zeros(d_mlp),
        q + "W_out": src.take(p + "down_proj.weight", (d_model, d_mlp)).T,
        q + "b_out": torch.zeros(d_model),
    }


def take_either(src: Tensors, names: tuple[str, ...], shape: tuple[int, ...]) -> torch.Tensor:
    """The first of ``names`` the checkpoint has (one tensor saved under different names by different
    versions); the others must be absent."""
    present = [n for n in names if n in src]
    if len(present) > 1:
        raise ValueError(f"{src.where} has both {present}; they are one tensor")
    return src.take(present[0] if present else names[0], shape)


def conv_weight(src: Tensors, p: str, channels: int, size: int) -> torch.Tensor:
    """The conv over [q | k | v]: ``conv1d.weight``, or ``q_conv1d``, ``k_conv1d``, ``v_conv1d`` concatenated (the
    OLMo-core / fla layout transformers converts from on load). transformers 5.x writes those three back as
    ``torch.chunk`` pieces of equal size rather than the q, k, v parts, so only their concatenation is checked."""
    if p + "conv1d.weight" in src:
        return src.take(p + "conv1d.weight", (channels, 1, size))
    parts = []
    for n in ("q", "k", "v"):
        name = p + f"{n}_conv1d.weight"
        if name not in src:
            raise ValueError(f"{src.where} has neither {p}conv1d.weight nor {name}")
        parts.append(src.take(name, (src.shape(name)[0], 1, size)))
    w = torch.cat(parts)
    if w.shape[0] != channels:
        raise ValueError(f"{src.where}: {p}{{q,k,v}}_conv1d.weight have {w.shape[0]} channels together, the config "
                         f"implies {channels}")
    return w


def gated_delta_tensors(cfg: SourceConfig, src: Tensors, p: str, q: str, d_model: int, *, layout: str,
                        names: dict[str, str]) -> dict[str, torch.Tensor]:
    """One Gated DeltaNet layer (source names under ``p``) as our mixer's (under ``q``). ``layout`` of the input
    projections: ``"qkv"`` one ``in_proj_qkv`` [q | k | v] (Qwen3.5), ``"separate"`` ``q_proj``, ``k_proj``,
    ``v_proj`` (OLMo), ``"qkvz"`` Qwen3-Next's ``in_proj_qkvz`` and ``in_proj_ba``, grouped by key head (per key
    head: its q, its k, then the v and z of its n_v/n_k value heads; its b, then its a). ``names`` maps our roles
    ``z a b out norm`` to the source's names (z, a, b unused with "qkvz")."""
    n_v, n_k, d_k, d_v = linear_sizes(cfg)
    kd, vd = n_k * d_k, n_v * d_v
    g = n_v // n_k
    if layout == "qkvz":  # transformers' Qwen3NextGatedDeltaNet.fix_query_key_value_ordering
        w = src.take(p + "in_proj_qkvz.weight", (2 * kd + 2 * vd, d_model)).reshape(n_k, 2 * d_k + 2 * g * d_v, d_model)
        w_q, w_k, w_v, w_z = (t.reshape(-1, d_model) for t in w.split([d_k, d_k, g * d_v, g * d_v], dim=1))
        ba = src.take(p + "in_proj_ba.weight", (2 * n_v, d_model)).reshape(n_k, 2 * g, d_model)
        w_b, w_a = (t.reshape(n_v, d_model) for t in ba.split([g, g], dim=1))
    else:
        if layout == "qkv":
            w_q, w_k, w_v = src.take(p + "in_proj_qkv.weight", (2 * kd + vd, d_model)).split([kd, kd, vd])
        else:
            w_q, w_k, w_v = (src.take(p + f"{n}_proj.weight", (w, d_model))
                             for n, w in (("q", kd), ("k", kd), ("v", vd)))
        w_z = src.take(p + names["z"] + ".weight", (vd, d_model))
        w_b = src.take(p + names["b"] + ".weight", (n_v, d_model))
        w_a = src.take(p + names["a"] + ".weight", (n_v, d_model))
    conv = cfg.get("linear_conv_kernel_dim", 4)
    c_q, c_k, c_v = conv_weight(src, p, 2 * kd + vd, conv).split([kd, kd, vd])
    return {
        q + "W_Q": heads_in(w_q, n_k, d_k), q + "W_K": heads_in(w_k, n_k, d_k), q + "W_V": heads_in(w_v, n_v, d_v),
        q + "conv_q.weight": c_q, q + "conv_k.weight": c_k, q + "conv_v.weight": c_v,
        q + "W_G": heads_in(w_z, n_v, d_v),
        q + "W_beta": w_b.T, q + "b_beta": torch.zeros(n_v), q + "W_a": w_a.T,
        q + "A_log": src.take(p + "A_log", (n_v,)), q + "dt_bias": src.take(p + "dt_bias", (n_v,)),
        q + "w_norm": src.take(p + names["norm"] + ".weight", (d_v,)),
        q + "W_O": src.take(p + names["out"] + ".weight", (d_model, vd)).T.reshape(n_v, d_v, d_model),
        q + "b_O": torch.zeros(d_model),
    }


def attention_tensors(m: SoftmaxConfig, src: Tensors, p: str, q: str, d_model: int, n_heads: int, d_head: int, *,
                      zero_centred: bool) -> dict[str, torch.Tensor]:
    """One attention layer. With ``m.output_gate`` (Qwen3-Next / Qwen3.5) ``q_proj`` is ``[heads·2·d_head,
    hidden]``: per head its d_head query rows, then its d_head gate rows."""
    h, dh = m.n_heads or n_heads, m.d_head or d_head
    hkv = m.n_kv_heads or h
    out = {}
    if m.output_gate:
        w = src.take(p + "q_proj.weight", (h * 2 * dh, d_model)).reshape(h, 2, dh, d_model)
        out[q + "W_Q"], out[q + "W_G"] = w[:, 0].permute(0, 2, 1), w[:, 1].permute(0, 2, 1)
    else:
        out[q + "W_Q"] = heads_in(src.take(p + "q_proj.weight", (h * dh, d_model)), h, dh)
    out[q + "W_K"] = heads_in(src.take(p + "k_proj.weight", (hkv * dh, d_model)), hkv, dh)
    out[q + "W_V"] = heads_in(src.take(p + "v_proj.weight", (hkv * dh, d_model)), hkv, dh)
    out[q + "W_O"] = src.take(p + "o_proj.weight", (d_model, h * dh)).T.reshape(h, dh, d_model)
    out[q + "b_O"] = torch.zeros(d_model)
    if m.qk_rmsnorm != "none":
        every = m.qk_rmsnorm == "all"
        out[q + "q_norm.w"] = norm_weight(src, p + "q_norm.weight", h * dh if every else dh, zero_centred)
        out[q + "k_norm.w"] = norm_weight(src, p + "k_norm.weight", hkv * dh if every else dh, zero_centred)
    return out
