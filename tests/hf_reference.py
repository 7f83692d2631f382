"""Tiny random-weight transformers models (Qwen3.5, OLMo-hybrid, Qwen3-Next, Kimi Linear, Mamba-2, Nemotron-H) built offline with transformers' own config and
model classes, saved as transformers saves them, and their outputs: the reference half of
tests/test_pretrained_hf.py. Run as a script it prints the parity table of docs/pretrained.md:

    OMP_NUM_THREADS=1 .venv/bin/python tests/hf_reference.py

Weights are drawn with std 0.2 (initializer_range) so that q, k, β and the gates vary across tokens; every norm
gain is moved off its initial value (transformers initialises Qwen3.5's zero-centred gains to 0, which would
hide a missing 1 + w) and A_log is drawn so that the decay is mild (as tests/foreign_models.tiny_qwen3_next).
transformers runs its torch fallbacks on the CPU (the chunked gated delta rule, the causal conv).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch

T, BATCH = 70, 2  # crosses a chunk boundary (transformers' and ours: 64)
STATE_POSITIONS = [0, 33, 69]
VOCAB = 61

_TEXT = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_attention_heads=2, num_key_value_heads=1,
             head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8,
             linear_value_head_dim=16, linear_conv_kernel_dim=4, initializer_range=0.2,
             pad_token_id=0, bos_token_id=0, eos_token_id=0)
_THREE = ["linear_attention", "full_attention", "linear_attention"]

# name → (transformers config class, model class, config kwargs)
CASES = {
    # partial rotary (the default 0.25), grouped KV heads, grouped value heads, d_v ≠ d_k
    "qwen3_5_text": ("Qwen3_5TextConfig", "Qwen3_5ForCausalLM", dict(num_hidden_layers=3, layer_types=_THREE)),
    "qwen3_5_text_tied_full_rotary": ("Qwen3_5TextConfig", "Qwen3_5ForCausalLM", dict(
        num_hidden_layers=2, layer_types=["full_attention", "linear_attention"], num_key_value_heads=2,
        linear_value_head_dim=8, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=500.0, partial_rotary_factor=1.0))),
    # the released layout: Qwen3_5ForConditionalGeneration with a (tiny) vision tower, tied head
    "qwen3_5_multimodal": ("Qwen3_5Config", "Qwen3_5ForConditionalGeneration", dict(num_hidden_layers=2,
                                                                                 layer_types=_THREE[:2])),
    "olmo_hybrid": ("OlmoHybridConfig", "OlmoHybridForCausalLM", dict(num_hidden_layers=3, layer_types=_THREE)),
    "olmo_hybrid_nope_posneg_tied": ("OlmoHybridConfig", "OlmoHybridForCausalLM", dict(
        num_hidden_layers=3, layer_types=["linear_attention", "linear_attention", "full_attention"],
        num_key_value_heads=2, linear_allow_neg_eigval=False, tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=None))),
    # sparse mixture-of-experts MLPs (router, top-k experts, shared expert and its gate) in every layer
    "qwen3_next": ("Qwen3NextConfig", "Qwen3NextForCausalLM", dict(
        num_hidden_layers=3, layer_types=_THREE, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=24,
        shared_expert_intermediate_size=40)),
    # MoE in every second layer except those in mlp_only_layers (dense SwiGLU there), unnormalised top-k weights
    "qwen3_next_sparse_step_dense_layers": ("Qwen3NextConfig", "Qwen3NextForCausalLM", dict(
        num_hidden_layers=4, layer_types=_THREE + ["full_attention"], num_experts=6, num_experts_per_tok=3,
        moe_intermediate_size=16, shared_expert_intermediate_size=24, decoder_sparse_step=2, mlp_only_layers=[3],
        norm_topk_prob=False)),
    # Kimi Delta Attention (per-channel decay), MLA without a query latent, grouped sigmoid routing with a
    # correction bias, dense first layer
    "kimi_linear": ("KimiLinearConfig", "KimiLinearForCausalLM", dict(
        num_hidden_layers=3, layer_types=_THREE, mlp_layer_types=["dense", "sparse", "sparse"])),
    # a query latent, MLA heads ≠ KDA heads, d_v = d_nope, one expert group, unnormalised weights;
    # tie_word_embeddings, which KimiLinearForCausalLM does not honour (it declares no tied weights)
    "kimi_linear_q_lora_tie_ignored": ("KimiLinearConfig", "KimiLinearForCausalLM", dict(
        num_hidden_layers=2, layer_types=["full_attention", "linear_attention"], mlp_layer_types=["sparse", "dense"],
        q_lora_rank=10, num_attention_heads=4, num_key_value_heads=4, v_head_dim=8, n_group=1, topk_group=1,
        norm_topk_prob=False, tie_word_embeddings=True)),
    # Mamba-2: B/C shared by groups of heads, state_size ≠ head_dim, a conv bias, transformers' scan chunk 16
    "mamba2": ("Mamba2Config", "Mamba2ForCausalLM", dict(num_hidden_layers=2, n_groups=2)),
    # one group, in/out projection biases, no conv bias, tied head, a clamped step
    "mamba2_one_group_bias_tied_dtlimit": ("Mamba2Config", "Mamba2ForCausalLM", dict(
        num_hidden_layers=2, n_groups=1, state_size=8, use_bias=True, use_conv_bias=False, tie_word_embeddings=True,
        time_step_limit=(0.01, 0.3))),
    # Nemotron-H: one branch per block. Mamba-2 (M), grouped-query attention without rotary positions (*), squared-ReLU
    # MLP (-) and mixture of experts (E: sigmoid router with correction bias, two expert groups, a shared expert)
    "nemotron_h": ("NemotronHConfig", "NemotronHForCausalLM", dict(
        layers_block_type=["linear_attention", "mlp", "full_attention", "moe", "linear_attention", "mlp"])),
    # the older hybrid_override_pattern, biases everywhere (use_bias, mlp_bias), no conv bias, one group of B/C,
    # d_head_v = state size, an attention-first layout, unnormalised top-k weights scaled by 2.5, a larger dt floor
    "nemotron_h_pattern_bias": ("NemotronHConfig", "NemotronHForCausalLM", dict(
        hybrid_override_pattern="*M-ME", n_groups=1, ssm_state_size=8, use_bias=True, mlp_bias=True,
        use_conv_bias=False, num_key_value_heads=4, norm_topk_prob=False, routed_scaling_factor=2.5, n_group=1,
        topk_group=1, time_step_min=0.05)),
}

_MAMBA = dict(vocab_size=VOCAB, hidden_size=32, num_heads=8, head_dim=8, expand=2, state_size=12, conv_kernel=4,
              chunk_size=16, initializer_range=0.2, pad_token_id=0, bos_token_id=0, eos_token_id=0)

_NEMOTRON = dict(vocab_size=VOCAB, hidden_size=32, num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                 intermediate_size=48, ssm_state_size=12, mamba_num_heads=8, mamba_head_dim=8, n_groups=2, conv_kernel=4,
                 chunk_size=16, n_routed_experts=6, num_experts_per_tok=2, moe_intermediate_size=16,
                 moe_shared_expert_intermediate_size=24, n_group=2, topk_group=1, routed_scaling_factor=1.5,
                 initializer_range=0.2, pad_token_id=0, bos_token_id=0, eos_token_id=0)

_KIMI = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, moe_intermediate_size=16, num_attention_heads=2,
             num_key_value_heads=2, n_shared_experts=1, routed_scaling_factor=2.0, kv_lora_rank=12, q_lora_rank=None,
             qk_rope_head_dim=4, v_head_dim=10, qk_nope_head_dim=8, n_group=2, topk_group=1, num_experts_per_tok=2,
             num_local_experts=6, linear_head_dim=8, linear_num_heads=2, linear_conv_kernel_dim=4,
             initializer_range=0.2, pad_token_id=0, bos_token_id=0, eos_token_id=0)

_VISION = dict(depth=1, hidden_size=16, intermediate_size=32, num_heads=2, out_hidden_size=32, patch_size=4,
               num_position_embeddings=16)


def tokens() -> torch.Tensor:
    return torch.randint(0, VOCAB, (BATCH, T), generator=torch.Generator().manual_seed(0))


# transformers' pure-torch kernels of these models; with flash-linear-attention (and Triton) or causal-conv1d
# importable, transformers binds these names to those packages' kernels at import time
# (integrations/hub_kernels.py, use_kernel_func_from_hub_with_fallback); the torch function stays as __wrapped__
_TORCH_PATHS = ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule", "causal_conv1d_fn",
                "causal_conv1d_update", "chunk_kimi_delta_attention", "recurrent_kimi_delta_attention",
                "mamba2_chunk_scan", "mamba2_selective_state_update", "mamba2_split_conv1d_scan_combined")
_MODELING = ("qwen3_5", "olmo_hybrid", "qwen3_next", "kimi_linear", "mamba2", "nemotron_h")


def torch_fallbacks() -> None:
    """Point every modeling module's kernel names at transformers' own torch functions (the reference here)."""
    import importlib

    for model in _MODELING:
        module = importlib.import_module(f"transformers.models.{model}.modeling_{model}")
        for name in _TORCH_PATHS:
            fn = getattr(module, name, None)
            if fn is not None and hasattr(fn, "__wrapped__"):
                setattr(module, name, fn.__wrapped__)


def build(name: str, seed: int = 0):
    """The transformers model of case ``name`` (random weights, seeded), run on transformers' torch paths."""
    import transformers

    torch_fallbacks()
    config_cls, model_cls, kw = CASES[name]
    torch.manual_seed(seed)
    if config_cls == "Mamba2Config":
        cfg = transformers.Mamba2Config(**{**_MAMBA, **kw})
    elif config_cls == "NemotronHConfig":
        cfg = transformers.NemotronHConfig(**{**_NEMOTRON, **kw})
    elif config_cls == "KimiLinearConfig":
        cfg = transformers.KimiLinearConfig(**{**_KIMI, **kw})
    elif config_cls == "Qwen3_5Config":
        cfg = transformers.Qwen3_5Config(text_config={**_TEXT, **kw}, vision_config=_VISION, tie_word_embeddings=True)
    else:
        cfg = getattr(transformers, config_cls)(**{**_TEXT, **kw})
    model = getattr(transformers, model_cls)(cfg).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if "visual" in pname:
                continue
            if pname.endswith("norm.weight"):  # every RMSNorm gain, zero-centred or not, off its initial value
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
            elif pname.endswith("A_log"):  # a mild decay: A ∈ [0.02, 0.5]
                p.copy_(torch.empty(p.shape).uniform_(0.02, 0.5, generator=gen).log())
            elif pname.endswith("mixer.D") or pname.endswith("mixer.dt_bias"):  # Mamba-2's skip and step
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5 + (0.0 if pname.endswith("D") else -1.0))
            elif pname.endswith("mlp.gate.weight") or pname.endswith("mixer.gate.weight"):  # the MoE router: distinct
                # experts for distinct tokens
                p.copy_(torch.randn(p.shape, generator=gen))
        for bname, buf in model.named_buffers():
            if bname.endswith("e_score_correction_bias"):  # Kimi's routing bias (zeros at init)
                buf.copy_(torch.randn(buf.shape, generator=gen) * 0.1)
    return model


def _language_model(model):
    inner = getattr(model, "model", None) or model.backbone  # Mamba2ForCausalLM: .backbone
    return getattr(inner, "language_model", inner)


@torch.no_grad()
def reference(model, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    """``logits``, ``hidden_{i}`` (block i's input; the last after the final norm) and ``state_{layer}_{pos}`` (the
    recurrent state [batch, head, d_k, d_v] in the cache after ids[:, :pos + 1])."""
    out = model(input_ids=ids, output_hidden_states=True)
    ref = {"logits": out.logits}
    hidden = list(out.hidden_states)
    mamba = model.config.model_type in ("mamba2", "nemotron_h")  # Mamba-2's state layout (below)
    if model.config.model_type == "mamba2":  # Mamba2Model's hidden_states are each block's output, then the final norm: make them block inputs
        n = model.config.num_hidden_layers
        hidden = [_language_model(model).embeddings(ids)] + hidden[: n - 1] + [hidden[n]]
    ref.update({f"hidden_{i}": h for i, h in enumerate(hidden)})
    kinds = _language_model(model).config.layer_types
    for pos in STATE_POSITIONS:
        past = model(input_ids=ids[:, : pos + 1], use_cache=True)
        cache = past.cache if mamba else past.past_key_values  # transformers 5.2x names Mamba models' cache "cache"
        for layer, kind in enumerate(kinds):
            if kind == "linear_attention":
                state = cache.get_recurrent_state(layer).clone()
                # Mamba-2 keeps [head, head_dim, state_size]: ours is [d_k = state_size, d_v = head_dim]
                ref[f"state_{layer}_{pos}"] = state.transpose(-1, -2) if mamba else state
    return ref


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def errors(ours, ref: dict[str, torch.Tensor], ids: torch.Tensor) -> dict[str, float]:
    """Largest relative errors of ``ours`` (a HookedFastWeightLM) against ``ref``: logits, every layer's output,
    states."""
    logits, cache = ours.run_with_cache(ids)
    n = ours.cfg.n_layers
    layers = [rel(cache[f"blocks.{i}.hook_resid_post"], ref[f"hidden_{i + 1}"]) for i in range(n - 1)]
    layers += [rel(cache[f"blocks.{i}.hook_resid_pre"], ref[f"hidden_{i}"]) for i in range(n)]
    layers.append(rel(cache["ln_final.hook_normalized"], ref[f"hidden_{n}"]))
    states = [0.0]
    for layer in ours.fast_weight_layers:
        w = ours.fast_weights(ids, layer, STATE_POSITIONS)  # [batch, n_positions, head, d_k, d_v]
        states += [rel(w[:, j], ref[f"state_{layer}_{pos}"]) for j, pos in enumerate(STATE_POSITIONS)]
    return dict(logits=rel(logits, ref["logits"]), layers=max(layers), states=max(states))


def main() -> None:
    import tempfile

    import workbench

    torch.set_num_threads(1)
    ids = tokens()
    print("| case | logits | every layer's output | states (3 positions × layers) |\n|---|---|---|---|")
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(CASES):
            model = build(name, seed=i)
            model.save_pretrained(Path(tmp) / name, safe_serialization=True)
            err = errors(workbench.from_pretrained(Path(tmp) / name), reference(model, ids), ids)
            print(f"| {name} | {err['logits']:.1e} | {err['layers']:.1e} | {err['states']:.1e} |")
    print(f"\n{time.time() - start:.1f} s")


if __name__ == "__main__":
    main()
