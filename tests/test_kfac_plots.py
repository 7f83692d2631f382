"""The curvature-spectrum figure draws the spectrum it was given and cuts where the edit cuts."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.analysis.kfac import curvature_mask, curvature_spectrum
from workbench.analysis.kfac.edit import eigen
from workbench.plots import curvature_spectrum_figure, kept_components, thin_spectrum


def _factors(d_in, d_out, seed):
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(50, d_in, generator=g), torch.randn(50, d_out, generator=g) * torch.linspace(0.1, 3, d_out)
    return a.T @ a / 50, b.T @ b / 50


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9, 1.0])
def test_kept_components_is_the_edit_mask_size(rho):
    A, G = _factors(6, 5, 0)
    spectrum = curvature_spectrum((A, G))
    want = int(curvature_mask(eigen(G)[0], eigen(A)[0], rho).sum())
    assert kept_components(spectrum, rho) == want


def test_figure_draws_every_layer_spectrum_and_the_cut():
    spectra = {"blocks.0.mlp.W_in": curvature_spectrum(_factors(6, 5, 0)),
               "blocks.1.mlp.W_in": curvature_spectrum(_factors(4, 3, 1))}
    fig = curvature_spectrum_figure(spectra, rho=0.8)
    # per layer: spectrum, cumulative, cut marker
    assert [t.name for t in fig.data][::3] == list(spectra)
    for k, table in enumerate(spectra.values()):
        curve, cum, cut = fig.data[3 * k: 3 * k + 3]
        assert list(curve.x) == list(range(1, len(table) + 1))
        np.testing.assert_allclose(curve.y, table.curvature, rtol=1e-12)
        np.testing.assert_allclose(cum.y, table.cumulative, rtol=1e-12)
        assert cut.x[0] == kept_components(table, 0.8) and cum.xaxis == "x2"
    assert np.all(np.diff(fig.data[0].y) <= 0)  # largest first
    assert fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "log"
    assert any(s.y0 == 0.8 for s in fig.layout.shapes)
    assert len(curvature_spectrum_figure(spectra["blocks.0.mlp.W_in"]).data) == 2  # one table, no ρ


def test_large_spectra_are_thinned_log_spaced_keeping_both_ends():
    table = curvature_spectrum(_factors(40, 30, 2))  # 1200 components
    fig = curvature_spectrum_figure(table, max_points=50)
    x = list(fig.data[0].x)
    assert x[0] == 1 and x[-1] == 1200 and len(x) <= 52 and x == sorted(set(x))
    assert fig.data[0].y[-1] == pytest.approx(table.curvature.iloc[-1])
    small = thin_spectrum(table, 50)
    assert (small["rank"] + 1).tolist() == x and small.cumulative.iloc[-1] == pytest.approx(1.0)
    full = kept_components(table, 0.7)
    assert full <= kept_components(small, 0.7) and small.cumulative[small["rank"] + 1 == kept_components(small, 0.7)].item() >= 0.7


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="no spectra"):
        curvature_spectrum_figure({})
    with pytest.raises(ValueError, match="curvature_spectrum"):
        curvature_spectrum_figure({"x": curvature_spectrum(_factors(3, 3, 0)).drop(columns="cumulative")})
    with pytest.raises(ValueError, match=r"ρ must be in \(0, 1\]"):
        kept_components(curvature_spectrum(_factors(3, 3, 0)), 1.5)
