"""Controls and baselines of the memorization edit: the random basis of equal rank, MLP ablation,
BalancedSubnet, and the suffix loss they are scored by — each against a closed form or a direct computation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.kfac import BalancedSubnetConfig, ablate_mlp, balanced_subnet_edit, random_subspace_edit
from workbench.analysis.kfac.balanced_subnet import top_mask
from workbench.analysis.kfac.controls import haar_orthogonal, random_project
from workbench.analysis.memorization import suffix_nll

V = 17


def tiny(mixer: str = "softmax") -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=V, d_model=8, n_layers=2, n_heads=2, d_head=4, d_mlp=12, mixer=mixer, chunk_size=4,
                      n_ctx=16, init_std=0.2, seed=3)
    return HookedFastWeightLM(cfg).eval()


def tokens(n: int, T: int, seed: int) -> torch.Tensor:
    return torch.randint(0, V, (n, T), generator=torch.Generator().manual_seed(seed))


def test_haar_orthogonal_is_orthogonal():
    Q = haar_orthogonal(7, torch.Generator().manual_seed(0))
    torch.testing.assert_close(Q.T @ Q, torch.eye(7, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("kept", [0, 5, 48])
def test_random_project_keeps_k_components_of_a_random_basis(kept):
    W = torch.randn(6, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    W_new, info = random_project(W, kept, torch.Generator().manual_seed(2))
    assert info == {**info, "kept": kept, "components": 48}
    # the same draws by hand: U, V, then the mask
    g = torch.Generator().manual_seed(2)
    U, Vb = haar_orthogonal(6, g), haar_orthogonal(8, g)
    mask = torch.zeros(48, dtype=torch.bool)
    mask[torch.randperm(48, generator=g)[:kept]] = True
    C = U.T @ W @ Vb
    torch.testing.assert_close(W_new, U @ (C * mask.view(6, 8)) @ Vb.T, atol=1e-12, rtol=0)
    assert info["mass_kept"] == pytest.approx(float((C.flatten()[mask] ** 2).sum() / (C ** 2).sum()), abs=1e-12)
    if kept == 48:
        torch.testing.assert_close(W_new, W, atol=1e-12, rtol=0)
    if kept == 0:
        assert W_new.abs().max() < 1e-12
    # the kept part is an orthogonal projection in weight space: W' ⟂ (W − W')
    assert abs(float((W_new * (W - W_new)).sum())) < 1e-10
    with pytest.raises(ValueError, match="kept"):
        random_project(W, 49, g)


def test_random_subspace_edit_writes_a_new_model_and_reports():
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    edited, report = random_subspace_edit(model, {"blocks.1.mlp.W_in": 10, "blocks.1.mlp.W_out": 96},
                                          torch.Generator().manual_seed(0))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert report.kept.tolist() == [10, 96] and report.components.tolist() == [96, 96]
    assert report.weight_rel_change.iloc[1] == 0.0  # all kept: unchanged
    assert torch.equal(edited.get_parameter("blocks.1.mlp.W_out"), model.get_parameter("blocks.1.mlp.W_out"))
    assert not torch.equal(edited.get_parameter("blocks.1.mlp.W_in"), model.get_parameter("blocks.1.mlp.W_in"))
    with pytest.raises(ValueError, match="empty"):
        random_subspace_edit(model, {}, torch.Generator())


@pytest.mark.parametrize("mixer", ["softmax", "delta"])
def test_ablate_mlp_replaces_the_mlp_output_by_zero_or_its_mean(mixer):
    model = tiny(mixer)
    batches = [tokens(3, 10, 0), tokens(2, 10, 1)]
    name = "blocks.1.hook_mlp_out"
    outs = torch.cat([model.run_with_cache(b, names_filter=[name])[1][name].reshape(-1, 8) for b in batches])
    probe = tokens(2, 10, 5)
    for mode in ("zero", "mean"):
        edited, report = ablate_mlp(model, -1, mode, batches)
        got = edited.run_with_cache(probe, names_filter=[name])[1][name]
        want = torch.zeros(8) if mode == "zero" else outs.double().mean(0).float()
        torch.testing.assert_close(got, want.expand_as(got), atol=1e-5, rtol=0)
        assert report.method.tolist() == [f"ablate_{mode}"] and report.weight_rel_change.iloc[0] == pytest.approx(1.0)
    assert model.get_parameter("blocks.1.mlp.W_out").abs().sum() > 0  # the original kept
    with pytest.raises(ValueError, match="mode"):
        ablate_mlp(model, -1, "max")
    with pytest.raises(ValueError, match="batch"):
        ablate_mlp(model, -1, "mean", [])


def test_suffix_nll_is_the_mean_teacher_forced_loss_of_the_suffix():
    model = tiny()
    seqs = tokens(4, 12, 3)
    starts = [3, 5, 3, 8]
    got = suffix_nll(model, seqs, starts, 4, batch_size=3)
    for i, t in enumerate(starts):
        with torch.no_grad():
            logits = model(seqs[i:i + 1, :t + 4])[0]
        want = F.cross_entropy(logits[t - 1:t + 3].double(), seqs[i, t:t + 4])
        assert float(got[i]) == pytest.approx(float(want), abs=1e-5)
    with pytest.raises(ValueError, match="start"):
        suffix_nll(model, seqs, 10, 4)
    with pytest.raises(ValueError, match="starts"):
        suffix_nll(model, seqs, [1, 2], 4)


def test_top_mask_keeps_the_largest_and_passes_gradients_straight_through():
    s = torch.tensor([[0.3, -0.1], [0.05, 0.9]], requires_grad=True)
    m = top_mask(s.abs(), 0.5)
    assert m.tolist() == [[1.0, 0.0], [0.0, 1.0]]
    (m * torch.tensor([[1.0, 2.0], [3.0, 4.0]])).sum().backward()
    assert s.grad.tolist() == [[1.0, -2.0], [3.0, 4.0]]  # d|s|/ds = sign(s)


def test_balanced_subnet_prunes_the_ratio_and_raises_the_forget_loss():
    model = tiny()
    forget = tokens(6, 12, 7)
    fmask = torch.zeros(6, 11, dtype=torch.bool)
    fmask[:, 4:10] = True
    retain = tokens(20, 12, 8)
    sites = ["blocks.1.mlp.W_in", "blocks.1.mlp.W_out"]
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def loss(m, x, mask):
        with torch.no_grad():
            nll = F.cross_entropy(m(x)[:, :-1].flatten(0, 1), x[:, 1:].flatten(), reduction="none").view(mask.shape)
        return float((nll * mask).sum() / mask.sum())

    cfg = BalancedSubnetConfig(ratio=0.3, epochs=40, batch_size=8, seed=1)
    edited, report = balanced_subnet_edit(model, sites, forget, fmask, retain, cfg)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    for s in sites:
        W, W_new = model.get_parameter(s), edited.get_parameter(s)
        zeroed = int(((W_new == 0) & (W != 0)).sum())
        assert zeroed == int(0.3 * W.numel())
        assert torch.equal(W_new[W_new != 0], W[W_new != 0])
    assert report.rho.tolist() == [pytest.approx(0.7)] * 2
    assert report.kept.tolist() == [96 - int(0.3 * 96)] * 2
    # trained against a random mask of the same ratio (the scores' start): the forget loss rises more
    untrained, _ = balanced_subnet_edit(model, sites, forget, fmask, retain,
                                        BalancedSubnetConfig(ratio=0.3, epochs=1, lr=1e-12, batch_size=8, seed=1))
    ones = torch.ones(20, 11, dtype=torch.bool)
    gain_trained = loss(edited, forget, fmask) - loss(model, forget, fmask)
    gain_random = loss(untrained, forget, fmask) - loss(model, forget, fmask)
    assert gain_trained > gain_random + 0.05, (gain_trained, gain_random)
    assert math.isfinite(loss(edited, retain, ones))
    with pytest.raises(ValueError, match="ratio"):
        BalancedSubnetConfig(ratio=1.0)
    with pytest.raises(ValueError, match="forget_mask"):
        balanced_subnet_edit(model, sites, forget, fmask[:, :5], retain, cfg)
