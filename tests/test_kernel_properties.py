"""Property-based tests of the recurrence kernels (hypothesis; the ``ci`` profile in tests/conftest.py).

Drawn: shapes (batch, T, heads, d_k ≠ d_v, chunk size not dividing T), dtypes, gates (none, per head, per key
channel; entries of 0, −inf and very negative), β ∈ [0, 2], initial states, non-contiguous inputs. Every chunk
backend is checked against its reference backend and both against a float64 loop written here from the
equations; the reference-only kernels against themselves run on contiguous copies and one batch row at a time.
"""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from helpers import rel_err
from workbench.kernels import delta_rule, linear_attention, srwm
from workbench.kernels.srwm.naive import N_RATES

# states are float32 in every kernel (documented), so float64 inputs are held to float32 accuracy
DTYPES = {torch.float32: 2e-5, torch.float64: 2e-5, torch.bfloat16: 3e-2}


@st.composite
def problems(draw, gated_ok: bool = True):
    """A drawn kernel input: dims, dtype, gate kind and values, β, initial state, layout."""
    b, t, h = draw(st.integers(1, 3)), draw(st.integers(1, 40)), draw(st.integers(1, 3))
    dk, dv = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    chunk = draw(st.sampled_from([1, 2, 3, 7, 16, 64]))
    dtype = draw(st.sampled_from(list(DTYPES)))
    gate = draw(st.sampled_from(["none", "head", "channel"] if gated_ok else ["none"]))
    seed = draw(st.integers(0, 2**16))
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(b, t, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, t, h, dv, generator=gen)
    beta = torch.rand(b, t, h, generator=gen) * draw(st.sampled_from([0.0, 1.0, 2.0]))
    g = None
    if gate != "none":
        shape = (b, t, h) if gate == "head" else (b, t, h, dk)
        g = -torch.rand(*shape, generator=gen) * draw(st.sampled_from([0.0, 0.1, 3.0]))
        special = draw(st.sampled_from([None, -float("inf"), -200.0, -1e4, 0.0]))
        if special is not None:
            mask = torch.rand(*shape, generator=gen) < draw(st.sampled_from([0.05, 0.3, 1.0]))
            g = g.masked_fill(mask, special)
    s0 = torch.randn(b, h, dk, dv, generator=gen) * 0.3 if draw(st.booleans()) else None
    q, k, v = (x.to(dtype) for x in (q, k, v))
    if draw(st.booleans()):  # non-contiguous: the same values through a transposed buffer
        q, k, v = (x.transpose(1, 2).contiguous().transpose(1, 2) for x in (q, k, v))
        beta = beta.transpose(1, 2).contiguous().transpose(1, 2)
        assert not q.is_contiguous() or t == 1 or h == 1
    return dict(q=q, k=k, v=v, beta=beta, g=g, s0=s0, chunk=chunk, dtype=dtype)


def _decay(g: torch.Tensor | None, t: int, like: torch.Tensor) -> torch.Tensor:
    """α_t as ``[batch, head, d_k, 1]`` in float64 (1 without a gate)."""
    if g is None:
        return torch.ones(like.shape[0], like.shape[2], like.shape[3], 1, dtype=torch.float64)
    a = g[:, t].double().exp()
    return (a[..., None, None] if g.dim() == 3 else a[..., None]) * torch.ones(
        like.shape[0], like.shape[2], like.shape[3], 1, dtype=torch.float64)


def loop64(p: dict, rule: str):
    """The recurrence in float64, one position at a time, from the equations (delta rule or sum rule)."""
    q, k, v, beta = (x.double() for x in (p["q"], p["k"], p["v"], p["beta"]))
    b, t_len, h, dk = q.shape
    S = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64) if p["s0"] is None else p["s0"].double()
    outs = []
    for t in range(t_len):
        S = S * _decay(p["g"], t, q)
        if rule == "delta":
            u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        else:
            u = v[:, t]
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(outs, 1), S


def _call(fn, p: dict, backend: str, **extra):
    return fn(p["q"], p["k"], p["v"], *extra.pop("args", ()), g=p["g"], initial_state=p["s0"], chunk_size=p["chunk"],
              backend=backend, output_final_state=True, output_chunk_states=True, **extra)


def _check_against_loop(fn, p: dict, rule: str, **extra) -> None:
    want, want_S = loop64(p, rule)
    tol = DTYPES[p["dtype"]]
    got = {}
    for backend in ("reference", "chunk"):
        res = _call(fn, p, backend, **dict(extra))
        assert res.output.dtype == p["dtype"] and res.output.shape == want.shape
        assert torch.isfinite(res.output).all() and torch.isfinite(res.final_state).all()
        # bfloat16 inputs are rounded before the loop sees them, so the loop is exact for them too
        assert rel_err(res.output, want) < tol, (backend, rel_err(res.output, want))
        assert rel_err(res.final_state, want_S) < max(tol, 2e-5), backend
        got[backend] = res
    assert rel_err(got["chunk"].chunk_states, got["reference"].chunk_states) < max(DTYPES[p["dtype"]], 2e-5)


@given(problems())
def test_delta_rule_backends_match_a_float64_loop(p):
    _check_against_loop(delta_rule, p, "delta", args=(p["beta"],))


@given(problems())
def test_linear_attention_backends_match_a_float64_loop(p):
    _check_against_loop(linear_attention, p, "sum")


@given(problems(gated_ok=False), st.integers(0, 2))
def test_delta_rule_rows_of_a_batch_are_independent(p, row):
    """Running one batch row alone gives that row's output: no mixing across the batch in either backend."""
    row = row % p["q"].shape[0]
    for backend in ("reference", "chunk"):
        full = _call(delta_rule, p, backend, args=(p["beta"],)).output
        one = {key: (x[row:row + 1] if isinstance(x, torch.Tensor) else x) for key, x in p.items()}
        alone = _call(delta_rule, one, backend, args=(one["beta"],)).output
        assert rel_err(alone, full[row:row + 1]) < DTYPES[p["dtype"]] + 1e-6


@given(st.integers(1, 2), st.integers(1, 12), st.integers(1, 2), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from([1, 3, 64]), st.integers(0, 1000), st.booleans())
def test_srwm_is_layout_and_batch_independent(b, t, h, dk, dy, chunk, seed, transposed):
    """The SRWM (reference only) gives the same on non-contiguous inputs, for each batch row alone, and its
    chunk states are its states at the chunk starts."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(b, t, h, dk, generator=gen), -1)
    w0 = torch.randn(b, h, dk, dy + 2 * dk + N_RATES, generator=gen) * 0.3
    res = srwm(x, w0, chunk_size=chunk, output_final_state=True, output_chunk_states=True)
    xs = x.transpose(1, 2).contiguous().transpose(1, 2) if transposed else x
    again = srwm(xs, w0, chunk_size=chunk, output_final_state=True)
    assert torch.equal(again.output, res.output) or rel_err(again.output, res.output) < 1e-6
    alone = srwm(x[-1:], w0[-1:], chunk_size=chunk).output
    assert rel_err(alone, res.output[-1:]) < 1e-6
    assert torch.isfinite(res.output).all()
    assert res.chunk_states.shape[1] == -(-t // chunk)
    assert torch.equal(res.chunk_states[:, 0], w0.float())
