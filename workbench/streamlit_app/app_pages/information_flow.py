"""Where does the answer flow? Activation patching between a clean and a corrupted input, one site at a time, as a
layer × position heatmap; a cell's per-head breakdown; attribution patching's estimate beside it; and path knockout
inside one layer's memory as a source × target heatmap, a cell's per-head breakdown below it."""

import math

import streamlit as st

from workbench.analysis.patching import available_sites, head_resolved
from workbench.app_support import caching, information_flow, widgets
from workbench.plots import attribution_scatter, head_effects_bar, knockout_heatmap, patching_heatmap

SITE_HELP = {
    "resid_pre": "residual stream entering the block", "resid_mid": "residual between mixer and MLP",
    "resid_post": "residual stream leaving the block", "attn_out": "mixer output", "mlp_out": "MLP output",
    "z": "each head's read-out (hook_z)", "q": "queries", "k": "keys", "v": "values",
    "state_readout": "fast weights W_t, read-out mode (only o_t reads the patch)",
    "state_carry": "fast weights W_t, carry mode (the rest of the sequence continues from it)",
    "write": "what the memory writes at t", "beta": "write strength β_t", "decay": "memory decay",
}
INPUTS = ("From the task: change the key a query reads", "Change one token", "Type both inputs")

st.title("Information flow")
st.caption("Activation patching: run one input, replace one activation with the other input's, and measure the "
           "logit difference answer − distractor at the last position. Denoising patches the clean activation into "
           "the corrupted run (1 = the clean metric is restored); noising patches the corrupted one into the clean "
           "run (1 = the metric falls as far as the corruption takes it).")
lm, seq = widgets.current()
model = lm.model

with widgets.errors_shown():
    choice = st.radio("Clean and corrupted inputs", INPUTS, horizontal=True, key="flow_inputs")
    if choice == INPUTS[0]:
        found = information_flow.queries(seq)
        if not found:
            st.info("The sidebar's sequence has no query of a stored association (sample it from a task such as "
                    "MQAR); choose “Change one token” or “Type both inputs”.")
            st.stop()
        start = caching.flow_default_query(lm, seq)
        query = st.selectbox("Query position (the clean input ends there)", found, index=found.index(start),
                             format_func=lambda t: f"{t}: token {seq.tokens[t]} ★", key=f"flow_query-{len(seq)}")
        inputs = information_flow.task_pair(seq, query, model.cfg.d_vocab)
    elif choice == INPUTS[1]:
        cols = st.columns(2)
        with cols[0]:
            position = widgets.choose_position(seq, "Position to corrupt", 0, "flow_position")
        token = cols[1].number_input("Corrupted token id", min_value=0, max_value=model.cfg.d_vocab - 1,
                                     value=(seq.tokens[0] + 1) % model.cfg.d_vocab, step=1, key="flow_token")
        inputs = information_flow.edited_pair(model, seq, position, int(token))
    else:
        clean_text = st.text_input("Clean token ids", " ".join(map(str, seq.tokens)), key="flow_clean")
        first_changed = [(seq.tokens[0] + 1) % model.cfg.d_vocab, *seq.tokens[1:]]
        corrupted_text = st.text_input("Corrupted token ids (same length)", " ".join(map(str, first_changed)),
                                       key="flow_corrupted")
        inputs = information_flow.typed_pair(model, clean_text, corrupted_text)
    st.caption(f"Corruption: {inputs.note}.")

    tag = f"{hash((inputs.clean, inputs.corrupted))}"
    cols = st.columns(4)
    answer = int(cols[0].number_input("Answer token", 0, model.cfg.d_vocab - 1, inputs.answer, key=f"flow_answer-{tag}"))
    distractor = int(cols[1].number_input("Distractor token", 0, model.cfg.d_vocab - 1, inputs.distractor,
                                          key=f"flow_distractor-{tag}"))
    information_flow.check_metric_tokens(answer, distractor, model.cfg.d_vocab)
    inputs = information_flow.FlowInputs(inputs.clean, inputs.corrupted, answer, distractor, inputs.note)
    sites = available_sites(model)
    default_site = next((s for s in ("state_carry", "z") if s in sites), sites[0])
    with cols[2]:
        site = st.selectbox("Site", sites, index=sites.index(default_site), key="flow_site",
                            format_func=lambda s: f"{s}: {SITE_HELP.get(s, s)}")
    direction = cols[3].radio("Direction", ["denoising", "noising"], key="flow_direction")

    with st.spinner(f"Patching {site} at every layer and position…"):
        df = caching.flow_sweep(lm, inputs, site, direction)

clean_m, corrupted_m = df.attrs["clean_metric"], df.attrs["corrupted_metric"]
m = st.columns(3)
m[0].metric("Metric on the clean input", f"{clean_m:.4g}")
m[1].metric("Metric on the corrupted input", f"{corrupted_m:.4g}")
m[2].metric("Cells swept", len(df))
value = "normalized"
if not math.isfinite(clean_m - corrupted_m) or clean_m == corrupted_m:
    st.warning("The clean and corrupted inputs give the same metric, so there is nothing to restore: the heatmap "
               "shows the raw change of the metric instead of the normalized effect.")
    value = "effect"

labels = [f"{a}" if a == b else f"{a}→{b}" for a, b in zip(inputs.clean, inputs.corrupted)]
fig = patching_heatmap(df, site, value, position_labels=labels,
                       title=f"{site}: {direction}, {'normalized effect' if value == 'normalized' else 'effect'}")
event = st.plotly_chart(fig, key="flow_heatmap", on_select="rerun", selection_mode="points")

cells = [(int(a), int(b)) for a, b in zip(df["layer"], df["position"])]
clicked = None
points = (getattr(getattr(event, "selection", None), "points", None) or []) if event is not None else []
if points:
    point = points[0]
    clicked = (int(point.get("y", -1)), int(point.get("x", -1)))
if clicked not in cells:
    best = df.loc[df[value].abs().idxmax()] if df[value].notna().any() else df.iloc[0]
    clicked = None
    default = (int(best["layer"]), int(best["position"]))
else:
    default = clicked
chosen = st.selectbox("Cell (or click one on the heatmap)", range(len(cells)), index=cells.index(default),
                      format_func=lambda i: f"layer {cells[i][0]}, position {cells[i][1]}",
                      key=f"flow_cell-{site}-{len(cells)}")
cell = clicked if clicked is not None else cells[chosen]
layer, position = cell

if head_resolved(site):
    with widgets.errors_shown(), st.spinner("Patching each head…"):
        per_head = caching.flow_heads(lm, inputs, site, layer, position, direction)
    st.plotly_chart(head_effects_bar(per_head, value, title=f"{site} at layer {layer}, position {position}: each head "
                                     "patched alone"), key="flow_heads")
    st.dataframe(per_head, hide_index=True)
else:
    st.info(f"{site} has no head axis (it is the whole residual or sublayer output): no per-head breakdown.")

if st.checkbox("Compare with attribution patching (the gradient estimate)", key="flow_attribution"):
    with widgets.errors_shown(), st.spinner("One backward pass per group of sites…"):
        estimate, agreement = caching.flow_attribution(lm, inputs, site, direction, df)
    st.plotly_chart(attribution_scatter(df, estimate, value, agreement=agreement), key="flow_scatter")
    st.dataframe(agreement, hide_index=True)

# ---------------------------------------------------------------------------------------------- path knockout
st.subheader("Path knockout inside the recurrence")
st.caption("On the clean input: block what a source position writes into one layer's memory from being read at a "
           "target position (exactly: through the effective attention where the layer is linear in its values, "
           "else by re-running its recurrence without the source's write), and measure the change of the same "
           "logit difference. Negative: the path carried the answer.")
ko_layers = model.mixer_layers
kcols = st.columns(2)
ko_layer = kcols[0].selectbox("Layer", ko_layers, key="flow_ko_layer")
head_options = [None, *range(model.cfg.n_heads)]
ko_head = kcols[1].selectbox("Head", head_options, key="flow_ko_head",
                             format_func=lambda h: "every head together" if h is None else f"head {h}")
with widgets.errors_shown(), st.spinner("Knocking out every source position…"):
    ko = caching.flow_knockout(lm, inputs, ko_layer, ko_head)
ko_event = st.plotly_chart(knockout_heatmap(ko, labels=[str(t) for t in inputs.clean]), key="flow_ko_heatmap",
                           on_select="rerun", selection_mode="points")
pairs = [(int(s), int(t)) for s, t in zip(ko["source"], ko["target"])]
ko_points = (getattr(getattr(ko_event, "selection", None), "points", None) or []) if ko_event is not None else []
ko_clicked = None
if ko_points:  # axis labels read "position: token"
    try:
        ko_clicked = (int(str(ko_points[0].get("x")).split(":")[0]), int(str(ko_points[0].get("y")).split(":")[0]))
    except ValueError:
        ko_clicked = None
if ko_clicked not in pairs:
    ko_clicked = None
    ko_default = pairs[int(ko["effect"].abs().values.argmax())]
else:
    ko_default = ko_clicked
ko_choice = st.selectbox("Source → target (or click one on the heatmap)", range(len(pairs)),
                         index=pairs.index(ko_default), format_func=lambda i: f"{pairs[i][0]} → {pairs[i][1]}",
                         key=f"flow_ko_pair-{ko_layer}-{len(pairs)}")
source, target = ko_clicked if ko_clicked is not None else pairs[ko_choice]
with widgets.errors_shown(), st.spinner("Knocking out each head alone…"):
    ko_heads = caching.flow_knockout_heads(lm, inputs, ko_layer, source, target)
st.plotly_chart(head_effects_bar(ko_heads, "effect", title=f"layer {ko_layer}: source {source} → target {target}, "
                                 "each head knocked out alone"), key="flow_ko_heads")
st.dataframe(ko_heads[["head", "route", "metric", "clean_metric", "effect"]], hide_index=True)
