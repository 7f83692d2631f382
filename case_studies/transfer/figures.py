"""The study's figures from results.json: perplexity by layer, the steering sweep, the probe's AUROC by layer."""

from __future__ import annotations

import math

import plotly.express as px
import plotly.graph_objects as go

from .tables import CONDITIONS, lens_frame, probe_frame, steering_frame


def _se(values) -> float:
    return float(values.std(ddof=1) / math.sqrt(len(values))) if len(values) > 1 else 0.0


def figures(results: dict) -> dict[str, go.Figure]:
    lens = lens_frame(results).melt(id_vars=["mixer", "seed", "layer"], value_vars=["logit_ppl", "tuned_ppl"],
                                    var_name="lens", value_name="perplexity")
    lens = lens.groupby(["mixer", "layer", "lens"], as_index=False)["perplexity"].mean()
    figs = {"lens_perplexity": px.line(lens, x="layer", y="perplexity", color="mixer", line_dash="lens", log_y=True,
                                       markers=True, title="Lens perplexity by layer (mean over seeds)")}
    steer = steering_frame(results).groupby(["mixer", "steering", "strength"], as_index=False)["effect"].agg(
        effect="mean", se=_se)
    order = [c for c in CONDITIONS if c in set(steer["steering"])]
    mixers = list(dict.fromkeys(r["mixer"] for r in results["runs"]))
    figs["steering"] = px.line(steer, x="strength", y="effect", color="steering", facet_col="mixer", error_y="se",
                               markers=True, category_orders={"steering": order, "mixer": mixers},
                               labels={"strength": "multiplier", "effect": "Δ log p(good) − log p(bad)"},
                               title="CAA on the residual stream, on the state, norm-matched and combined "
                                     "(mean ± s.e. over seeds)")
    probe = probe_frame(results).melt(id_vars=["mixer", "seed", "layer"],
                                      value_vars=["auroc_truth_alice", "auroc_truth_bob_disagree"],
                                      var_name="items", value_name="AUROC vs the truth")
    probe = probe.groupby(["mixer", "layer", "items"], as_index=False)["AUROC vs the truth"].mean()
    figs["probe_auroc"] = px.line(probe, x="layer", y="AUROC vs the truth", color="mixer", line_dash="items",
                                  markers=True, title="Alice-trained truth probe: on Alice's items and on Bob's "
                                                      "where they disagree (mean over seeds)")
    return figs
