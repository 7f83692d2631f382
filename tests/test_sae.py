"""The ordinary sparse autoencoder (analysis/dictionaries): it reconstructs a low-rank sparse signal, an exact
SAE spliced into any hook leaves the model's loss unchanged, caching and errors, save/load."""

from __future__ import annotations

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.dictionaries import (SAEConfig, SparseAutoencoder, cache_activations, load_dictionary,
                                             reconstruction_metrics, save_dictionary, spliced_loss, train_sae)


def model():
    torch.manual_seed(0)
    return HookedFastWeightLM(ModelConfig(d_vocab=29, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=32,
                                          mixer="gated_delta", chunk_size=8, init_std=0.3)).double().eval()


def tokens(seed=0):
    return torch.randint(0, 29, (3, 17), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("sparsity", ["topk", "relu_l1"])
def test_the_sae_reconstructs_a_low_rank_sparse_signal(sparsity):
    """x = Σ of 2 of 12 fixed directions in R^24 (non-negative weights): the SAE explains > 90 % of its
    variance with a handful of active latents."""
    gen = torch.Generator().manual_seed(0)
    basis = torch.nn.functional.normalize(torch.randn(12, 24, generator=gen), dim=-1)
    codes = torch.zeros(1500, 12)
    idx = torch.stack([torch.randperm(12, generator=gen)[:2] for _ in range(1500)])
    codes.scatter_(1, idx, torch.rand(1500, 2, generator=gen) + 0.5)
    x = codes @ basis
    cfg = SAEConfig(n_latents=24, sparsity=sparsity, k=2, l1=2e-2, steps=400, batch_size=128, lr=1e-2)
    sae, history = train_sae(x, cfg, progress=False)
    m = reconstruction_metrics(sae, x)
    assert m["explained_variance"] > 0.9, m
    assert m["l0"] <= (2 if sparsity == "topk" else 8)
    assert history.mse.iloc[-1] < history.mse.iloc[0]


def exact_sae(d: int) -> SparseAutoencoder:
    """x = ReLU(x) − ReLU(−x): 2d latents with encoder [I, −I] and decoder [I; −I] reconstruct any x exactly."""
    sae = SparseAutoencoder(SAEConfig(n_latents=2 * d, sparsity="relu_l1"), d).double()
    eye = torch.eye(d, dtype=torch.float64)
    with torch.no_grad():
        sae.W_enc.copy_(torch.cat([eye, -eye], 1))
        sae.W_dec.copy_(torch.cat([eye, -eye], 0))
    return sae


@pytest.mark.parametrize("hook", ["blocks.0.hook_resid_post", "blocks.1.attn.hook_z", "blocks.1.mlp.hook_post"])
def test_an_exact_sae_spliced_into_a_hook_changes_nothing(hook):
    m, ids = model(), tokens()
    acts = cache_activations(m, [ids, tokens(1)], hook)
    assert acts.shape[0] == 2 * 3 * 17
    sae = exact_sae(acts.shape[1])
    assert reconstruction_metrics(sae, acts)["explained_variance"] == pytest.approx(1.0)
    out = spliced_loss(m, sae, ids, hook)
    assert out["loss_spliced"] == pytest.approx(out["loss_clean"], abs=1e-10)
    assert out["loss_recovered"] == pytest.approx(1.0)
    assert out["loss_zero"] != pytest.approx(out["loss_clean"], abs=1e-6)


def test_a_trained_sae_on_a_hook_and_its_spliced_loss():
    m, ids = model(), tokens()
    acts = cache_activations(m, ids, "blocks.0.hook_resid_post")
    sae, _ = train_sae(acts, SAEConfig(n_latents=32, k=4, steps=50, batch_size=32), progress=False)
    mask = torch.zeros(3, 16, dtype=torch.bool)
    mask[:, 8:] = True
    out = spliced_loss(m, sae, ids, "blocks.0.hook_resid_post", loss_mask=mask)
    assert set(out) == {"loss_clean", "loss_spliced", "loss_zero", "loss_recovered"}
    assert out["loss_spliced"] != out["loss_clean"]


def test_errors_and_round_trip(tmp_path):
    m = model()
    with pytest.raises(ValueError, match="no hook"):
        cache_activations(m, tokens(), "blocks.0.hook_resid_middle")
    with pytest.raises(ValueError, match="k must be"):
        SAEConfig(n_latents=4, k=8)
    with pytest.raises(ValueError, match="activations must be"):
        train_sae(torch.zeros(3, 4, 5))
    sae = exact_sae(5)
    with pytest.raises(ValueError, match="d_in=5"):
        sae.encode(torch.zeros(2, 4, dtype=torch.float64))
    back = load_dictionary(save_dictionary(sae, tmp_path / "sae.safetensors"))
    assert isinstance(back, SparseAutoencoder) and back.cfg == sae.cfg
    x = torch.randn(4, 5, dtype=torch.float64)
    assert torch.equal(back(x)[0], sae(x)[0])


def test_the_plots():
    import pandas as pd

    from workbench.plots import atom_usage_histogram, reconstruction_vs_sparsity

    usage = pd.DataFrame({"atom": range(4), "fires": [0, 1, 10, 100], "frequency": [0, 0.001, 0.01, 0.1]})
    fig = atom_usage_histogram(usage)
    assert "1 of 4 atoms never fire" in fig.layout.title.text
    assert sorted(fig.data[0].x) == pytest.approx([-3, -2, -1])
    sweep = pd.DataFrame({"dictionary": ["a", "a", "b"], "l0": [4, 1, 2], "explained_variance": [0.9, 0.5, 0.7]})
    fig = reconstruction_vs_sparsity(sweep)
    assert [t.name for t in fig.data] == ["a", "b"] and list(fig.data[0].x) == [1, 4]
    with pytest.raises(ValueError, match="frequency"):
        atom_usage_histogram(pd.DataFrame({"atom": [0]}))
    with pytest.raises(ValueError, match="l0"):
        reconstruction_vs_sparsity(pd.DataFrame({"explained_variance": [1.0]}))
