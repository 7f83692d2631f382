"""Per-head attention over the tokens: softmax patterns, or the exact effective attention of
fast-weight layers (hook_z = A · hook_v), and the head scores read from it."""

import streamlit as st
import torch

from workbench.app_support import caching, widgets
from workbench.mixers import NotDefinedForMixer
from workbench.plots import attention_heatmap, head_scores_bar

st.title("Attention")
st.caption("For linear and delta-rule layers A is the exact effective attention: hook_z = A · hook_v. "
           "Delta-rule weights are signed (red: the value is subtracted).")
lm, seq = widgets.current()

layer = widgets.choose_layer(lm)
heads = st.multiselect("Heads", list(range(lm.model.cfg.n_heads)), default=list(range(min(4, lm.model.cfg.n_heads))),
                       format_func=lambda h: f"head {h}", key="heads")
magnitude = st.toggle("Show |A| (magnitude only)", key="magnitude")

try:
    with st.spinner("Computing the effective attention…"):
        A = caching.attention(lm, seq, layer)
except NotDefinedForMixer as e:  # the layer's output is not linear in its values: say so, show the rest
    st.info(str(e))
    A = None
cols = st.columns(2)
for i, h in enumerate(heads if A is not None else []):
    shown = A[h].abs() if magnitude else A[h]
    cols[i % 2].plotly_chart(attention_heatmap(shown, widgets.token_labels(seq), title=f"layer {layer}, head {h}"),
                             key=f"attention-{h}")

st.subheader("Head scores on |A|")
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
