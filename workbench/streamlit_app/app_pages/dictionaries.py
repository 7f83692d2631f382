"""Sparse dictionaries of what the model computes: a WriteSAE (rank-one atoms for one head's state writes, each one
installable in place of the native write) or an ordinary SAE on a hook. Train one here on the app's tokens, or
upload a saved one; see how well it reconstructs, which atoms are used and where, and for a WriteSAE whether
installing an atom's write beats removing the write. The trained dictionary lives only in this browser session."""

import streamlit as st

from workbench.analysis.dictionaries.codes import SPARSITIES
from workbench.app_support import caching, dictionary_widgets, widgets
from workbench.app_support.dictionaries import (KIND_HELP, KINDS, MAX_ATOMS, MAX_FIRINGS, MAX_STEPS, Site,
                                                default_hook, dictionary_config, kind_of, no_writes_message,
                                                top_positions, win_rates)
from workbench.plots import atom_usage_histogram, dictionary_training_curve, substitution_comparison

SOURCES = ("Train one here", "Upload a saved dictionary")

st.title("Dictionaries")
st.caption("A sparse dictionary rewrites each activation as a few active atoms. A WriteSAE (Young 2026) decomposes "
           "the rank-one write k uᵀ a delta-rule memory adds to its state at each position into rank-one atoms, so an "
           "atom can be installed in place of the native write; an SAE (top-k or ReLU + L1) decomposes the vectors of "
           "any hook. Training is seeded and runs once per setting in this browser session.")
lm, seq = widgets.current()
model = lm.model

source = st.radio("Dictionary", SOURCES, horizontal=True, key="dict_source")
upload = None
with widgets.errors_shown():
    if source == SOURCES[1]:
        upload = dictionary_widgets.uploaded()
        if upload is None:
            st.info("Upload a dictionary saved with workbench.analysis.dictionaries.save_dictionary (or downloaded "
                    "from this page), then choose where it reads.")
            st.stop()
        kind = kind_of(upload[1])
        st.caption(widgets.plain(f"The upload is a {kind}: {upload[1].cfg.to_dict()}."))
    else:
        kind = st.radio("Kind", KINDS, horizontal=True, key="dict_kind", format_func=KIND_HELP.get)

cols = st.columns(2)
if kind == "WriteSAE":
    layers, why = caching.dictionary_write_layers(lm)
    if not layers:
        st.info(widgets.plain(no_writes_message(model, why)))
        st.stop()
    layer = cols[0].selectbox("Layer (those whose state takes rank-one writes)", layers, key="dict_layer",
                              format_func=lambda i: f"layer {i}: {model.mixer(i).label(model.mixer(i).cfg)}")
    head = cols[1].selectbox("Head", list(range(model.cfg.n_heads)), key="dict_head",
                             format_func=lambda h: f"head {h}")
    site = Site("WriteSAE", layer=int(layer), head=int(head))
    if why:
        st.caption("Not offered: " + "; ".join(widgets.plain(r) for r in why.values()))
else:
    hooks = caching.dictionary_hooks(lm)
    hook = cols[0].selectbox("Hook (every hook a forward pass fires)", hooks, index=hooks.index(default_hook(hooks)),
                             key="dict_hook")
    site = Site("SAE", hook=hook)

with widgets.errors_shown():
    with st.expander("Tokens to train and measure on", expanded=False):
        stream = widgets.choose_stream(lm, seq, key="dict_stream", batches=4, batch_size=16)
    if upload is None:
        c = st.columns(5)
        n_atoms = int(c[0].number_input("Atoms", 1, MAX_ATOMS, 64, key="dict_atoms",
                                        help="the dictionary's size (latents of an SAE)"))
        sparsity = c[1].selectbox("Sparsity", SPARSITIES, key="dict_sparsity",
                                  help="topk: the k largest codes per row (Gao et al. 2024); relu_l1: ReLU codes with "
                                       "an L1 penalty (Bricken et al. 2023)")
        k = int(c[2].number_input("k (top-k)", 1, MAX_ATOMS, 4, key="dict_k", disabled=sparsity != "topk"))
        l1 = float(c[2].number_input("L1 penalty", 0.0, 10.0, 1e-3, format="%.4f", key="dict_l1")
                   if sparsity == "relu_l1" else 1e-3)
        steps = int(c[3].number_input("Training steps", 1, MAX_STEPS, 200, key="dict_steps",
                                      help=f"Adam on minibatches of 256 rows; at most {MAX_STEPS} in the app"))
        seed = int(c[4].number_input("Seed", 0, 2**31 - 1, 0, key="dict_seed"))
        cfg = dictionary_config(kind, n_atoms, sparsity, k if sparsity == "topk" else 1, l1, steps, seed)
        report = dictionary_widgets.trained(lm, stream, site, cfg)
        report_key = (lm.key, stream, site, cfg)
    else:
        report = dictionary_widgets.measured(lm, stream, site, *upload)
        report_key = (lm.key, stream, site, upload[0])

metrics = report.metrics
n_atoms_total = len(report.usage)
m = st.columns(4)
m[0].metric("Explained variance", f"{metrics['explained_variance']:.3f}",
            help="1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over every row of the tokens")
if "relative_mse" in metrics:
    m[1].metric("Relative error", f"{metrics['relative_mse']:.3f}", help="Σ‖X − X̂‖²_F / Σ‖X‖²_F over the writes")
else:
    m[1].metric("Mean squared error", f"{metrics['mse']:.4g}", help="per vector, summed over its numbers")
m[2].metric("Active atoms per row (L0)", f"{metrics['l0']:.2f}")
m[3].metric("Dead atoms", f"{metrics['dead']} of {n_atoms_total}", help="never active on these tokens")
st.caption(widgets.plain(f"{report.site.kind} at {report.site.label}, measured on {stream.label}."))

plots = st.columns(2)
if report.history is not None:
    plots[0].plotly_chart(dictionary_training_curve(report.history, title=f"Training curve ({kind})"),
                          key="dict_curve")
else:
    plots[0].info("An uploaded dictionary comes without its training history: no training curve.")
plots[1].plotly_chart(atom_usage_histogram(report.usage, title="Atom usage"), key="dict_usage")

st.subheader("Where an atom fires")
usage = report.usage.sort_values("fires", ascending=False)
alive = [int(a) for a, f in zip(usage["atom"], usage["fires"]) if f > 0]
if not alive:
    st.warning("No atom is active on these tokens: there are no positions to show.")
else:
    atom = st.selectbox("Atom (most used first)", alive, key=f"dict_atom-{n_atoms_total}",
                        format_func=lambda a: f"atom {a}: fires on {int(report.usage.fires[a])} rows")
    st.dataframe(top_positions(model, report, stream, int(atom)), hide_index=True, width="stretch")

if kind == "WriteSAE":
    st.subheader("Substitution: install the atom's write, or remove the write?")
    st.caption("At each firing (an atom active on the write at position t), three carry-mode runs differ only in this "
               "head's state after t: the native write replaced by the firing atom scaled to the write's norm, "
               "removed, or replaced by a random non-firing atom at the same norm. Below the diagonal the atom does "
               "better; the bars count how often, with Wilson 95 % intervals (over the predictions the task scores, "
               "from t on).")
    if st.toggle("Run the substitution test", key="dict_substitution"):
        c = st.columns(3)
        n_firings = int(c[0].number_input("Firings", 1, MAX_FIRINGS, 32, key="dict_firings",
                                          help="drawn at random (seeded) from every firing on the tokens"))
        sub_seed = int(c[1].number_input("Seed of the draw", 0, 2**31 - 1, 0, key="dict_sub_seed"))
        metric = c[2].radio("Metric", ["loss", "kl"], horizontal=True, key="dict_sub_metric",
                            format_func={"loss": "next-token loss", "kl": "KL to the native run"}.get)
        with widgets.errors_shown():
            results = dictionary_widgets.substitution(lm, report_key, report, stream, n_firings, sub_seed)
        rates = win_rates(results)
        st.plotly_chart(substitution_comparison(results, rates, metric), key="dict_substitution_plot")
        st.dataframe(rates, hide_index=True)

st.download_button("Download the dictionary (.safetensors)",
                   dictionary_widgets.download_bytes(report_key, report.module),
                   file_name=report.site.file_name, key="dict_download",
                   help="load it with workbench.analysis.dictionaries.load_dictionary, or upload it here")
