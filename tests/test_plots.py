"""Plot functions return figures whose data are the tensors they were given."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from workbench.plots import (attention_heatmap, fast_weight_heatmap, head_scores_bar, hop_heatmap,
                             singular_values_over_positions, state_and_update)


def test_attention_heatmap_shows_the_matrix_and_picks_a_diverging_scale_for_signed_weights():
    A = torch.tensor([[1.0, 0.0], [-0.5, 0.5]])
    fig = attention_heatmap(A, tokens=["a", "b"])
    np.testing.assert_allclose(np.asarray(fig.data[0].z), A.numpy())
    assert fig.data[0].zmin == -1.0 and list(fig.data[0].x) == ["0:a", "1:b"]
    assert attention_heatmap(A.abs()).data[0].zmin == 0.0
    with pytest.raises(ValueError, match="token labels"):
        attention_heatmap(A, tokens=["a"])


def test_singular_values_match_torch_svd():
    W = torch.randn(5, 4, 3)
    fig = singular_values_over_positions(W, positions=[0, 2, 4, 6, 8], top=2)
    want = torch.linalg.svdvals(W.double())
    assert len(fig.data) == 2
    np.testing.assert_allclose(fig.data[1].y, want[:, 1].numpy(), rtol=1e-12)
    assert list(fig.data[0].x) == [0, 2, 4, 6, 8]


def test_state_and_update_panels_and_other_figures():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    fig = state_and_update(a, b)
    np.testing.assert_allclose(np.asarray(fig.data[1].z), (b - a).numpy(), rtol=1e-6)
    assert fast_weight_heatmap(a).data[0].z.shape == (4, 4)
    bars = head_scores_bar(torch.tensor([[0.1, 0.2], [0.3, 0.4]]))
    assert [list(t.y) for t in bars.data] == [pytest.approx([0.1, 0.2]), pytest.approx([0.3, 0.4])]


def test_probe_curve_draws_one_line_per_head_from_the_aggregate():
    import pandas as pd

    from workbench.plots import probe_curve

    agg = pd.DataFrame({"head": [0, 0, 1, 1], "lag": [1, 0, 0, 1], "fidelity": [0.5, 0.9, 0.2, 0.1]})
    fig = probe_curve(agg, "lag")
    assert [t.name for t in fig.data] == ["head 0", "head 1"]
    assert list(fig.data[0].x) == [0, 1] and list(fig.data[0].y) == [0.9, 0.5]
    with pytest.raises(ValueError, match="no column"):
        probe_curve(agg, "n_stored")


def test_hop_heatmap_has_one_row_per_hop_and_labelled_columns():
    v = torch.tensor([[0.1, -0.2, 0.3], [0.0, 0.5, 1.0]])
    fig = hop_heatmap(v, columns=["a", "b", "c"], xaxis_title="token")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), v.numpy(), rtol=1e-6)
    assert list(fig.data[0].y) == ["hop 1", "hop 2"] and list(fig.data[0].x) == ["a", "b", "c"]
    assert fig.data[0].zmin == -1.0 and hop_heatmap(v.abs()).data[0].zmin == 0.0
    with pytest.raises(ValueError, match="2 column labels for 3 columns"):
        hop_heatmap(v, columns=["a", "b"])
    with pytest.raises(ValueError, match=r"must be \[hop, n\]"):
        hop_heatmap(v[0])
