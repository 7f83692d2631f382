"""The study's figures from results.json: perplexity by layer, the steering sweep, the probe's AUROC by layer."""

from __future__ import annotations

import plotly.express as px
import plotly.graph_objects as go

from .tables import lens_frame, probe_frame, steering_frame


def figures(results: dict) -> dict[str, go.Figure]:
    lens = lens_frame(results).melt(id_vars=["mixer", "seed", "layer"], value_vars=["logit_ppl", "tuned_ppl"],
                                    var_name="lens", value_name="perplexity")
    lens = lens.groupby(["mixer", "layer", "lens"], as_index=False)["perplexity"].mean()
    figs = {"lens_perplexity": px.line(lens, x="layer", y="perplexity", color="mixer", line_dash="lens", log_y=True,
                                       markers=True, title="Lens perplexity by layer (mean over seeds)")}
    steer = steering_frame(results).groupby(["mixer", "steering", "strength"], as_index=False)["effect"].mean()
    figs["steering"] = px.line(steer, x="strength", y="effect", color="mixer", line_dash="steering", markers=True,
                               title="CAA: change in log p(good) − log p(bad) (mean over seeds)")
    probe = probe_frame(results).groupby(["mixer", "layer"], as_index=False)["auroc_truth_bob_disagree"].mean()
    figs["probe_auroc"] = px.line(probe, x="layer", y="auroc_truth_bob_disagree", color="mixer", markers=True,
                                  title="Alice-trained truth probe on Bob's disagreeing items: AUROC vs the truth")
    return figs
