"""Softmax attention's options (grouped KV heads, rotary positions, window, q/k/v biases, own head sizes),
checked against the plain mixer and against properties that define them; the match with fla's attention is
in tests/test_pretrained_fla.py."""

from __future__ import annotations

import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.checkpoint import model_from_tensors
from workbench.components.rotary import rotate
from workbench.mixers.softmax import SoftmaxConfig

BASE = dict(d_vocab=23, d_model=32, n_layers=1, n_heads=4, d_head=8, d_mlp=16, positional="none")
TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))


def test_grouped_kv_heads_equal_plain_attention_with_repeated_kv_weights():
    gqa = HookedFastWeightLM(ModelConfig(**BASE, mixer=SoftmaxConfig(n_kv_heads=2), init_std=0.3))
    sd = gqa.state_dict()
    for name in ("W_K", "W_V"):
        sd[f"blocks.0.attn.{name}"] = sd[f"blocks.0.attn.{name}"].repeat_interleave(2, dim=0)
    plain = model_from_tensors(ModelConfig(**BASE, mixer="softmax", init_std=0.3), sd)
    torch.testing.assert_close(gqa(TOKENS), plain(TOKENS), rtol=1e-5, atol=1e-6)


def test_window_masks_keys_further_back():
    model = HookedFastWeightLM(ModelConfig(**BASE, mixer=SoftmaxConfig(window=3), init_std=0.3))
    _, cache = model.run_with_cache(TOKENS)
    pattern = cache["blocks.0.attn.hook_pattern"]  # [batch, head, pos, pos]
    q, k = torch.meshgrid(torch.arange(13), torch.arange(13), indexing="ij")
    assert (pattern[..., (k > q) | (k <= q - 3)] == 0).all()
    assert (pattern[..., (k <= q) & (k > q - 3)] > 0).all()


def test_rotary_scores_depend_on_the_offset_only():
    gen = torch.Generator().manual_seed(1)
    q, k = torch.randn(1, 1, 1, 8, generator=gen), torch.randn(1, 1, 1, 8, generator=gen)
    seq = torch.zeros(1, 12, 2, 8)

    def score(i, j):
        x = seq.clone()
        x[0, i, 0], x[0, j, 1] = q[0, 0, 0], k[0, 0, 0]
        r = rotate(x, 500.0)
        return (r[0, i, 0] * r[0, j, 1]).sum()

    torch.testing.assert_close(score(5, 2), score(9, 6))
    assert not torch.isclose(score(5, 2), score(5, 4))
    torch.testing.assert_close(score(3, 3), (q * k).sum())  # no offset: no rotation between them


def test_biases_and_own_head_sizes_load_and_round_trip(tmp_path):
    import workbench

    cfg = ModelConfig(**{**BASE, "n_layers": 2}, mixer=["delta", SoftmaxConfig(n_heads=2, d_head=16, qkv_bias=True,
                                                                                rotary_base=1e4)])
    model = HookedFastWeightLM(cfg)
    assert model.blocks[1].attn.W_Q.shape == (2, 32, 16) and model.blocks[1].attn.b_K.shape == (2, 16)
    workbench.save(model, tmp_path)
    again = workbench.load(tmp_path)
    assert torch.equal(again(TOKENS), model(TOKENS))

