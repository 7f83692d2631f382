"""Tiny transformers models built offline from a config (random, seeded weights) for the foreign-model tests."""

from __future__ import annotations

import torch


def tiny_gpt2(n_layer: int = 3, activation: str = "gelu_new"):
    import transformers

    torch.manual_seed(0)
    cfg = transformers.GPT2Config(vocab_size=64, n_positions=32, n_embd=32, n_layer=n_layer, n_head=4,
                                  activation_function=activation, bos_token_id=0, eos_token_id=0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def tiny_qwen3_next(layer_types=("linear_attention", "linear_attention", "full_attention")):
    """Qwen3-Next with Gated DeltaNet layers of 2 key heads serving 4 value heads (grouped), MoE MLPs.

    Weights are drawn with std 0.2 (instead of 0.02) so that q, k, β and the gate vary across tokens, and
    A_log so that the decay α = exp(g) is mild (exp(−A·softplus(a + dt_bias)) with A ∈ [0.02, 0.5]):
    with transformers' A ∈ [0.01, 16] some heads forget everything at every step.
    """
    import transformers

    torch.manual_seed(0)
    cfg = transformers.Qwen3NextConfig(
        vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=len(layer_types),
        layer_types=list(layer_types), num_attention_heads=2, num_key_value_heads=1, head_dim=16,
        linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=8, linear_value_head_dim=8,
        linear_conv_kernel_dim=4, num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32,
        shared_expert_intermediate_size=32, initializer_range=0.2)
    model = transformers.Qwen3NextForCausalLM(cfg).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.model.layers:
            if hasattr(layer, "linear_attn"):
                layer.linear_attn.A_log.copy_(torch.empty(4).uniform_(0.02, 0.5, generator=gen).log())
    return model


def tiny_llama():
    import transformers

    torch.manual_seed(0)
    cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, initializer_range=0.2)
    return transformers.LlamaForCausalLM(cfg).eval()


def _hybrid(config_cls, model_cls):
    import transformers  # noqa: F401

    torch.manual_seed(0)
    cfg = config_cls(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                     num_key_value_heads=1, head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4,
                     linear_key_head_dim=8, linear_value_head_dim=8, linear_conv_kernel_dim=4,
                     layer_types=["linear_attention", "full_attention"], initializer_range=0.2,
                     pad_token_id=0, bos_token_id=0, eos_token_id=0)
    return model_cls(cfg).eval()


def tiny_qwen3_5():
    """The text model of Qwen3.5 (Gated DeltaNet layers with Qwen3-Next's code, dense MLPs)."""
    import transformers

    return _hybrid(transformers.Qwen3_5TextConfig, transformers.Qwen3_5ForCausalLM)



def opened_tiny_qwen3_5(directory):
    """``tiny_qwen3_5()`` saved as transformers saves it (safetensors) under ``directory`` and opened with
    ``workbench.from_pretrained``, the path a user takes; skips the test where transformers lacks Qwen3.5."""
    import pytest

    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers version lacks Qwen3.5")
    import workbench

    tiny_qwen3_5().save_pretrained(directory / "qwen", safe_serialization=True)
    return workbench.from_pretrained(directory / "qwen")

def tiny_olmo_hybrid():
    """OLMo-hybrid: separate q/k/v/a/b projections and convolutions, the same chunked rule call."""
    import transformers

    return _hybrid(transformers.OlmoHybridConfig, transformers.OlmoHybridForCausalLM)
