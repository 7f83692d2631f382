"""The chosen model and what it predicts along the chosen sequence: where the task's keys, values and queries
are, and how sure the model is of each next token."""

import streamlit as st

from workbench.app_support import caching, widgets
from workbench.app_support.predictions import position_roles, recall_accuracy
from workbench.plots import lens_by_layer, next_token_probability

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
roles = position_roles(len(seq), seq.pairs, seq.scored)
accuracy = recall_accuracy(table)
if accuracy is not None:
    n = len(seq.scored)
    label = (f"Recall accuracy on the task's {n} queries (★ rows)" if seq.pairs else
             f"Next-token accuracy on the {n} scored positions (★ rows)")
    st.metric(label, f"{accuracy:.0%}")
st.plotly_chart(next_token_probability(table, roles, title=f"p(next token) along the {seq.source}"),
                key="p_next")
if seq.pairs:
    st.caption("Squares: key positions, diamonds: value positions, stars: the queries the task scores (red where "
               "the top prediction is wrong). The grey line is the probability of the true next token.")
shown = table.assign(role=[("★ " if r in ("query", "scored") else "") + r for r in roles])
st.dataframe(shown, hide_index=True, width="stretch")

with st.expander("Lenses: what each layer would predict"):
    st.caption("The logit lens decodes the residual stream after each layer (0: the embeddings) with the model's "
               "own final norm and unembedding; the tuned lens first applies a per-layer affine translator "
               "h + A h + b trained to match the final layer (Belrose et al. 2023). KL(final ‖ lens) is 0 at the "
               "last layer, which is the model itself.")
    if len(seq) < 2:
        st.info("The lenses compare next-token predictions: type at least two tokens.")
    else:
        with widgets.errors_shown():
            stream, steps = None, 0
            if st.toggle("Train a tuned lens", key="lens_tuned"):
                stream = widgets.choose_stream(lm, seq, key="lens_stream")
                steps = int(st.number_input("Training steps", min_value=1, max_value=1000, value=100,
                                            key="lens_steps"))
            with st.spinner("Decoding every layer…" if not steps else f"Training a tuned lens for {steps} steps…"):
                lens_table = caching.lens_layers(lm, seq, stream, steps)
        measures = {"kl": "KL to the final layer", "ppl": "perplexity", "ce": "cross-entropy"}
        lens_metric = st.radio("Measure", list(measures), horizontal=True, key="lens_metric", format_func=measures.get)
        title = f"{measures[lens_metric]} by layer along the {seq.source}"
        st.plotly_chart(lens_by_layer(lens_table, lens_metric, title=title), key="lens_chart")
        st.dataframe(lens_table, hide_index=True, width="stretch")
