"""The decay-gated sum rule (linear_attention with ``g``): GLA with a decay per key channel ``[batch, pos, head,
d_k]``, Mamba-2 / SSD with one per head ``[batch, pos, head]``. Both backends against a float64 loop written here
and fla's ``naive_recurrent_gla``, the decay's edges (hard resets, large steps), normalisation, chunk snapshots,
gradients, and bad gates refused."""

from __future__ import annotations

import pytest
import torch

from helpers import fla_naive, rel_err
from workbench.kernels import linear_attention


def loop64(q, k, v, g, s0):
    """S ← diag(exp g_t) S + k_t v_tᵀ; o_t = S_tᵀ q_t, in float64."""
    q, k, v, g, S = (x.double() for x in (q, k, v, g, s0))
    outs = []
    for t in range(q.shape[1]):
        S = S * (g[:, t].exp()[..., None] if g.dim() == 4 else g[:, t].exp()[..., None, None])
        S = S + k[:, t, :, :, None] * v[:, t, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(outs, 1), S


def inputs(per_channel=True, b=2, t=100, h=3, dk=17, dv=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q, k = torch.randn(b, t, h, dk, generator=gen), torch.randn(b, t, h, dk, generator=gen) / dk ** 0.5
    v = torch.randn(b, t, h, dv, generator=gen)
    g = -torch.rand(*((b, t, h, dk) if per_channel else (b, t, h)), generator=gen) * 0.3
    return q, k, v, g, torch.randn(b, h, dk, dv, generator=gen)


def with_gates(kind: str, g: torch.Tensor) -> torch.Tensor:
    g = g.clone()
    last = (slice(None, None, 3),) if g.dim() == 4 else ()
    if kind == "hard_resets":
        g[(slice(None), slice(None, None, 23), slice(None)) + last] = -float("inf")
    elif kind == "large_steps":
        g[(slice(None), slice(5, None, 31), slice(None)) + last] = -200.0
    elif kind == "strong_every_step":
        g[(slice(None), slice(None), slice(0, 1)) + last] = -30.0
    return g


@pytest.mark.parametrize("per_channel", [True, False])
@pytest.mark.parametrize("kind", ["random", "hard_resets", "large_steps", "strong_every_step"])
@pytest.mark.parametrize("backend, chunk", [("reference", 16), ("chunk", 16), ("chunk", 37), ("chunk", 64)])
def test_both_backends_equal_a_float64_loop(per_channel, kind, backend, chunk):
    q, k, v, g, s0 = inputs(per_channel)
    g = with_gates(kind, g)
    want, want_state = loop64(q, k, v, g, s0)
    res = linear_attention(q, k, v, g=g, initial_state=s0, chunk_size=chunk, backend=backend,
                           output_final_state=True, output_chunk_states=True)
    assert rel_err(res.output, want) <= 1e-6
    assert rel_err(res.final_state, want_state) <= 1e-6
    n = -(-q.shape[1] // chunk)  # snapshot c = the state before position c·chunk
    assert res.chunk_states.shape == (2, n, 3, 17, 9)
    _, before = loop64(q[:, :chunk], k[:, :chunk], v[:, :chunk], g[:, :chunk], s0)
    assert rel_err(res.chunk_states[:, 1], before) <= 1e-6


def test_reference_matches_fla_naive_gla():
    naive = fla_naive("gla")
    q, k, v, g, s0 = inputs(True, t=70)
    o, s = naive.naive_recurrent_gla(q, k, v, g, initial_state=s0, output_final_state=True)  # scales q by d_k^-½
    for backend in ("reference", "chunk"):
        ours = linear_attention(q * 17 ** -0.5, k, v, g=g, initial_state=s0, backend=backend, output_final_state=True)
        assert rel_err(ours.output, o) <= 1e-5 and rel_err(ours.final_state, s) <= 1e-5, backend


def test_a_scalar_decay_is_a_per_channel_decay_with_equal_channels():
    q, k, v, g, s0 = inputs(False)
    wide = g[..., None].expand(*g.shape, 17)
    for backend in ("reference", "chunk"):
        a = linear_attention(q, k, v, g=g, initial_state=s0, backend=backend, chunk_size=32).output
        b = linear_attention(q, k, v, g=wide, initial_state=s0, backend=backend, chunk_size=32).output
        assert rel_err(a, b) <= 1e-6


def test_normalised_decay_gated_sum_rule_decays_the_normaliser():
    q, k, v, g, _ = inputs(True)
    q, k = q.abs(), k.abs()
    num, _ = loop64(q, k, v, g, torch.zeros(2, 3, 17, 9))
    den, _ = loop64(q, k, torch.ones(2, 100, 3, 1), g, torch.zeros(2, 3, 17, 1))
    for backend in ("reference", "chunk"):
        got = linear_attention(q, k, v, g=g, normalize=True, backend=backend, chunk_size=16).output
        assert rel_err(got, num / (den + 1e-6)) <= 1e-6, backend


@pytest.mark.parametrize("per_channel", [True, False])
def test_gradients_of_the_chunk_form_equal_the_reference(per_channel):
    q, k, v, g, s0 = inputs(per_channel, t=50)
    grads = {}
    for backend in ("reference", "chunk"):
        xs = [x.clone().requires_grad_() for x in (q, k, v, g, s0)]
        res = linear_attention(*xs[:3], g=xs[3], initial_state=xs[4], backend=backend, chunk_size=16,
                               output_final_state=True)
        (res.output.square().sum() + res.final_state.sum()).backward()
        grads[backend] = [x.grad for x in xs]
    for a, b in zip(grads["chunk"], grads["reference"]):
        assert rel_err(a, b) <= 1e-5


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_bad_gates_are_refused(backend):
    q, k, v, g, _ = inputs(True, t=20)
    with pytest.raises(ValueError, match="positive or NaN"):
        linear_attention(q, k, v, g=g.abs() + 0.1, backend=backend)
    with pytest.raises(ValueError, match="positive or NaN"):
        linear_attention(q, k, v, g=torch.full_like(g, float("nan")), backend=backend)
    with pytest.raises(ValueError, match="d_k"):
        linear_attention(q, k, v, g=g[..., :5], backend=backend)
