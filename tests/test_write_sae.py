"""WriteSAE (analysis/dictionaries): the writes the mixer reports are what its state adds; installing the native
write changes nothing; a dictionary whose atoms are the native writes reproduces the model; the substitution
test and its interval; errors for mixers without rank-one writes; an imported Qwen3.5 checkpoint."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

import workbench
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.dictionaries import (SAEConfig, WriteSAE, WriteSAEConfig, atom_usage, cache_activations,
                                             collect_writes, install_write, spliced_loss, train_sae,
                                             load_dictionary, save_dictionary, state_writes, substitution_test,
                                             train_write_sae, wilson_interval, win_rate, write_reconstruction_metrics)
from workbench.mixers import NotDefinedForMixer, registry
from workbench.mixers.state import start_state

T = 20


def make(mixer: str, n_layers: int = 2) -> HookedFastWeightLM:
    torch.manual_seed(0)
    cfg = dict(d_vocab=29, d_model=32, n_heads=2, d_head=8, d_mlp=48, chunk_size=8, init_std=0.3, mixer=mixer,
               n_layers=n_layers)
    return HookedFastWeightLM(ModelConfig.from_dict(cfg)).double().eval()


def tokens(batch: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 29, (batch, T), generator=torch.Generator().manual_seed(seed))


def has_writes(model, layer=0) -> bool:
    try:
        state_writes(model, tokens(1), layer)
        return True
    except NotDefinedForMixer:
        return False


WRITERS = [n for n in registry.names() if has_writes(make(n, 1))]


def test_the_mixers_with_rank_one_writes():
    assert {"linear", "delta", "gated_delta", "kda", "gla", "mamba2", "rec_delta", "srwm"} <= set(WRITERS)
    assert not {"softmax", "mla", "fwm", "delta_rnn", "delta_lstm"} & set(WRITERS)
    with pytest.raises(NotDefinedForMixer, match="rank-two"):
        state_writes(make("delta_rnn", 1), tokens(), 0)


@pytest.mark.parametrize("name", registry.names())
def test_the_write_is_what_the_state_adds_after_its_decay_or_a_clear_error(name):
    """W_t − k_t u_tᵀ = D_t W_{t-1} with D_t diagonal over key channels, 0 ≤ D ≤ 1 (the identity for the delta
    rule, linear attention and the SRWM, a scalar decay for Gated DeltaNet and Mamba-2, per channel for GLA and
    KDA); W_{-1} is the recurrence's start state."""
    model, ids = make(name, 1), tokens()
    if name not in WRITERS:
        with pytest.raises(NotDefinedForMixer, match="fast-weight|rank-one|state"):
            state_writes(model, ids, 0)
        return
    k, u = state_writes(model, ids, 0)
    assert k.shape == (2, T, 2, model.mixer(0).d_k) and u.shape == (2, T, 2, model.mixer(0).d_v)
    W = model.fast_weights(ids, 0, list(range(T))).double()  # [batch, pos, head, d_k, d_v]
    rest = W - torch.einsum("bphk,bphv->bphkv", k.double(), u.double())
    w_start = start_state(model.mixer(0).recurrence, model.recurrence_inputs(ids, 0))  # W_{-1}: zeros, or SRWM's W_0
    prev = torch.cat([w_start[:, None].to(W), W[:, :-1]], dim=1)
    ratio = (rest * prev).sum(-1) / (prev * prev).sum(-1).clamp_min(1e-30)
    assert (rest - ratio[..., None] * prev).norm() <= 1e-5 * W.norm()
    assert ratio.min() >= -1e-5 and ratio.max() <= 1 + 1e-5
    wrong = rest + torch.einsum("bphk,bphv->bphkv", k.double(), u.double()) * 0.5  # half a write left over
    assert (wrong - ratio[..., None] * prev).norm() > 1e-3 * W.norm()


@pytest.mark.parametrize("name", WRITERS)
def test_installing_the_native_write_changes_nothing_and_removing_it_changes_only_later_positions(name):
    """Up to float32 rounding: the state machinery keeps W_t in float32 (a carry edit that returns W_t itself
    differs from the float64 run by the same ~1e-6)."""
    model, ids = make(name), tokens()
    clean = model(ids)
    for layer in (1,):
        k, u = state_writes(model, ids, layer)
        for t in (0, 7, T - 1):
            native = torch.einsum("bk,bv->bkv", k[:, t, 1], u[:, t, 1])
            assert torch.allclose(install_write(model, ids, layer, 1, t, native), clean, atol=1e-5, rtol=0)
        removed = install_write(model, ids, layer, 1, 7, torch.zeros(model.mixer(layer).d_k, model.mixer(layer).d_v))
        assert torch.equal(removed[:, :7], clean[:, :7])
        assert (removed[:, 7:] - clean[:, 7:]).abs().amax() > 1e-3


@pytest.mark.parametrize("name", WRITERS)
def test_a_dictionary_of_the_native_writes_reproduces_the_model(name):
    """One atom per write, code 1 on its own atom: installing the decoded write at any position is the model."""
    model, ids = make(name), tokens()
    layer, head = 1, 0
    k, u = state_writes(model, ids, layer)
    sae = WriteSAE.from_writes(k[:, :, head].reshape(-1, k.shape[-1]), u[:, :, head].reshape(-1, u.shape[-1]))
    clean = model(ids)
    for t in (0, 5, 13):
        atom = torch.arange(2) * T + t  # write (b, t) is atom b·T + t
        codes = torch.nn.functional.one_hot(atom, sae.n_atoms).double()
        assert torch.allclose(install_write(model, ids, layer, head, t, sae.decode(codes)), clean, atol=1e-5, rtol=0)
    firings = pd.DataFrame({"sequence": [0, 1, 1], "position": [3, 3, 11], "atom": [3, T + 3, T + 11]})
    res = substitution_test(model, sae, ids, layer, head, firings=firings, progress=False)
    assert res.loss_atom.tolist() == pytest.approx(res.loss_native.tolist(), abs=1e-5)
    assert res.kl_atom.abs().max() <= 1e-9
    assert (res.kl_ablate > 1e-10).all() and (res.kl_random > 1e-10).all()  # the controls do change the model
    assert win_rate(res, "ablate", "kl")["wins"] == 3


def test_the_controls_are_the_removed_write_and_a_silent_atom_at_the_native_norm():
    model, ids = make("gated_delta"), tokens()
    k, u = state_writes(model, ids, 1)
    sae = WriteSAE(WriteSAEConfig(n_atoms=6, k=2), model.mixer(1).d_k, model.mixer(1).d_v).double()
    res = substitution_test(model, sae, ids, 1, 0, n_firings=4, seed=3, progress=False)
    row = res.iloc[0]
    s, t = int(row.sequence), int(row.position)
    native = torch.outer(k[s, t, 0], u[s, t, 0])
    assert row.write_norm == pytest.approx(native.norm().item())
    codes = sae.encode(k[s, t, 0], u[s, t, 0])
    assert codes[int(row.atom)] > 0 and codes[int(row.random_atom)] == 0
    mask = torch.arange(T - 1) >= t
    for cond, write in (("ablate", torch.zeros_like(native)),
                        ("random", native.norm() * sae.atoms()[int(row.random_atom)] / sae.atoms()[int(row.random_atom)].norm()),
                        ("atom", native.norm() * sae.atoms()[int(row.atom)] / sae.atoms()[int(row.atom)].norm())):
        logits = install_write(model, ids[s:s + 1], 1, 0, t, write.detach())
        nll = torch.nn.functional.cross_entropy(logits[0, :-1], ids[s, 1:], reduction="none")[mask].mean()
        assert row[f"loss_{cond}"] == pytest.approx(nll.item(), rel=1e-9)


def test_wilson_interval_and_win_rate():
    lo, hi = wilson_interval(4482, 4851)  # the paper's 92.4 % of 4,851 firings: [91.6, 93.1] %
    assert (round(lo * 100, 1), round(hi * 100, 1)) == (91.6, 93.1)
    assert wilson_interval(0, 10)[0] == 0 and wilson_interval(10, 10)[1] == pytest.approx(1)
    df = pd.DataFrame({"loss_atom": [1, 2, 3, 1.0], "loss_ablate": [2, 1, 4, 1.0], "loss_random": [0, 0, 0, math.nan],
                       "kl_atom": [0.0] * 4, "kl_ablate": [1.0] * 4, "kl_random": [1.0] * 4})
    assert win_rate(df)["wins"] == 2 and win_rate(df)["n"] == 4  # a tie is not a win
    assert win_rate(df, "random")["n"] == 3
    with pytest.raises(ValueError, match="baseline"):
        win_rate(df, "native")


def test_write_sae_recovers_a_sparse_rank_one_dictionary():
    """Writes made of one of 8 rank-one atoms each (with a scale): a top-1 WriteSAE reconstructs them."""
    gen = torch.Generator().manual_seed(0)
    d = torch.nn.functional.normalize(torch.randn(8, 6, generator=gen), dim=-1)
    g = torch.nn.functional.normalize(torch.randn(8, 5, generator=gen), dim=-1)
    which = torch.randint(0, 8, (800,), generator=gen)
    scale = torch.rand(800, generator=gen) + 0.5
    keys, values = d[which] * scale[:, None], g[which]
    sae, history = train_write_sae(keys, values, WriteSAEConfig(n_atoms=16, k=1, steps=300, batch_size=128, lr=1e-2,
                                                                    resample_every=100), progress=False)
    m = write_reconstruction_metrics(sae, keys, values)
    assert m["explained_variance"] > 0.95 and m["l0"] <= 1
    assert history.mse.iloc[-1] < history.mse.iloc[0]
    usage = atom_usage(sae, keys, values)
    assert usage.fires.sum() == len(keys) and len(usage) == 16


def test_configs_and_shapes_are_checked():
    with pytest.raises(ValueError, match="k must be"):
        WriteSAEConfig(n_atoms=4, k=5)
    with pytest.raises(ValueError, match="sparsity"):
        WriteSAEConfig(sparsity="jumprelu")
    assert WriteSAEConfig.from_dict(WriteSAEConfig(k=3).to_dict()) == WriteSAEConfig(k=3)
    model, ids = make("delta"), tokens()
    with pytest.raises(ValueError, match="head must be"):
        install_write(model, ids, 0, 2, 0, torch.zeros(8, 8))
    with pytest.raises(ValueError, match="position must be"):
        install_write(model, ids, 0, 0, T, torch.zeros(8, 8))
    with pytest.raises(ValueError, match="write must be"):
        install_write(model, ids, 0, 0, 3, torch.zeros(3, 8, 8))
    sae = WriteSAE(WriteSAEConfig(n_atoms=4, k=1), 8, 8)
    with pytest.raises(ValueError, match="writes must be"):
        sae.encode(torch.zeros(3, 7), torch.zeros(3, 8))


def test_save_and_load_round_trip(tmp_path):
    model, ids = make("delta"), tokens()
    k, u = collect_writes(model, [ids, tokens(seed=1)], 1, 0)
    assert k.shape == (4 * T, 8)
    sae, _ = train_write_sae(k, u, WriteSAEConfig(n_atoms=8, k=2, steps=5), progress=False)
    back = load_dictionary(save_dictionary(sae, tmp_path / "w.safetensors"))
    assert back.cfg == sae.cfg and torch.equal(back.encode(k, u), sae.encode(k, u))
    assert torch.equal(back.input_scale, sae.input_scale)


@pytest.mark.integration
def test_runs_on_an_imported_qwen3_5_checkpoint(tmp_path):
    from foreign_models import opened_tiny_qwen3_5

    model = opened_tiny_qwen3_5(tmp_path).double()
    ids = torch.randint(1, 64, (2, 24), generator=torch.Generator().manual_seed(0))
    layer = model.fast_weight_layers[0]
    k, u = state_writes(model, ids, layer)
    clean = model(ids)
    native = torch.einsum("bk,bv->bkv", k[:, 9, 3], u[:, 9, 3])
    assert torch.allclose(install_write(model, ids, layer, 3, 9, native), clean, atol=1e-5, rtol=0)
    keys, values = collect_writes(model, ids, layer, 3)
    sae, _ = train_write_sae(keys, values, WriteSAEConfig(n_atoms=16, k=2, steps=30), progress=False)
    res = substitution_test(model, sae, ids, layer, 3, n_firings=6, progress=False)
    assert len(res) == 6 and res[["loss_atom", "loss_ablate", "kl_atom"]].notna().all().all()
    assert 0 <= win_rate(res)["fraction"] <= 1
    from test_sae import exact_sae  # an ordinary SAE on one of its hooks: the exact one splices in unnoticed

    hook = f"blocks.{layer}.hook_resid_post"
    acts = cache_activations(model, ids, hook)
    out = spliced_loss(model, exact_sae(acts.shape[1]), ids, hook)
    assert out["loss_spliced"] == pytest.approx(out["loss_clean"], abs=1e-9)
    vec, _ = train_sae(acts, SAEConfig(n_latents=16, k=2, steps=10), progress=False)
    assert spliced_loss(model, vec, ids, hook)["loss_spliced"] != out["loss_clean"]
