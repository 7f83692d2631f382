"""The Kimi Delta Attention mixer (``kda``): Gated DeltaNet with a decay per key channel. Its read-out against a
float64 loop over its own cached inputs, exact effective attention, patched writes, and Gated DeltaNet as the
case of one decay per head."""

from __future__ import annotations

import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import effective_attention, fast_weights

TOKENS = torch.randint(0, 29, (2, 45), generator=torch.Generator().manual_seed(0))


def model(mixer: str = "kda", **kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=29, d_model=32, n_layers=2, n_heads=2, d_head=8, d_mlp=32, chunk_size=16, init_std=0.2,
                      mixer={"kind": mixer, "output_gate": True, "d_head_v": 12, **kw}, norm="rmsnorm", mlp="swiglu",
                      positional="none")
    m = HookedFastWeightLM(cfg).eval()
    with torch.no_grad():  # a mild decay that differs across channels
        for block in m.blocks:
            block.attn.A_log.uniform_(-3.0, -1.0)
    return m


def test_the_read_out_is_the_per_channel_recurrence_of_its_inputs():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    a = "blocks.1.attn."
    q = cache[a + "hook_q"].double() * m.mixer(1).scale
    k, v, beta, g = (cache[a + n].double() for n in ("hook_k", "hook_v", "hook_beta", "hook_log_decay"))
    assert g.shape == (2, 45, 2, 8) and (g <= 0).all() and g.std(-1).mean() > 0  # one decay per key channel
    S = torch.zeros(2, 2, 8, 12, dtype=torch.float64)
    states = []
    for t in range(45):
        S = S * g[:, t].exp()[..., None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None]
        assert rel_err(cache[a + "hook_z"][:, t], torch.einsum("bhk,bhkv->bhv", q[:, t], S)) <= 1e-5, t
        states.append(S)
    ours = fast_weights(m, TOKENS, 1, [0, 20, 44])
    for j, t in enumerate([0, 20, 44]):
        assert rel_err(ours[:, j], states[t]) <= 1e-5


def test_effective_attention_is_exact_and_backends_agree():
    m = model()
    logits, cache = m.run_with_cache(TOKENS)
    for layer in range(2):
        A = effective_attention(m, TOKENS, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", A, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel_err(z, cache[f"blocks.{layer}.attn.hook_z"]) <= 1e-5
    ref = HookedFastWeightLM(m.cfg.replace(backend="reference"), init=False)
    ref.load_state_dict(m.state_dict())
    assert rel_err(ref.eval()(TOKENS), logits) <= 1e-5


def test_replayed_writes_give_the_same_read_out():
    """Patching hook_delta with the same writes takes the read-out-from-writes path (per-channel decay)."""
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_delta", lambda u, hook: u * 1.0)]):
        _, again = m.run_with_cache(TOKENS)
    assert rel_err(again["blocks.0.attn.hook_z"], cache["blocks.0.attn.hook_z"]) <= 1e-5


def test_gated_deltanet_is_the_case_of_one_decay_per_head():
    gdn = model("gated_delta")
    kda = HookedFastWeightLM(gdn.cfg.replace(mixer=gdn.cfg.mixer.to_dict() | {"kind": "kda"}), init=False).eval()
    state = dict(gdn.state_dict())
    for i in range(2):  # every key channel of a head gets its head's decay
        p = f"blocks.{i}.attn."
        state[p + "W_a"] = state[p + "W_a"].repeat_interleave(8, dim=1)
        state[p + "dt_bias"] = state[p + "dt_bias"].repeat_interleave(8)
    kda.load_state_dict(state)
    assert rel_err(kda(TOKENS), gdn(TOKENS)) <= 1e-5
