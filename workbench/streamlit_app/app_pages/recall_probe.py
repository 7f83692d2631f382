"""Is each stored pair (key at k_i → value at v_i) in the layer's memory, does it beat its control (the key
with the next pair's value), and how does the recall fidelity fall with the lag since the write, the number
of pairs stored, and key overlap? Opens on the layer where the pairs are stored."""

import pandas as pd
import streamlit as st

from workbench.analysis import aggregate
from workbench.app_support import caching, widgets
from workbench.app_support.probing import (aggregate_samples, control_pairs, convention_pairs, layer_summary,
                                           recall_layer, with_control)
from workbench.app_support.sequences import format_pairs, parse_pairs
from workbench.mixers import NotDefinedForMixer
from workbench.plots import probe_curve

st.title("Associative-recall probe")
st.caption("fidelity = cos(W_tᵀ k_i, v_i); retrieval_error = ‖W_tᵀ k_i − v_i‖ / ‖v_i‖; decodes = the retrieved "
           "vector, read through the head's output and the unembedding, predicts the value token. Dotted: the "
           "control, each key with the next pair's value: a score means something only where it beats its control "
           "(a memory that returns the same vector for every key scores high fidelity on both).")
lm, seq = widgets.current()
probed = [i for i in lm.model.fast_weight_layers if widgets.key_value_reason(lm, i) is None]

CONVENTION_LABELS = {"written": "as written: key and value at the value position",
                     "task": "the task's: key at the key token, value at the value position"}
convention = "written"
if seq.pairs:
    convention = st.radio("Pairs", list(CONVENTION_LABELS), format_func=CONVENTION_LABELS.get, horizontal=True,
                          key="convention", help="what the layer writes at the value position (with a short "
                                                 "convolution its key carries the preceding key token), or the "
                                                 "task's (key token, value) positions taken literally")

# the layer where recall happens: the one whose best head's fidelity beats its control the most, on this sequence
def probe_layer(i: int, pairs):
    """The layer's probe and control on this sequence, or None where its memory cannot be read with a key."""
    try:
        return with_control(lambda p: caching.probe(lm, seq, i, p), pairs)
    except NotDefinedForMixer:
        return None


summary = None
if seq.pairs and probed:
    with st.spinner("Probing every layer…"):
        probes = {i: probe_layer(i, convention_pairs(seq.pairs, convention)) for i in probed}
    if any(v is not None for v in probes.values()):
        summary = layer_summary({i: v for i, v in probes.items() if v is not None})
default = recall_layer(summary) if summary is not None else None

controls = st.columns(3)
with controls[0]:
    layer = widgets.choose_layer(lm, fast_weights_only=True, default=default)
if summary is not None:
    def _said(part) -> str:
        top, dec = part.sort_values("margin").iloc[-1], part.sort_values("decodes").iloc[-1]
        ctrl = "no control" if pd.isna(top["control_fidelity"]) else f"control {top['control_fidelity']:.2f}"
        return (f"layer {int(top['layer'])}: fidelity {top['fidelity']:.2f} ({ctrl}; head {int(top['head'])}), "
                f"decodes up to {dec['decodes']:.0%} (head {int(dec['head'])})")
    st.caption("On this sequence: " + "; ".join(_said(part) for _, part in summary.groupby("layer"))
               + f". The page opened on layer {default}, where fidelity beats its control the most.")
if (why := widgets.key_value_reason(lm, layer)) is not None:
    st.info(f"The associative-recall probe does not apply to layer {layer}: {widgets.plain(why)}. The Fast weights page shows "
            "its state.")
    st.stop()
by = controls[1].selectbox("Group by", ["lag", "n_stored", "key_overlap"], key="by")
metric = controls[2].selectbox("Metric", ["fidelity", "retrieval_error", "decodes"], key="metric")

samples = 1
if seq.task_json is not None:
    samples = st.slider("Task samples to average over (seeds from the sidebar's seed on)", 1, 32, 1, key="samples")
control = None
if samples == 1:
    if not seq.pairs:
        st.info("This sequence comes with no stored pairs to probe: type the pairs below as key_pos:value_pos "
                f"(positions 0–{len(seq) - 1}), e.g. `0:1 2:3`, to probe whether each key retrieves its value.")
    text = st.text_input("Pairs to probe (key_pos:value_pos)", format_pairs(convention_pairs(seq.pairs, convention)),
                         key=f"pairs-{convention}-{hash(seq)}")
    if not text.strip():
        st.stop()
    with widgets.errors_shown():
        pairs = parse_pairs(text, len(seq))
        with st.spinner("Probing…"):
            df, control = with_control(lambda p: caching.probe(lm, seq, layer, p), pairs)
    table = aggregate(df, by)
    if control is not None:
        control = aggregate(control, by)
else:
    with widgets.errors_shown():
        df = widgets.probe_samples_with_progress(lm, seq, samples, layer,
                                                 lambda s: convention_pairs(s.pairs, convention))
        table = aggregate_samples(df, by)
        if len(seq.pairs) >= 2:  # every sample of the task has as many pairs
            ctrl = widgets.probe_samples_with_progress(lm, seq, samples, layer,
                                                       lambda s: control_pairs(convention_pairs(s.pairs, convention)),
                                                       what="control pairs")
            control = aggregate_samples(ctrl.assign(n_stored=ctrl["n_stored"] + 1), by)
    st.caption(f"Mean over {samples} samples; the band is ± one standard error over samples.")

st.plotly_chart(probe_curve(table, by, metric, title=f"layer {layer}: {metric} by {by}", control=control),
                key="probe")
st.dataframe(table, hide_index=True, width="stretch")
