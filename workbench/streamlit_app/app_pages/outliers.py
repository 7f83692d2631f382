"""Outlier features and massive activations over a stream of tokens: the metrics of every layer and hook
site, the neurons that carry them, who writes an outlier dimension of the residual stream, and the
fast-weight state's norm, spectrum and effective rank over position."""

import streamlit as st

from workbench.analysis.outliers import DEFAULT_SITES
from workbench.app_support import caching, widgets
from workbench.app_support.outlier_dashboard import (METRICS, RESIDUAL_SITES, available_sites, hook_neurons,
                                                     metrics_table, top_neuron_table, traced_layers)
from workbench.plots.outliers import contribution_bar, metric_by_layer, neuron_rms_bar, state_over_positions

st.title("Outliers")
st.caption("kurtosis = mean_j s_j⁴ / (mean_j s_j²)² of the per-neuron RMS s_j (1: every neuron alike); "
           "max/median = mean over tokens of max_j |x_j| / median_j |x_j|; massive: |x| > 100 and > 1000 × the "
           "token's median; signal propagation = mean cosine between the hidden states of two tokens of a sequence "
           "(≈ 1: rank collapse).")
lm, seq = widgets.current()
cfg = lm.model.cfg

with widgets.errors_shown():
    stream = widgets.choose_stream(lm, seq, key="outlier_stream")
    have = available_sites(lm.model)
    sites = st.multiselect("Hook sites", have, default=[s for s in DEFAULT_SITES if s in have], key="outlier_sites",
                           help="per-head sites (q, k, v, z, delta) are flattened head-major: neuron = head·d + "
                                "channel")
    stats = widgets.outlier_stats_with_progress(lm, stream, tuple(sites))
table = metrics_table(stats)

st.subheader("Outlier metrics by layer")
controls = st.columns([3, 1])
metric = controls[0].selectbox("Metric", METRICS, key="outlier_metric")
log_y = controls[1].toggle("Log scale", metric in ("kurtosis", "max_median_ratio", "top_ratio"),
                           key=f"outlier_log-{metric}")
st.plotly_chart(metric_by_layer(table, metric, log_y, title=f"{metric} by layer over {stream.label}")
                .update_xaxes(dtick=1), key="outlier_metric_chart")
st.dataframe(table.drop(columns="hook"), hide_index=True, width="stretch")

st.subheader("Top outlier neurons")
controls = st.columns(2)
site = controls[1].selectbox("Site", list(sites), key="outlier_site")
layer = controls[0].selectbox("Layer", traced_layers(stats, site), format_func=lambda i: f"layer {i}", key="outlier_layer")
neurons = hook_neurons(stats, cfg, layer, site)
st.plotly_chart(neuron_rms_bar(neurons, title=f"per-neuron RMS of {site}, layer {layer}"), key="outlier_neurons")
st.caption("rms_ratio = the neuron's RMS / the median RMS of the hook; the five largest at every traced hook:")
st.dataframe(top_neuron_table(stats, cfg), hide_index=True, width="stretch")

st.subheader("Who writes an outlier dimension")
st.caption("The residual stream along one dimension is the sum of direct writes: embeddings, each head, the "
           "attention bias and each MLP. The default dimension is the one of largest RMS there.")
controls = st.columns(4)
w_layer = controls[0].selectbox("Layer", list(range(cfg.n_layers)), format_func=lambda i: f"layer {i}",
                                index=cfg.n_layers - 1, key="writes_layer")
residual = [s for s in RESIDUAL_SITES if s != "resid_mid" or cfg.block_kind(w_layer) == "mixer_mlp"]
w_site = controls[1].selectbox("Residual stream at", residual, index=len(residual) - 1, key="writes_site")
top = caching.top_residual_neuron(lm, stream, w_layer, w_site)
neuron = controls[2].number_input(f"Dimension (0–{cfg.d_model - 1})", value=top, step=1,
                                  key=f"writes_neuron-{w_layer}-{w_site}-{hash(stream)}")
value = controls[3].radio("Show", ["mean", "mean_abs"], horizontal=True, key="writes_value")
with widgets.errors_shown(), st.spinner("Decomposing the residual stream…"):
    writes = caching.residual_writes(lm, stream, w_layer, w_site, int(neuron))
st.plotly_chart(contribution_bar(writes, value, title=f"direct writes to dimension {int(neuron)} of {w_site}, "
                                                      f"layer {w_layer}"), key="outlier_writes")
st.dataframe(writes, hide_index=True, width="stretch")

st.subheader("Fast-weight state over position")
if not lm.model.fast_weight_layers:
    st.info(f"This model's layers ({cfg.mixer_label}) keep no fast-weight state; pick a model with a fast-weight "
            "mixer.")
    st.stop()
controls = st.columns(2)
STATE_LABELS = {"frobenius": "‖W_t‖_F", "effective_rank": "effective rank", "sigma_1": "σ_1", "sigma_2": "σ_2",
                "sigma_3": "σ_3", "sigma_4": "σ_4"}
state_value = controls[0].selectbox("Quantity", list(STATE_LABELS), format_func=STATE_LABELS.get, key="state_value")
state_layer = controls[1].selectbox("Layers", [None] + lm.model.fast_weight_layers, key="state_layer",
                                    format_func=lambda i: "all layers" if i is None else f"layer {i}")
with st.spinner("Reading the fast-weight state at every position…"):
    states = caching.state_table(lm, stream, 4)
st.plotly_chart(state_over_positions(states, state_value, state_layer, yaxis_title=STATE_LABELS[state_value],
                                     title=f"{STATE_LABELS[state_value]} over position (mean over {stream.label})"),
                key="outlier_states")
