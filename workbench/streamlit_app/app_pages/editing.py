"""Edit or wipe the fast-weight memory right after one position and watch the prediction change.
The loaded model is never changed: each edit exists only inside the run that shows it."""

import streamlit as st

from workbench.app_support import caching, widgets
from workbench.plots import prediction_change

st.title("Patch and edit the memory")
lm, seq = widgets.current()

ACTIONS = ("Redirect a recall (rank-one edit)", "Wipe the memory (W_t = 0)")
action = st.radio("Action", ACTIONS, horizontal=True, key="action")
controls = st.columns(3)
with controls[0]:
    layer = widgets.choose_layer(lm, fast_weights_only=True)
with controls[1]:
    head = widgets.choose_head(lm, allow_all=True, label="Heads edited")
mode = controls[2].radio("Mode", ["carry", "readout"], horizontal=True, key="mode",
                         help="carry: later positions read the edited memory; readout: only position t does")

if action == ACTIONS[0] and (why := widgets.key_value_reason(lm, layer)) is not None:
    st.info(f"A rank-one association edit does not apply to layer {layer}: {widgets.plain(why)}. Wiping the memory does.")
    st.stop()
first = seq.scored[0] if seq.scored else len(seq) - 1
position = widgets.choose_position(seq, "Edit the memory after the write at position t (★: a scored query)",
                                   first, "position")
with widgets.errors_shown():
    if action == ACTIONS[0]:
        source = widgets.choose_position(seq, "…so that its key returns what the memory returns at position",
                                         seq.scored[-1] if len(seq.scored) > 1 else 0, "source")
        strength = st.slider("Strength (1 = exact overwrite)", 0.0, 2.0, 1.0, 0.05, key="strength")
        with st.spinner("Running the model with the edited memory…"):
            outcome = caching.redirect(lm, seq, layer, position, source, head, strength, mode)
    else:
        with st.spinner("Running the model with the wiped memory…"):
            outcome = caching.wipe(lm, seq, layer, position, head, mode)

# token ids are names, not quantities: the before and after are shown side by side, never as a delta
tops = st.columns(3)
tops[0].metric(f"Top prediction at position {position}, with the edit", outcome.top_after)
tops[1].metric("Without the edit", outcome.top_before)
tops[2].metric("Top prediction", "changed" if outcome.top_after != outcome.top_before else "unchanged")
if outcome.target is not None:
    st.caption(f"The model's own prediction at the source position is {outcome.target}: "
               f"the edit {'reproduces' if outcome.top_after == outcome.target else 'does not reproduce'} it.")
before, after = st.columns(2)
before.markdown("**Without the edit**")
before.dataframe(outcome.before, hide_index=True)
after.markdown("**With the edit**")
after.dataframe(outcome.after, hide_index=True)
st.plotly_chart(prediction_change(outcome.positions, seq.scored, position,
                                  title=f"p(true next token) without and with the edit at pos {position}"),
                key="prediction_change")
st.markdown(f"**Positions whose top prediction changed** ({len(outcome.changed)})")
st.dataframe(outcome.changed, hide_index=True)
