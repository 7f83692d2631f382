"""Outlier plots show the numbers of the DataFrames they were given."""

from __future__ import annotations

import pandas as pd
import pytest

from workbench.plots.outliers import (contribution_bar, metric_by_layer, metric_over_training, neuron_rms_bar,
                                     state_over_positions)


def test_outlier_figures_carry_their_data():
    table = pd.DataFrame({"layer": [1, 0, 0, 1], "site": ["k", "k", "v", "v"], "kurtosis": [3.0, 2.0, 1.5, 9.0]})
    fig = metric_by_layer(table)
    lines = {t.name: (list(t.x), list(t.y)) for t in fig.data}
    assert lines == {"k": ([0, 1], [2.0, 3.0]), "v": ([0, 1], [1.5, 9.0])}
    assert fig.layout.yaxis.type == "log"
    steps = pd.concat([table.assign(step=0), table.assign(step=100)])
    assert len(metric_by_layer(steps).data) == 4
    bars = neuron_rms_bar(pd.DataFrame({"neuron": [2, 0, 1], "rms": [5.0, 1.0, 2.0]}))
    assert list(bars.data[0].x) == [0, 1, 2] and list(bars.data[0].y) == [1.0, 2.0, 5.0]
    summary = pd.DataFrame({"component": ["embed", "L0H0"], "mean": [0.5, -1.0], "mean_abs": [0.5, 1.0]})
    assert list(contribution_bar(summary).data[0].y) == [0.5, -1.0]
    states = pd.DataFrame({"layer": [0] * 4, "head": [0, 0, 1, 1], "pos": [5, 0, 0, 5],
                           "frobenius": [2.0, 1.0, 3.0, 4.0]})
    fig = state_over_positions(states)
    assert [(list(t.x), list(t.y)) for t in fig.data] == [([0, 5], [1.0, 2.0]), ([0, 5], [3.0, 4.0])]
    with pytest.raises(ValueError, match="no rows for layer 3"):
        state_over_positions(states, layer=3)
    with pytest.raises(ValueError, match="outlier_table"):
        metric_by_layer(states)



def test_metric_over_training_draws_one_line_per_layer():
    df = pd.DataFrame({"step": [200, 100, 100, 200, 100], "layer": [0, 0, 1, 1, 0],
                       "site": ["k", "k", "k", "k", "v"], "kurtosis": [4.0, 2.0, 1.0, 3.0, 9.0]})
    fig = metric_over_training(df, site="k")
    assert [(t.name, list(t.x), list(t.y)) for t in fig.data] == [("layer 0", [100, 200], [2.0, 4.0]),
                                                                 ("layer 1", [100, 200], [1.0, 3.0])]
    with pytest.raises(ValueError, match="no rows for site 'q'"):
        metric_over_training(df, site="q")
