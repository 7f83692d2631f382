"""The K-FAC edit against a direct loop over (i, j) components with numpy's eigh; the SVD baseline against
numpy's SVD; ρ = 1 leaves W unchanged; the original model is bitwise unchanged; constructed cases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.kfac import (KFACConfig, collect_kfac, curvature_mask, curvature_spectrum, kfac_edit,
                                     kfac_project, svd_edit, svd_truncate)


def random_psd(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((3 * n, n)) * rng.uniform(0.2, 3.0, n)
    return X.T @ X / (3 * n)


def loop_edit(W: np.ndarray, A: np.ndarray, G: np.ndarray, rho: float):
    """The formula, one component at a time: C_ij = u_iᵀ W v_j, Π_ij = λ_i μ_j, greedy by Π."""
    lam, UG = np.linalg.eigh(G)
    mu, UA = np.linalg.eigh(A)
    comps = []
    for i in range(len(lam)):
        for j in range(len(mu)):
            comps.append((lam[i] * mu[j], i, j))
    total = sum(lam) * sum(mu)
    comps.sort(key=lambda c: -c[0])
    kept, mass = [], 0.0
    for c in comps:
        if rho < 1 and mass >= rho * total:
            break
        kept.append(c)
        mass += c[0]
    W_new = np.zeros_like(W)
    for _, i, j in kept:
        c_ij = UG[:, i] @ W @ UA[:, j]
        W_new += c_ij * np.outer(UG[:, i], UA[:, j])
    return W_new, len(kept), mass / total


@pytest.mark.parametrize("rho", [0.2, 0.6, 0.95, 1.0])
def test_projection_equals_the_loop_formula(rho):
    rng = np.random.default_rng(0)
    W = rng.standard_normal((5, 4))
    A, G = random_psd(4, 1), random_psd(5, 2)
    W_new, info = kfac_project(torch.tensor(W), torch.tensor(A), torch.tensor(G), rho)
    W_ref, kept, mass = loop_edit(W, A, G, rho)
    np.testing.assert_allclose(W_new.numpy(), W_ref, rtol=0, atol=1e-12)
    assert info["kept"] == kept and info["components"] == 20
    if kept:
        assert info["mass_kept"] == pytest.approx(mass, rel=1e-12) and info["mass_kept"] >= rho - 1e-12
    if rho == 1.0:
        np.testing.assert_allclose(W_new.numpy(), W, atol=1e-12)  # full rebuild is W itself


def test_equal_curvature_keeps_exactly_the_fraction():
    mask = curvature_mask(torch.ones(3), torch.ones(4), 0.5)  # 12 equal components
    assert int(mask.sum()) == 6 and mask.flatten()[:6].all()  # ties: lowest flat index first
    assert int(curvature_mask(torch.ones(3), torch.ones(4), 0.51).sum()) == 7
    spec = curvature_spectrum((torch.eye(4, dtype=torch.float64), 2 * torch.eye(3, dtype=torch.float64)))
    assert len(spec) == 12 and spec.curvature.eq(2.0).all() and spec.cumulative.iloc[-1] == pytest.approx(1.0)


def test_unused_input_directions_are_removed_and_used_ones_kept():
    """Inputs span 2 of 3 directions: keeping all nonzero curvature gives W' a = W a on that span, W' v = 0 off it."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    a = rng.standard_normal((50, 2)) @ basis[:, :2].T  # [tokens, d_in] in a 2-d subspace
    g = rng.standard_normal((50, 4))
    A, G = a.T @ a / 50, g.T @ g / 50
    W = rng.standard_normal((4, 3))
    W_new, info = kfac_project(torch.tensor(W), torch.tensor(A), torch.tensor(G), 1 - 1e-9)
    assert info["kept"] == 8  # 4 × 2 nonzero components
    np.testing.assert_allclose(W_new.numpy() @ a.T, W @ a.T, atol=1e-10)
    np.testing.assert_allclose(W_new.numpy() @ basis[:, 2], 0, atol=1e-10)


@pytest.mark.parametrize("rho,budget", [(0.5, "energy"), (0.9, "energy"), (0.5, "rank"),
                                        (0.7, "rank"), (1.0, "energy")])
def test_svd_truncation_against_numpy(rho, budget):
    rng = np.random.default_rng(4)
    W = rng.standard_normal((6, 4))
    W_new, info = svd_truncate(torch.tensor(W), rho, budget)
    U, S, Vh = np.linalg.svd(W, full_matrices=False)
    if budget == "rank":
        r = int(round(rho * 4))
    else:
        r = next(r for r in range(5) if (S[:r] ** 2).sum() >= rho * (S ** 2).sum() - 0)
    ref = sum(S[i] * np.outer(U[:, i], Vh[i]) for i in range(r)) if r else np.zeros_like(W)
    assert info["kept"] == r and info["components"] == 4
    np.testing.assert_allclose(W_new.numpy(), ref, atol=1e-12)


def tiny_model() -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=13, d_model=8, n_layers=2, n_heads=2, d_head=4, d_mlp=12, mixer="gated_delta",
                      mlp="swiglu", chunk_size=4, init_std=0.2, seed=2)
    return HookedFastWeightLM(cfg)


@pytest.fixture(scope="module")
def model_and_factors():
    model = tiny_model()
    batches = [torch.randint(0, 13, (3, 9), generator=torch.Generator().manual_seed(i)) for i in range(3)]
    sites = ("blocks.0.attn.W_Q", "blocks.1.attn.W_O", "blocks.1.mlp.W_gate", "blocks.0.attn.W_beta")
    return model, collect_kfac(model, batches, KFACConfig(sites=sites), progress=False)


def test_model_edit_matches_the_formula_and_leaves_the_original(model_and_factors):
    model, factors = model_and_factors
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edited, report = kfac_edit(model, factors, {"blocks.0.attn.W_Q": 0.5, "blocks.1.attn.W_O": 0.8,
                                                "blocks.1.mlp.W_gate": 0.3, "blocks.0.attn.W_beta": 0.9})
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # original bitwise unchanged
    assert edited is not model
    h, dh = 2, 4
    # W_Q [head, d_model, d_head]: y[h·dh + d] = Σ_m a[m] W_Q[h, m, d]  →  W [d_out, d_in]
    WQ = model.blocks[0].attn.W_Q.detach().double()
    W = np.stack([WQ[hh, :, d].numpy() for hh in range(h) for d in range(dh)])
    A, G = (x.numpy() for x in factors["blocks.0.attn.W_Q"].result())
    W_ref, kept, _ = loop_edit(W, A, G, 0.5)
    got = edited.blocks[0].attn.W_Q.detach().double()
    got_W = np.stack([got[hh, :, d].numpy() for hh in range(h) for d in range(dh)])
    np.testing.assert_allclose(got_W, W_ref, atol=1e-6)
    # W_O [head, d_head, d_model]: input index h·dh + d
    WO = model.blocks[1].attn.W_O.detach().double()
    W = np.stack([WO[:, :, m].reshape(-1).numpy() for m in range(8)])  # [d_out, d_in]
    A, G = (x.numpy() for x in factors["blocks.1.attn.W_O"].result())
    W_ref, _, _ = loop_edit(W, A, G, 0.8)
    got = edited.blocks[1].attn.W_O.detach().double()
    np.testing.assert_allclose(np.stack([got[:, :, m].reshape(-1).numpy() for m in range(8)]), W_ref, atol=1e-6)
    # W_gate [d_model, d_mlp] is used as x @ W_gate
    A, G = (x.numpy() for x in factors["blocks.1.mlp.W_gate"].result())
    W_ref, _, _ = loop_edit(model.blocks[1].mlp.W_gate.detach().double().numpy().T, A, G, 0.3)
    np.testing.assert_allclose(edited.blocks[1].mlp.W_gate.detach().double().numpy().T, W_ref, atol=1e-6)
    # everything else is untouched
    changed = {"blocks.0.attn.W_Q", "blocks.1.attn.W_O", "blocks.1.mlp.W_gate", "blocks.0.attn.W_beta"}
    for k, v in edited.state_dict().items():
        if k not in changed:
            assert torch.equal(v, before[k]), k
    row = report.set_index("param").loc["blocks.0.attn.W_Q"]
    assert row.kept == kept and row.components == 64 and row.mass_kept >= 0.5 and row.weight_rel_change > 0
    assert list(report.columns) == ["param", "kind", "layer", "method", "rho", "components", "kept",
                                    "kept_fraction", "mass_kept", "weight_rel_change"]
    tokens = torch.randint(0, 13, (1, 9), generator=torch.Generator().manual_seed(9))
    assert not torch.allclose(edited(tokens), model(tokens))


def test_rho_one_leaves_every_weight_bitwise(model_and_factors):
    model, factors = model_and_factors
    edited, report = kfac_edit(model, factors, 1.0)
    assert all(torch.equal(a, b) for a, b in zip(edited.state_dict().values(), model.state_dict().values()))
    assert (report.kept == report.components).all() and (report.weight_rel_change == 0).all()
    same, rep = svd_edit(model, list(factors), 1.0)
    assert all(torch.equal(a, b) for a, b in zip(same.state_dict().values(), model.state_dict().values()))


def test_svd_edit_model(model_and_factors):
    model, _ = model_and_factors
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edited, report = svd_edit(model, ["blocks.1.mlp.W_gate"], 0.5, budget="rank")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    W = model.blocks[1].mlp.W_gate.detach().double()
    U, S, Vh = torch.linalg.svd(W)
    ref = (U[:, :4] * S[:4]) @ Vh[:4]  # min(8, 12) = 8 components, half kept
    torch.testing.assert_close(edited.blocks[1].mlp.W_gate.detach().double(), ref, rtol=0, atol=1e-6)
    assert report.kept.item() == 4 and report.method.item() == "svd_rank"


def test_bad_arguments(model_and_factors):
    model, factors = model_and_factors
    with pytest.raises(ValueError, match=r"ρ must be in \(0, 1\]"):
        kfac_edit(model, factors, 1.5)
    with pytest.raises(ValueError, match="name exactly the layers"):
        kfac_edit(model, factors, {"blocks.0.attn.W_Q": 0.5})
    with pytest.raises(ValueError, match="factors for blocks.0.attn.W_Q"):
        kfac_edit(model, {"blocks.0.attn.W_Q": factors["blocks.1.mlp.W_gate"]}, 0.5)
    with pytest.raises(ValueError, match="choose from"):
        svd_edit(model, ["blocks.0.mlp.W_up"], 0.5)
    with pytest.raises(ValueError, match="budget must be one of"):
        svd_edit(model, ["blocks.0.mlp.W_in"], 0.5, budget="count")
    with pytest.raises(ValueError, match="factors is empty"):
        kfac_edit(model, {}, 0.5)


def test_one_check_of_rho_for_the_library_the_plots_and_the_app():
    """ρ = 0 (remove the whole weight) was accepted by the library and refused by the app: one check now."""
    from workbench.analysis.kfac import check_rho
    from workbench.app_support import kfac_editing
    from workbench.plots.kfac import kept_components

    assert kfac_editing.check_rho is check_rho
    assert check_rho(1) == 1.0 and check_rho(0.25) == 0.25
    spectrum = curvature_spectrum((torch.eye(3, dtype=torch.float64), torch.eye(2, dtype=torch.float64)))
    for bad in (0, 0.0, -0.1, 1.5, True, "0.5", float("nan")):
        for call in (lambda: check_rho(bad), lambda: curvature_mask(torch.ones(3), torch.ones(2), bad),
                     lambda: svd_truncate(torch.eye(3), bad), lambda: kept_components(spectrum, bad)):
            with pytest.raises(ValueError, match=r"ρ must be in \(0, 1\]"):
                call()
