"""The study's figures from results.json."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from workbench.plots import atom_usage_histogram, reconstruction_vs_sparsity


def figures(results: dict) -> dict[str, go.Figure]:
    s = results["study"]
    figs = {}
    for h in results["heads"]:
        usage = pd.DataFrame({"frequency": h["usage"]})
        figs[f"atom_usage_L{s['layer']}H{h['head']}"] = atom_usage_histogram(
            usage, title=f"WriteSAE atoms, {s['checkpoint']} L{s['layer']}H{h['head']}")
    figs["reconstruction_vs_sparsity"] = reconstruction_vs_sparsity(
        pd.DataFrame(results["sweep"]), title=f"Held-out explained variance against L0 ({s['checkpoint']})")
    return figs
