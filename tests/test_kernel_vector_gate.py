"""The delta rule with a per-key-channel decay (Kimi Delta Attention's gate): g ``[batch, pos, head, d_k]``
decays row c of the state by exp(g_tc). Both backends against a float64 loop written here, the scalar gate as
its special case, the edges of the decay (hard resets and large decays in single channels), gradients, and
bad gates refused."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench.kernels import delta_rule


def loop64(q, k, v, beta, g, s0):
    """The recurrence in float64, one position at a time: S ← diag(exp g_t) S; u = β(v − Sᵀk); S += k uᵀ; o = Sᵀq."""
    q, k, v, beta, g, S = (x.double() for x in (q, k, v, beta, g, s0))
    outs, deltas = [], []
    for t in range(q.shape[1]):
        S = S * g[:, t].exp()[..., None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
        deltas.append(u)
    return torch.stack(outs, 1), S, torch.stack(deltas, 1)


def inputs(b=2, t=100, h=3, dk=17, dv=9, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(b, t, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, t, h, dv, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, dk, generator=gen) * 0.3
    s0 = torch.randn(b, h, dk, dv, generator=gen)
    return q, k, v, beta, g, s0


def with_gates(kind: str, g: torch.Tensor) -> torch.Tensor:
    g = g.clone()
    if kind == "hard_resets_in_some_channels":
        g[:, ::23, :, ::3] = -float("inf")
    elif kind == "large_single_channel_steps":
        g[:, 5::31, :, 1] = -200.0
    elif kind == "strong_every_step":
        g[:, :, :, :4] = -30.0
    return g


@pytest.mark.parametrize("kind", ["random", "hard_resets_in_some_channels", "large_single_channel_steps",
                                  "strong_every_step"])
@pytest.mark.parametrize("backend, chunk", [("reference", 16), ("chunk", 16), ("chunk", 37), ("chunk", 64)])
def test_both_backends_equal_a_float64_loop(kind, backend, chunk):
    q, k, v, beta, g, s0 = inputs()
    g = with_gates(kind, g)
    want, want_state, want_delta = loop64(q, k, v, beta, g, s0)
    res = delta_rule(q, k, v, beta, g=g, initial_state=s0, chunk_size=chunk, backend=backend,
                     output_final_state=True, output_delta=True, output_chunk_states=True)
    assert rel_err(res.output, want) <= 1e-6
    assert rel_err(res.final_state, want_state) <= 1e-6
    assert rel_err(res.delta, want_delta) <= 1e-6
    ref = delta_rule(q, k, v, beta, g=g, initial_state=s0, chunk_size=chunk, backend="reference",
                     output_chunk_states=True)
    assert rel_err(res.chunk_states, ref.chunk_states) <= 1e-6


@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_the_scalar_gate_is_the_case_of_equal_channels(backend):
    q, k, v, beta, _, s0 = inputs(t=70)
    g = -torch.rand(*beta.shape, generator=torch.Generator().manual_seed(3)) * 0.5
    scalar = delta_rule(q, k, v, beta, g=g, initial_state=s0, chunk_size=16, backend=backend, output_final_state=True)
    vector = delta_rule(q, k, v, beta, g=g[..., None].expand_as(q).contiguous(), initial_state=s0, chunk_size=16,
                        backend=backend, output_final_state=True)
    assert rel_err(vector.output, scalar.output) <= 1e-6
    assert rel_err(vector.final_state, scalar.final_state) <= 1e-6


def test_gradients_of_the_chunk_form_equal_the_reference():
    q, k, v, beta, g, s0 = inputs(t=40, dk=8, dv=5)
    g = with_gates("large_single_channel_steps", g)
    grads = {}
    for backend in ("reference", "chunk"):
        xs = [x.clone().requires_grad_() for x in (q, k, v, beta, g, s0)]
        out = delta_rule(*xs[:4], g=xs[4], initial_state=xs[5], chunk_size=16, backend=backend)
        (out.output * torch.linspace(-1, 1, out.output.shape[-1])).sum().backward()
        grads[backend] = [x.grad for x in xs]
    for name, a, b in zip("q k v beta g s0".split(), grads["chunk"], grads["reference"]):
        assert torch.isfinite(a).all(), name
        assert rel_err(a, b) <= 1e-5, name


def test_bad_gates_are_refused():
    q, k, v, beta, g, _ = inputs(t=10)
    with pytest.raises(ValueError, match=r"d_k"):
        delta_rule(q, k, v, beta, g=g[..., :5])
    bad = g.clone()
    bad[0, 3, 1, 2] = 0.5
    with pytest.raises(ValueError, match="positive"):
        delta_rule(q, k, v, beta, g=bad, backend="chunk")


def test_the_decayed_products_in_blocks_equal_one_block():
    """The per-channel decay tensor is formed in bounded blocks (rows and leading axes); any blocking gives the
    same products, and they equal a float64 einsum over the whole C × C × d_k tensor."""
    from workbench.kernels._decay import cumulative_log_decay, decayed_products

    gen = torch.Generator().manual_seed(5)
    x, y = torch.randn(3, 4, 50, 7, generator=gen), torch.randn(3, 4, 50, 7, generator=gen)
    cum = cumulative_log_decay(-torch.rand(3, 4, 50, 7, generator=gen) * 2, dim=-2)
    decay = (cum[..., :, None, :] - cum[..., None, :, :]).clamp(max=0).exp() * torch.ones(50, 50).tril()[..., None]
    want = torch.einsum("...tc,...ic,...tic->...ti", x.double(), y.double(), decay)
    for max_elements in (1 << 24, 7 * 50 * 3, 1):
        assert rel_err(decayed_products(x, y, cum, max_elements=max_elements), want) <= 1e-6, max_elements
