"""Per-head attention over the tokens: softmax patterns, or the exact effective attention of
fast-weight layers (hook_z = A · hook_v), and the head scores read from it."""

import streamlit as st
import torch

from workbench.app_support import caching, widgets
from workbench.mixers import NotDefinedForMixer
from workbench.plots import attention_heatmap, head_scores_bar

WINDOW = 64  # positions drawn by default: a longer sequence opens on its first WINDOW positions

st.title("Attention")
st.caption("For linear and delta-rule layers A is the exact effective attention: hook_z = A · hook_v. "
           "Delta-rule weights are signed: red is a positive weight (the value is added), blue a negative one "
           "(the value is subtracted); white is 0.")
lm, seq = widgets.current()

layer = widgets.choose_layer(lm)
heads = st.multiselect("Heads", list(range(lm.model.cfg.n_heads)), default=list(range(min(4, lm.model.cfg.n_heads))),
                       format_func=lambda h: f"head {h}", key="heads")
magnitude = st.toggle("Show |A| (magnitude only)", key="magnitude")
lo, hi = 0, len(seq) - 1
if len(seq) > 16:
    lo, hi = st.slider("Positions shown (query and key window)", 0, len(seq) - 1, (0, min(len(seq), WINDOW) - 1),
                       key=f"attention_window-{len(seq)}",
                       help="zoom in on a window of the sequence; hover over a cell for its tokens")

try:
    with st.spinner("Computing the effective attention…"):
        A = caching.attention(lm, seq, layer)
except NotDefinedForMixer as e:  # the layer's output is not linear in its values: say so, show the rest
    st.info(widgets.plain(e))
    A = None
if A is not None and not heads:
    st.info("No head selected: pick one or more heads above to draw their attention.")
labels = widgets.token_labels(seq)[lo:hi + 1]
cols = st.columns(2)
for i, h in enumerate(heads if A is not None else []):
    shown = (A[h].abs() if magnitude else A[h])[lo:hi + 1, lo:hi + 1]
    cols[i % 2].plotly_chart(attention_heatmap(shown, labels, title=f"layer {layer}, head {h}", start=lo,
                                               colorbar_title="|weight|" if magnitude else "weight"),
                             key=f"attention-{h}")

st.subheader("Head scores on |A|")
st.caption("Both scores read each query row of |A| normalised to sum 1. previous_token: the mean share of a "
           "query's attention on the position just before it (1: a pure previous-token head). induction: the "
           "share on the tokens that followed earlier copies of the query's token (query t, key i+1 where token i "
           "= token t; 1: a pure induction head), averaged over the queries whose token occurred before. Scores "
           "are on the whole sequence, not the window.")
with st.spinner("Scoring every head…"):
    scores = caching.head_scores(lm, seq)
if scores.empty:
    st.info("No layer of this model has an exact effective attention to score.")
else:
    if scores.layer.nunique() < lm.model.cfg.n_layers:
        st.caption(f"Layers with an exact effective attention only: {sorted(scores.layer.unique().tolist())}.")
    for name in ("previous_token", "induction"):
        grid = torch.tensor(scores.pivot(index="layer", columns="head", values=name).values)
        st.plotly_chart(head_scores_bar(grid, name), key=f"scores-{name}")
