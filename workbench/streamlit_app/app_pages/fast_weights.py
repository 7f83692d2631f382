"""Scrub along the sequence and watch one head's fast-weight matrix W_t, its change W_t − W_{t−1} (the
write k_t u_tᵀ for DeltaNet, u_t = hook_delta), its write strength β_t and its spectrum."""

import plotly.graph_objects as go
import streamlit as st

from workbench.app_support import caching, widgets
from workbench.plots import (fast_weight_heatmap, mark_position, per_head_over_positions,
                             singular_values_over_positions)

st.title("Fast weights")
lm, seq = widgets.current()

controls = st.columns(2)
with controls[0]:
    layer = widgets.choose_layer(lm, fast_weights_only=True)
with controls[1]:
    head = widgets.choose_head(lm)
with st.spinner("Reading the fast weights at every position…"):
    traj = caching.fast_weight_trajectory(lm, seq, layer)

fixed, index, axes = None, 0, traj.axes  # a state of more than two axes is drawn one slice at a time
if len(traj.axes) > 2:
    slicing = st.columns(2)
    fixed = slicing[0].selectbox(
        "Slice the state along", list(range(len(traj.axes))), format_func=lambda a: traj.axes[a], key="slice_axis",
        help=f"the state of a head is {' × '.join(traj.axes)}; the matrices show it with one axis fixed")
    index = slicing[1].slider(f"index along {traj.axes[fixed]}", 0, int(traj.W.shape[2 + fixed]) - 1, 0,
                              key=f"slice_index-{fixed}")
    axes = tuple(a for i, a in enumerate(traj.axes) if i != fixed)
    if len(axes) > 2:  # more axes still: the rows unfold all but the last
        axes = (" · ".join(axes[:-1]), axes[-1])
    st.caption(f"Showing {traj.axes[fixed]} = {index}: a {axes[0]} × {axes[1]} slice of each head's "
               f"{' × '.join(traj.axes)} state; the spectra below are of its unfolding "
               f"[{' · '.join(traj.axes[:-1])}, {traj.axes[-1]}].")


clip = st.toggle("Clip the colour scale of W_t at the 99th percentile of |W_t|", key="clip",
                 help="one large column can wash out the rest of the matrix: end the scale at the 99% quantile of "
                      "|entries| (larger ones take the end colours)")
W_head = traj.W[:, head]
spectrum = singular_values_over_positions(W_head.reshape(W_head.shape[0], -1, W_head.shape[-1]),
                                          title=f"singular values of W_t, head {head}")


@st.fragment  # moving the slider reruns (and redraws) only this part of the page
def scrub_positions():
    t = st.slider("Position t", 0, len(seq) - 1, seq.scored[0] if seq.scored else len(seq) // 2,
                  key=f"position-{len(seq)}")
    W = traj.matrix(traj.W[t, head], fixed, index)
    write = W - traj.matrix(traj.before(t)[head], fixed, index)
    stats = st.columns(5)
    stats[0].metric("token at t", widgets.token_labels(seq)[t])
    beta_label = "β_t (write strength)" if traj.beta is None or traj.beta.dim() == 2 else "β_t (mean over gates)"
    stats[1].metric(beta_label, "—" if traj.beta is None else f"{float(traj.beta_per_head[t, head]):.3f}")
    stats[2].metric("‖u_t‖ (hook_delta)", "—" if traj.delta is None else f"{float(traj.delta_norm[t, head]):.3f}")
    stats[3].metric("‖W_t‖_F", f"{float(traj.W[t, head].norm()):.3f}")
    stats[4].metric("σ₁(W_t)", f"{float(traj.singular_values(head)[t, 0]):.3f}")
    where = f"layer {layer}, head {head}, pos {t}"
    left, right = st.columns(2)
    left.plotly_chart(fast_weight_heatmap(W, title=f"W_t: {where}", axes=axes, clip=0.99 if clip else None),
                      key="state")
    right.plotly_chart(fast_weight_heatmap(write, title=f"W_t − W_(t−1): {where}", axes=axes), key="update")

    st.subheader("Along the sequence")
    st.caption(f"The dashed line marks the slider's position t = {t}; the values there are the numbers above the "
               f"matrices. Each head keeps its colour in every chart; head {head} is drawn bold.")
    curves = st.columns(3 if traj.beta is not None else 1)
    curves[0].plotly_chart(mark_position(go.Figure(spectrum), t), key="spectrum")
    if traj.beta is not None:
        curves[1].plotly_chart(per_head_over_positions(traj.beta_per_head, t, "β_t (write strength)", "β_t",
                                                       highlight=head), key="beta")
        if traj.delta is not None:
            curves[2].plotly_chart(per_head_over_positions(traj.delta_norm, t, "‖u_t‖ = ‖hook_delta‖", "‖u_t‖",
                                                           highlight=head), key="delta")


scrub_positions()
