"""Remove what a model memorized by keeping only the high-curvature components of chosen linear layers
(K-FAC, Merullo et al. 2025), and compare recitation and perplexity before and after the edit, and against
truncating the weights' own SVD. Each edit is a new model that lives only in this browser session."""

import streamlit as st

from workbench.app_support import caching, kfac_editing, token_streams, widgets
from workbench.app_support.downloads import checkpoint_files
from workbench.plots import curvature_spectrum_figure
from workbench.plots.memorization import RECITATION_METRICS, recitation_bars

st.title("K-FAC memorization editing")
st.caption("Write a layer's weights in the eigenbasis of its K-FAC factors A = E[a aᵀ] (inputs) and G = E[g gᵀ] "
           "(output gradients); component (i, j) has curvature λ_i μ_j. The edit keeps the fewest largest components "
           "holding a fraction ρ of the curvature mass: memorized sequences live in the low-curvature rest. The "
           "shipped model is never changed: each edit is a new model, seen only in this browser session.")
lm, seq = widgets.current()
cfg = lm.model.cfg
task = token_streams.stream_task(cfg, seq, lm.task)
if task is None:
    st.warning("No task fits this model, so there are no batches to measure the curvature on: pick a model with a "
               "task (a shipped checkpoint) in the sidebar.")
    st.stop()
canaries = kfac_editing.is_canary_task(task)
if not canaries:
    trained = (f"was trained on {lm.task.get('name')!r}, which plants no canaries" if lm.task
               else "comes with no record of its training")
    st.info(f"{lm.label} {trained}: nothing in its sequences is known to be memorized, so recitation stays near 0 "
            "before and after any edit. For the demonstration, pick the shipped checkpoint **canaries-delta** in the "
            "sidebar (a DeltaNet that recites the canaries it saw 64 and 256 times; see docs/kfac.md), or recite "
            "sequences you type below.")

st.subheader("1. Layers and their curvature")
have = kfac_editing.available_kinds(lm.model)
default_kinds = [k for k in ("mlp_in", "mlp_out") if k in have] or [k for k in ("v", "o") if k in have]
controls = st.columns(2)
layers = controls[0].multiselect("Layers", list(range(cfg.n_layers)), default=list(range(cfg.n_layers)),
                                 format_func=lambda i: f"layer {i}", key="kfac_layers")
kinds = controls[1].multiselect("Linear layers", kfac_editing.kind_choices(lm.model), default=default_kinds,
                                key="kfac_kinds",
                                format_func=lambda k: kfac_editing.KIND_LABELS.get(k, k))
with widgets.errors_shown(), st.expander("Curvature data: batches of the model's task"):
    stream = widgets.choose_stream(lm, seq, key="kfac_stream", batches=8, batch_size=32)
    labels = st.radio("Labels", ["sampled", "gold"], horizontal=True, key="kfac_labels",
                      help="sampled: ŷ ~ the model's own prediction (the true Fisher, as in the paper); gold: the "
                           "next token (the empirical Fisher)")
with widgets.errors_shown():
    sites = kfac_editing.site_names(lm.model, layers, kinds)
    factors = widgets.kfac_factors_with_progress(lm, stream, sites, labels, 0)
    rho = kfac_editing.check_rho(st.number_input("ρ: the fraction of curvature mass kept", value=0.9, step=0.05,
                                                 format="%.3f", key="kfac_rho"))
spectra = caching.per_session("kfac_spectra", (lm.key, stream, sites, labels), lambda: kfac_editing.spectra(factors))
st.plotly_chart(curvature_spectrum_figure(spectra, rho, title=f"K-FAC curvature of {len(sites)} layer(s), "
                                                                f"ρ = {rho:g}"), key="kfac_spectrum")

st.subheader("2. What to recite")
SOURCES = ("The task's canaries", "Sequences you type", "The sidebar's sequence")
source = st.radio("Recite", SOURCES if canaries else SOURCES[1:], horizontal=True, key="kfac_recite")
with widgets.errors_shown():
    if source == SOURCES[0]:
        recite = kfac_editing.canary_set(task)
    elif source == SOURCES[1]:
        typed = st.text_area("Token ids, one sequence per line", " ".join(map(str, seq.tokens)), height=120,
                             key=f"kfac_typed-{lm.key}", help=f"integers in [0, {cfg.d_vocab - 1}]")
        recite = kfac_editing.typed_set(lm.model, typed)
    else:
        recite = kfac_editing.sequence_set(seq)
    prefix0, suffix0 = kfac_editing.default_windows(recite.length)
    controls = st.columns(2)
    prefix = controls[0].number_input("Prompt tokens (prefix)", value=prefix0, step=1,
                                      key=f"kfac_prefix-{recite.length}")
    suffix = controls[1].number_input("Scored tokens (suffix)", value=suffix0, step=1,
                                      key=f"kfac_suffix-{recite.length}")
    kfac_editing.check_windows(recite, int(prefix), int(suffix))
st.caption(f"Reciting {recite.label}: the greedy continuation of the first {int(prefix)} tokens is scored on the next "
           f"{int(suffix)}. strict: all right; loose: 1 − edit distance / {int(suffix)} ≥ 0.75.")

st.subheader("3. Before and after the edit")
with widgets.errors_shown():
    def measure_baseline() -> dict:
        with lm.lock:
            return kfac_editing.unedited_recitation(lm.model, recite, int(prefix), int(suffix))

    baseline = caching.per_session("kfac_baseline", (lm.key, recite, int(prefix), int(suffix)), measure_baseline)
if baseline["strict_acc"] == 0 and baseline["loose_acc"] == 0:
    st.warning(f"The unedited model recites none of {recite.label} (strict 0%, loose 0%): there is no memorized "
               "text here for an edit to remove, so the comparison can only show what the edit costs (perplexity, "
               "agreement). Recite other sequences, or pick **canaries-delta** in the sidebar.")
    if not st.toggle("Compare the edits anyway", key="kfac_anyway"):
        st.stop()
budget = st.radio("The SVD baseline keeps", ["energy", "rank"], horizontal=True, key="kfac_budget",
                  format_func={"energy": "the fraction ρ of Σσ²", "rank": "the fraction ρ of the components"}.get)
with widgets.errors_shown():
    held_out = kfac_editing.held_out_stream(cfg, task, 4, 32, 20_000)
    comparison, edited = widgets.edit_comparison_with_progress(lm, (stream, sites, labels), factors, rho, recite,
                                                               held_out, int(prefix), int(suffix), budget)
summary = comparison.summary
base = summary.iloc[0]
for col, row in zip(st.columns(3), summary.itertuples()):
    col.markdown(f"**{row.model}**" + ("" if row.model == "unedited" else f" (ρ = {rho:g})"))
    edited_row = row.model != "unedited"
    # a delta only where the shown numbers differ; both colour a change toward the edit's aim green (less
    # recitation) and a cost red (higher perplexity)
    ppl = f"{row.perplexity - base.perplexity:+.3f}"
    col.metric("Held-out perplexity", f"{row.perplexity:.3f}", delta_color="inverse",
               delta=ppl if edited_row and f"{row.perplexity:.3f}" != f"{base.perplexity:.3f}" else None)
    points = round(100 * row.strict_acc) - round(100 * base.strict_acc)  # percentage points, of the numbers shown
    col.metric("Strict recitation", f"{row.strict_acc:.0%}", delta_color="inverse",
               delta=f"{points:+d} pp" if edited_row and points else None)
    col.metric(f"Top-{comparison.k} agreement with the unedited model", f"{row.top_k_agreement:.3f}")
st.caption("Arrows: the change from the unedited model, green where recitation falls (the edit's aim), red where "
           "perplexity rises (its cost); no arrow where nothing changed at the precision shown.")
st.caption(f"Perplexity on {held_out.label}" + ("" if held_out.scored is None else
                                                  ", over the predictions the task scores") + ".")
metric = st.selectbox("Recitation metric", RECITATION_METRICS, key="kfac_metric")
st.plotly_chart(recitation_bars(comparison.by_group, recite.group, metric, title=f"{metric} by {recite.group}"),
                key="kfac_recitation")
st.dataframe(summary, hide_index=True, width="stretch")
st.markdown("**The edited layers**")
st.dataframe(comparison.report, hide_index=True, width="stretch")
with st.expander("Recitation of every sequence"):
    st.dataframe(comparison.recitation, hide_index=True, width="stretch")

files = caching.per_session("kfac_files", (lm.key, stream, sites, labels, rho),
                            lambda: checkpoint_files(edited["K-FAC"]))
st.caption("The K-FAC-edited model as a checkpoint (upload both files in the sidebar to open it on every page):")
downloads = st.columns(2)
for col, (name, data) in zip(downloads, files.items()):
    col.download_button(name, data, file_name=name, key=f"kfac_download-{name}")
