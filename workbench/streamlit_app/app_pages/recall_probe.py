"""Is each stored pair (key at k_i → value at v_i) in the layer's memory, and how does the recall
fidelity fall with the lag since the write, the number of pairs stored, and key overlap?"""

import streamlit as st

from workbench.analysis import aggregate
from workbench.app_support import caching, widgets
from workbench.app_support.sequences import format_pairs, parse_pairs
from workbench.plots import probe_curve

st.title("Associative-recall probe")
st.caption("fidelity = cos(W_tᵀ k_i, v_i); retrieval_error = ‖W_tᵀ k_i − v_i‖ / ‖v_i‖; decodes = the retrieved "
           "vector, read through the head's output and the unembedding, predicts the value token.")
lm, seq = widgets.current()

controls = st.columns(3)
with controls[0]:
    layer = widgets.choose_layer(lm, fast_weights_only=True)
if (why := widgets.key_value_reason(lm, layer)) is not None:
    st.info(f"The associative-recall probe does not apply to layer {layer}: {why}. The Fast weights page shows "
            "its state.")
    st.stop()
by = controls[1].selectbox("Group by", ["lag", "n_stored", "key_overlap"], key="by")
metric = controls[2].selectbox("Metric", ["fidelity", "retrieval_error", "decodes"], key="metric")

samples = 1
if seq.task_json is not None:
    samples = st.slider("Task samples to average over (seeds from the sidebar's seed on)", 1, 32, 1, key="samples")
if samples == 1:
    text = st.text_input("Pairs to probe (key_pos:value_pos)", format_pairs(seq.pairs), key=f"pairs-{hash(seq)}")
    with widgets.errors_shown():
        pairs = parse_pairs(text, len(seq))
        with st.spinner("Probing…"):
            df = caching.probe(lm, seq, layer, pairs)
else:
    df = widgets.probe_samples_with_progress(lm, seq, samples, layer)

table = aggregate(df, by)
st.plotly_chart(probe_curve(table, by, metric, title=f"layer {layer}: {metric} by {by}"), key="probe")
st.dataframe(table, hide_index=True, width="stretch")
