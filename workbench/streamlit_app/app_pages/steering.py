"""Steer the model at one layer: add a direction to the residual stream (contrastive activation addition) or to
the fast-weight state, and compare the next-token distribution side by side. The loaded model is never changed:
each steered run exists only inside the context that computes it."""

import json

import streamlit as st

from workbench.app_support import caching, token_streams, widgets
from workbench.app_support.steering import SOURCES
from workbench.plots import next_token_shift, steering_sweep_plot

st.title("Steering")
lm, seq = widgets.current()
cfg = lm.model.cfg
task = token_streams.stream_task(cfg, seq, lm.task)

controls = st.columns(3)
with controls[0]:
    layer = widgets.choose_layer(lm)
sources = SOURCES if task is not None else SOURCES[1:]
source = controls[1].radio("Direction source", sources, key="steer_source",
                           help="contrastive prompts: the task's sequences ending in token A minus the same ending in "
                                "token B (residual: their mean activation; state: their mean fast weights); a token's "
                                "unembedding: the residual direction that raises its logit most")
mode = controls[2].radio("State steering mode", ["readout", "carry"], horizontal=True, key="steer_mode",
                         help="readout: only the outputs that read the steered states change; carry: the state steered "
                              "at the first chosen position is carried through the rest of the sequence")
tokens = st.columns(4)
last = int(seq.tokens[-1])
token_a = int(tokens[0].number_input("Token A", 0, cfg.d_vocab - 1, last, key="steer_token_a"))
token_b = int(tokens[1].number_input("Token B (contrast)", 0, cfg.d_vocab - 1, (last + 1) % cfg.d_vocab,
                                     key="steer_token_b", disabled=source == SOURCES[1]))
n_prompts = int(tokens[2].number_input("Contrastive prompts", 1, 256, 16, key="steer_n",
                                       disabled=source == SOURCES[1]))
seed = int(tokens[3].number_input("Seed of the prompts", 0, 2**31 - 1, 0, key="steer_seed",
                                  disabled=source == SOURCES[1]))
positions = st.multiselect("Steer at positions", list(range(len(seq))), default=[len(seq) - 1], key="steer_positions",
                           help="residual steering adds the vector at each; state steering edits W_t after each write "
                                "(carry mode: the first only)")
strength = st.slider("Strength", -16.0, 16.0, 4.0, 0.5, key="steer_strength")
if not positions:
    st.info("Choose at least one position to steer at.")
    st.stop()

task_json = json.dumps(task, sort_keys=True) if task is not None else None
dirs_key = (layer, source, task_json, n_prompts, seed, token_a, token_b)
with widgets.errors_shown():
    with st.spinner("Computing the steering directions…"):
        dirs = caching.steering_directions(lm, *dirs_key)
    with st.spinner("Running the model with and without steering…"):
        table = caching.steering_table(lm, seq, layer, dirs, dirs_key, tuple(sorted(positions)), strength, mode)

st.caption(f"Direction: {dirs.label}; residual vector norm {float(dirs.residual.norm()):.3g}"
           + ("" if dirs.state is None else f"; state direction norm {float(dirs.state.norm()):.3g}"))
runs = [c for c in table.columns if c != "token"]
tops = st.columns(len(runs))
for col, run in zip(tops, runs):
    col.metric(f"Top next token ({run})", str(int(table.loc[table[run].idxmax(), "token"])))
if dirs.state is None:
    st.info(f"State steering does not apply here: {widgets.plain(dirs.state_note)}.")
st.plotly_chart(next_token_shift(table, title=f"Next-token distribution at the last position (strength {strength:g})"),
                key="steering_shift")
st.dataframe(table, hide_index=True)

if st.toggle("Sweep the strength (metric: logit A − logit B at the last position; perplexity on held-out task "
             "sequences, over the predictions the task scores)", key="steer_sweep"):
    peak = abs(strength) or 1.0
    strengths = tuple(round(peak * f, 6) for f in (-1.0, -0.5, 0.0, 0.5, 1.0))
    heldout = (token_streams.task_stream(cfg, task, 1, 8, seed + 1) if task is not None
               else token_streams.sequence_stream(seq))
    with widgets.errors_shown(), st.spinner("Sweeping the strength…"):
        sweep = caching.steering_sweep(lm, seq, layer, dirs, dirs_key, tuple(sorted(positions)), mode, strengths,
                                       token_a, token_b, heldout)
    st.plotly_chart(steering_sweep_plot(sweep, metric_name=f"logit {token_a} − logit {token_b}"), key="steering_sweep")
    st.caption(f"Held-out: {heldout.label}.")
    st.dataframe(sweep, hide_index=True)
