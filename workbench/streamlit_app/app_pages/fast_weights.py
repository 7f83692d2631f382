"""Scrub along the sequence and watch one head's fast-weight matrix W_t, its change W_t − W_{t−1} (the
write k_t u_tᵀ for DeltaNet, u_t = hook_delta), its write strength β_t and its spectrum."""

import streamlit as st

from workbench.app_support import caching, widgets
from workbench.plots import fast_weight_heatmap, per_head_over_positions, singular_values_over_positions

st.title("Fast weights")
lm, seq = widgets.current()

controls = st.columns(2)
with controls[0]:
    layer = widgets.choose_layer(lm, fast_weights_only=True)
with controls[1]:
    head = widgets.choose_head(lm)
with st.spinner("Reading the fast weights at every position…"):
    traj = caching.fast_weight_trajectory(lm, seq, layer)


@st.fragment  # moving the slider reruns (and redraws) only this part of the page
def scrub_positions():
    t = st.slider("Position t", 0, len(seq) - 1, seq.scored[0] if seq.scored else len(seq) // 2,
                  key=f"position-{len(seq)}")
    W, write = traj.W[t, head], traj.W[t, head] - traj.before(t)[head]
    stats = st.columns(5)
    stats[0].metric("token at t", seq.tokens[t])
    stats[1].metric("β_t (write strength)", "—" if traj.beta is None else f"{float(traj.beta[t, head]):.3f}")
    stats[2].metric("‖u_t‖ (hook_delta)", "—" if traj.delta is None else f"{float(traj.delta[t, head].norm()):.3f}")
    stats[3].metric("‖W_t‖_F", f"{float(W.norm()):.3f}")
    stats[4].metric("σ₁(W_t)", f"{float(traj.singular_values(head)[t, 0]):.3f}")
    left, right = st.columns(2)
    left.plotly_chart(fast_weight_heatmap(W, title=f"W_t of layer {layer}, head {head}, after the write at pos {t}"),
                      key="state")
    right.plotly_chart(fast_weight_heatmap(write, title=f"the write at pos {t}: W_t − W_(t−1)"), key="update")


scrub_positions()

st.subheader("Along the sequence")
st.caption("The values at the slider's position are the numbers above the matrices.")
curves = st.columns(3 if traj.beta is not None else 1)
curves[0].plotly_chart(singular_values_over_positions(traj.W[:, head], title=f"singular values of W_t, head {head}"),
                       key="spectrum")
if traj.beta is not None:
    curves[1].plotly_chart(per_head_over_positions(traj.beta, None, "β_t", "write strength"), key="beta")
    curves[2].plotly_chart(per_head_over_positions(traj.delta.norm(dim=-1), None, "‖u_t‖ = ‖hook_delta‖", "norm"),
                           key="delta")
