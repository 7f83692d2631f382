"""Per-head attention over the tokens: softmax patterns, or the exact effective attention of
fast-weight layers (hook_z = A · hook_v), and the head scores read from it."""

import streamlit as st
import torch

from workbench.app_support import caching, widgets
from workbench.plots import attention_heatmap, head_scores_bar

st.title("Attention")
st.caption("For linear and delta-rule layers A is the exact effective attention: hook_z = A · hook_v. "
           "Delta-rule weights are signed (red: the value is subtracted).")
lm, seq = widgets.current()

layer = widgets.choose_layer(lm)
heads = st.multiselect("Heads", list(range(lm.model.cfg.n_heads)), default=list(range(min(4, lm.model.cfg.n_heads))),
                       format_func=lambda h: f"head {h}", key="heads")
magnitude = st.toggle("Show |A| (magnitude only)", key="magnitude")

with st.spinner("Computing the effective attention…"), widgets.errors_shown():  # a memory may not have one (SRWM)
    A = caching.attention(lm, seq, layer)
cols = st.columns(2)
for i, h in enumerate(heads):
    shown = A[h].abs() if magnitude else A[h]
    cols[i % 2].plotly_chart(attention_heatmap(shown, widgets.token_labels(seq), title=f"layer {layer}, head {h}"),
                             key=f"attention-{h}")

st.subheader("Head scores on |A|")
with st.spinner("Scoring every head…"):
    scores = caching.head_scores(lm, seq)
for name in ("previous_token", "induction"):
    grid = torch.tensor(scores.pivot(index="layer", columns="head", values=name).values)
    st.plotly_chart(head_scores_bar(grid, name), key=f"scores-{name}")
