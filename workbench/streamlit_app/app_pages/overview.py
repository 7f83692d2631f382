"""The chosen model and what it predicts along the chosen sequence."""

import streamlit as st

from workbench.app_support import caching, widgets
from workbench.app_support.predictions import recall_accuracy

st.title("Model and sequence")
lm, seq = widgets.current()
cfg = lm.model.cfg

cols = st.columns(4)
cols[0].metric("Mixer", cfg.mixer_label)
cols[1].metric("Layers × heads", f"{cfg.n_layers} × {cfg.n_heads}")
cols[2].metric("Parameters", f"{lm.model.num_params():,}")
cols[3].metric("Vocabulary", cfg.d_vocab)
with st.expander("config.json"):
    st.json(cfg.to_dict())

st.subheader(f"Predictions along the {seq.source} ({len(seq)} tokens)")
table = caching.prediction_table(lm, seq)
accuracy = recall_accuracy(table)
if accuracy is not None:
    st.metric("Recall accuracy on the task's queries (★ rows)", f"{accuracy:.0%}")
st.dataframe(table, hide_index=True, width="stretch")
