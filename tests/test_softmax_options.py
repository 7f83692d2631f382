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


# ---------------------------------------------------------------- the fused path when nothing observes the pattern
def _pattern_run(model, tokens, **kw):
    """The forward through the scores and pattern hooks (a hook that returns its input unchanged observes them)."""
    keep = lambda t, hook: t  # noqa: E731
    return model.run_with_hooks(tokens, fwd_hooks=[(lambda n: n.endswith(("hook_pattern", "hook_attn_scores")), keep)],
                                **kw)


def test_the_fused_path_equals_the_pattern_path():
    for mixer in ("softmax", SoftmaxConfig(window=3), SoftmaxConfig(n_kv_heads=2, rotary_base=10_000)):
        model = HookedFastWeightLM(ModelConfig(**BASE, mixer=mixer, init_std=0.3)).double()
        torch.testing.assert_close(model(TOKENS), _pattern_run(model, TOKENS), rtol=1e-12, atol=1e-12)


def test_the_fused_path_equals_the_pattern_path_when_stepping():
    model = HookedFastWeightLM(ModelConfig(**BASE, mixer=SoftmaxConfig(window=4), init_std=0.3)).double()
    full = model(TOKENS)
    for observe in (False, True):
        cache, outs = model.init_cache(), []
        for t in range(TOKENS.shape[1]):
            step = TOKENS[:, t : t + 1]
            outs.append(_pattern_run(model, step, past_kv_cache=cache) if observe else model(step, past_kv_cache=cache))
        torch.testing.assert_close(torch.cat(outs, 1), full, rtol=1e-10, atol=1e-10)


def test_a_hook_on_the_pattern_is_honoured():
    """The fused path is taken only when nothing observes the pattern: a hook that edits it changes the output."""
    model = HookedFastWeightLM(ModelConfig(**BASE, mixer="softmax", init_std=0.3))
    uniform = lambda p, hook: torch.tril(torch.ones_like(p)) / torch.tril(torch.ones_like(p)).sum(-1, keepdim=True)  # noqa: E731
    edited = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_pattern", uniform)])
    assert (edited - model(TOKENS)).abs().max() > 1e-3
    _, cache = model.run_with_cache(TOKENS)
    assert cache["blocks.0.attn.hook_pattern"].shape == (2, 4, 13, 13)


def test_observed_sees_hooks_of_every_kind():
    from torch import nn

    from workbench.components.observed import observed

    point = nn.Identity()
    assert not observed(point)
    for register in (lambda: point.register_forward_hook(lambda *a: None),
                     lambda: point.register_forward_pre_hook(lambda *a: None),
                     lambda: point.register_full_backward_hook(lambda *a: None),
                     lambda: nn.modules.module.register_module_forward_hook(lambda *a: None)):
        handle = register()
        assert observed(point)
        handle.remove()
        assert not observed(point)
    point.forward = lambda x: x  # what nnsight installs on every module it wraps
    assert observed(point)
