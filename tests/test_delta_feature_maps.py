"""The delta rule with the feature maps of Schlag, Irie & Schmidhuber (2021): DeltaConfig.phi.

q, k = φ(x W) normalised by the sum of their components (or L2), v = x W (no SiLU), and the read-out
against a plain loop over positions written here (the oracle), not the workbench's kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.components.feature_maps import dpfp

TOKENS = torch.randint(0, 29, (2, 37), generator=torch.Generator().manual_seed(1))


def make(**mixer) -> HookedFastWeightLM:
    return HookedFastWeightLM(ModelConfig(d_vocab=29, d_model=32, n_heads=2, d_head=8, d_mlp=48, chunk_size=16,
                                          init_std=0.2, mixer={"kind": "delta", "conv_size": 0, **mixer}))


def loop_delta(q, k, v, beta):  # [batch, pos, head, d] each, beta [batch, pos, head]; read after write
    b, t, h, dk = k.shape
    state = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64)
    out = []
    for i in range(t):
        ki, vi, bi = k[:, i].double(), v[:, i].double(), beta[:, i].double()
        old = torch.einsum("bhk,bhkv->bhv", ki, state)
        state = state + torch.einsum("bhk,bhv->bhkv", ki, bi[..., None] * (vi - old))
        out.append(torch.einsum("bhk,bhkv->bhv", q[:, i].double(), state))
    return torch.stack(out, 1)


@pytest.mark.parametrize("phi,nu,qk_norm,d_k", [("elu1", 1, "sum", 8), ("elu1", 1, "l2", 8), ("dpfp", 2, "sum", 32),
                                                ("dpfp", 3, "sum", 48), ("favor", 1, "sum", 64)])
def test_feature_map_delta_rule_matches_a_loop(phi, nu, qk_norm, d_k):
    model = make(phi=phi, dpfp_nu=nu, qk_norm=qk_norm, favor_features=32)
    assert model.blocks[0].attn.d_k == d_k
    _, cache = model.run_with_cache(TOKENS)
    a = "blocks.0.attn."
    q, k, v, beta = (cache[a + n] for n in ("hook_q", "hook_k", "hook_v", "hook_beta"))
    assert q.shape == k.shape == (2, 37, 2, d_k) and v.shape == (2, 37, 2, 8)
    pre = cache[a + "hook_k_pre"]
    if phi == "elu1":
        phi_k = F.elu(pre) + 1
    elif phi == "dpfp":
        phi_k = dpfp(pre, nu)
    else:
        phi_k = model.blocks[0].attn.feature_map(pre)
    want = phi_k / phi_k.sum(-1, keepdim=True) if qk_norm == "sum" else F.normalize(phi_k, dim=-1)
    assert rel_err(k, want) < 1e-5
    assert torch.allclose(v, cache[a + "hook_v_pre"])  # no SiLU on the values with a feature map
    if qk_norm == "sum":
        assert torch.allclose(k.sum(-1), torch.ones(2, 37, 2), atol=1e-4)
    z = loop_delta(q * d_k ** -0.5, k, v, beta)
    assert rel_err(cache[a + "hook_z"], z.float()) < 1e-5


def test_feature_map_delta_rule_trains_and_round_trips():
    model = make(phi="dpfp", dpfp_nu=2, qk_norm="sum")
    assert model.cfg.mixer_label == "DeltaNet (DPFP-2, sum-normalised)"
    assert ModelConfig.from_json(model.cfg.to_json()) == model.cfg
    loss = model(TOKENS).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters() if p.requires_grad)


def test_silu_default_is_unchanged_and_bad_options_are_refused():
    assert make().cfg.mixer_label == "DeltaNet" and make().blocks[0].attn.d_k == 8
    with pytest.raises(ValueError, match="phi must be one of"):
        make(phi="relu")
    with pytest.raises(ValueError, match="diverges"):
        make(phi="elu1", qk_norm="none")
    with pytest.raises(ValueError, match="dpfp_nu must be < 2·d_head"):
        make(phi="dpfp", dpfp_nu=16)


def test_sum_normalising_signed_keys_is_refused_and_positive_maps_are_not():
    """qk_norm='sum' divides by Σx: on SiLU or identity outputs (signed) Σx can vanish and hook_z reached
    1e24–1e31 at T=100 at initialisation; it is refused there and allowed on positive maps."""
    import pytest

    from workbench import HookedFastWeightLM, ModelConfig

    for act in ("silu", "identity"):
        with pytest.raises(ValueError, match="qk_norm='sum' divides"):
            ModelConfig(d_vocab=23, mixer=dict(kind="delta", qk_norm="sum", qk_activation=act))
    for mixer in (dict(kind="delta", qk_norm="sum", qk_activation="relu"),
                  dict(kind="delta", qk_norm="sum", qk_activation="elu1"),
                  dict(kind="delta", qk_norm="sum", phi="dpfp"), dict(kind="gated_delta", qk_norm="sum", phi="elu1")):
        model = HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=32, n_heads=2, d_head=16, mixer=mixer)).eval()
        _, cache = model.run_with_cache(torch.randint(0, 23, (1, 100), generator=torch.Generator().manual_seed(0)))
        assert cache["blocks.0.attn.hook_z"].abs().max() < 1e3, mixer
