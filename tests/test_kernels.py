"""Kernels: every backend against its reference (forward and backward, awkward shapes, states) and the
references against independent oracles (flash-linear-attention's naive files, transformers' Qwen3-Next
pure-torch gated delta rule). Relative error = max|a − b| / max|b|."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import fla_naive, rel_err
from workbench.kernels import delta_rule, linear_attention

SHAPES = [  # (batch, pos, head, d_k, d_v, chunk)
    (1, 1, 1, 8, 8, 16),
    (2, 63, 3, 17, 11, 16),
    (1, 100, 2, 60, 32, 64),
    (2, 64, 1, 16, 16, 64),
    (1, 130, 2, 8, 5, 32),
]


def make(b, t, h, dk, dv, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=gen)
    k = F.normalize(torch.randn(b, t, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, t, h, dv, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.5
    s0 = torch.randn(b, h, dk, dv, generator=gen) * 0.1
    return [x.to(dtype) for x in (q, k, v, beta, g, s0)]


def grads(fn, inputs):
    xs = [x.detach().clone().requires_grad_() for x in inputs]
    res = fn(*xs)
    loss = (res.output.float() * torch.linspace(-1, 1, res.output.shape[-1])).sum()
    if res.final_state is not None:
        loss = loss + res.final_state.square().sum()
    loss.backward()
    return res, [x.grad for x in xs]


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_delta_chunk_matches_reference_forward_backward_and_states(shape, gated):
    b, t, h, dk, dv, c = shape
    q, k, v, beta, g, s0 = make(b, t, h, dk, dv)

    def run(backend):
        def fn(q, k, v, beta, g, s0):
            return delta_rule(q, k, v, beta, g=g if gated else None, initial_state=s0, chunk_size=c, backend=backend,
                              output_final_state=True, output_chunk_states=True, output_delta=True)
        return grads(fn, [q, k, v, beta, g, s0])

    (ref, gr), (chk, gc) = run("reference"), run("chunk")
    for name in ("output", "final_state", "chunk_states", "delta"):
        assert rel_err(getattr(chk, name), getattr(ref, name)) < 1e-5, name
    assert chk.chunk_states.shape == (b, -(-t // c), h, dk, dv)
    for i, (a, r) in enumerate(zip(gc, gr)):
        if r is None or (not gated and i == 4):
            continue
        assert rel_err(a, r) < 1e-5, f"grad of input {i}"


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_delta_chunk_inference_path_matches_reference_and_autograd_path(shape, gated):
    """Without autograd the chunk kernel writes into preallocated buffers: same numbers, every output."""
    b, t, h, dk, dv, c = shape
    q, k, v, beta, g, s0 = make(b, t, h, dk, dv, seed=3)
    kw = dict(g=g if gated else None, initial_state=s0, chunk_size=c, output_final_state=True,
              output_chunk_states=True, output_delta=True)
    ref = delta_rule(q, k, v, beta, backend="reference", **kw)
    with torch.no_grad():
        fast = delta_rule(q, k, v, beta, **kw)
    with_graph = delta_rule(q, k, v.clone().requires_grad_(), beta, **kw)
    for name in ("output", "final_state", "chunk_states", "delta"):
        assert rel_err(getattr(fast, name), getattr(ref, name)) < 1e-5, name
        assert rel_err(getattr(fast, name), getattr(with_graph, name).detach()) < 1e-6, name


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("normalize", [False, True])
def test_linear_chunk_matches_reference_forward_backward_and_states(shape, normalize):
    b, t, h, dk, dv, c = shape
    q, k, v, _, _, _ = make(b, t, h, dk, dv)
    q, k = F.elu(q) + 1, F.elu(k) + 1  # positive features keep the normaliser away from 0
    s0 = torch.rand(b, h, dk, dv + int(normalize))

    def run(backend):
        def fn(q, k, v, s0):
            return linear_attention(q, k, v, normalize=normalize, initial_state=s0, chunk_size=c, backend=backend,
                                    output_final_state=True, output_chunk_states=True)
        return grads(fn, [q, k, v, s0])

    (ref, gr), (chk, gc) = run("reference"), run("chunk")
    for name in ("output", "final_state", "chunk_states"):
        assert rel_err(getattr(chk, name), getattr(ref, name)) < 1e-5, name
    for a, r in zip(gc, gr):
        assert rel_err(a, r) < 1e-5


def test_delta_reference_matches_fla_naive_recurrence():
    naive = fla_naive("delta_rule")
    q, k, v, beta, _, s0 = make(2, 50, 3, 16, 12)
    scale = 16 ** -0.5
    want, state = naive.delta_rule_recurrence(*(x.transpose(1, 2) for x in (q, k, v, beta)), initial_state=s0)
    got = delta_rule(q * scale, k, v, beta, initial_state=s0, backend="reference", output_final_state=True)
    assert rel_err(got.output, want.transpose(1, 2)) < 1e-5
    assert rel_err(got.final_state, state) < 1e-5
    q, k, v, beta = (x[:, :48] for x in (q, k, v, beta))  # fla's chunkwise needs pos % chunk == 0
    chunked = naive.delta_rule_chunkwise(*(x.transpose(1, 2) for x in (q, k, v, beta)), chunk_size=16)
    fla_o = chunked[0] if isinstance(chunked, tuple) else chunked
    assert rel_err(delta_rule(q * scale, k, v, beta, backend="chunk", chunk_size=16).output,
                   fla_o.transpose(1, 2)) < 1e-5


def test_gated_reference_matches_fla_naive_and_transformers():
    naive = fla_naive("gated_delta_rule")
    q, k, v, beta, g, s0 = make(2, 70, 2, 16, 8)
    scale = 16 ** -0.5
    ours = delta_rule(q * scale, k, v, beta, g=g, initial_state=s0, backend="reference", output_final_state=True)
    fla_o, fla_s = naive.naive_recurrent_gated_delta_rule(q, k, v, beta, g, scale=scale, initial_state=s0,
                                                          output_final_state=True)
    assert rel_err(ours.output, fla_o) < 1e-5 and rel_err(ours.final_state, fla_s) < 1e-5
    mod = pytest.importorskip("transformers.models.qwen3_next.modeling_qwen3_next")
    for name in ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule"):
        fn = getattr(mod, name)
        fn = getattr(fn, "__wrapped__", fn)
        o, s = fn(q, k, v, g, beta, initial_state=s0, output_final_state=True)  # scales q by d_k^-½ itself
        assert rel_err(ours.output, o) < 1e-5, name
        assert rel_err(ours.final_state, s) < 1e-5, name
        chunk = delta_rule(q * scale, k, v, beta, g=g, initial_state=s0, output_final_state=True)
        assert rel_err(chunk.output, o) < 1e-5, name


@pytest.mark.parametrize("normalize", [False, True])
def test_linear_reference_matches_fla_naive(normalize):
    naive = fla_naive("linear_attn")
    q, k, v, _, _, _ = make(2, 64, 2, 16, 8)
    q, k = F.elu(q) + 1, F.elu(k) + 1
    scale = 16 ** -0.5
    want, _ = naive.naive_recurrent_linear_attn(q, k, v, scale=scale, normalize=normalize)
    got = linear_attention(q * scale, k, v, normalize=normalize, eps=1e-10, backend="reference").output
    assert rel_err(got, want) < 1e-5
    got_chunk = linear_attention(q * scale, k, v, normalize=normalize, eps=1e-10, chunk_size=64).output
    want_chunk = naive.naive_chunk_linear_attn(q, k, v, scale=scale, normalize=normalize)
    want_chunk = want_chunk[0] if isinstance(want_chunk, tuple) else want_chunk
    assert rel_err(got_chunk, want_chunk) < 1e-5


def test_bf16_inputs_return_bf16_close_to_fp32():
    q, k, v, beta, g, _ = make(1, 100, 2, 32, 32)
    full = delta_rule(q, k, v, beta, g=g).output
    half = delta_rule(*(x.bfloat16() for x in (q, k, v, beta)), g=g.bfloat16()).output
    assert half.dtype == torch.bfloat16
    assert rel_err(half, full) < 3e-2
    la = linear_attention(q.bfloat16(), k.bfloat16(), v.bfloat16())
    assert la.output.dtype == torch.bfloat16


def test_padding_cannot_leak_into_real_positions():
    """pos = 70 with chunk 64 pads 58 positions; poisoning them through huge inputs elsewhere must not
    matter, and changing the last real position must not change any earlier output."""
    q, k, v, beta, g, _ = make(1, 70, 2, 8, 8)
    base = delta_rule(q, k, v, beta, g=g, output_final_state=True)
    assert torch.isfinite(base.output).all() and torch.isfinite(base.final_state).all()
    v2 = v.clone()
    v2[:, -1] = 1e6
    moved = delta_rule(q, k, v2, beta, g=g).output
    assert torch.equal(moved[:, :-1], base.output[:, :-1])


@pytest.mark.parametrize(
    "call, err, msg",
    [
        (lambda q, k, v, b: delta_rule(q[0], k, v, b), ValueError, r"\[batch, pos, head, dim\]"),
        (lambda q, k, v, b: delta_rule(q, k[..., :3], v, b), ValueError, "same shape"),
        (lambda q, k, v, b: delta_rule(q, k, v[:, :2], b), ValueError, "share"),
        (lambda q, k, v, b: delta_rule(q, k, v, b[..., None]), ValueError, "beta must have shape"),
        (lambda q, k, v, b: delta_rule(q, k, v, b, g=b[:, :1]), ValueError, "g must have shape"),
        (lambda q, k, v, b: delta_rule(q, k, v, b, backend="triton"), ValueError, "backend must be one of"),
        (lambda q, k, v, b: delta_rule(q, k, v, b, chunk_size=0), ValueError, "chunk_size"),
        (lambda q, k, v, b: delta_rule(q, k, v, b, initial_state=torch.zeros(3)), ValueError, "initial_state"),
        (lambda q, k, v, b: delta_rule(q[:, :0], k[:, :0], v[:, :0], b[:, :0]), ValueError, "empty"),
        (lambda q, k, v, b: delta_rule(q.long(), k, v, b), ValueError, "floating-point"),
        (lambda q, k, v, b: delta_rule(q, k, v, None), ValueError, "beta is required"),
        (lambda q, k, v, b: linear_attention(q, k, v, normalize=True, initial_state=torch.zeros(1, 2, 8, 8)),
         ValueError, "initial_state"),
    ],
)
def test_clear_errors(call, err, msg):
    q, k, v, beta, _, _ = make(1, 5, 2, 8, 8)
    with pytest.raises(err, match=msg):
        call(q, k, v, beta)


@pytest.mark.parametrize("C", [1, 2, 5, 16, 48, 64])
def test_unit_lower_inverse_matches_dense_inverse_and_gradcheck(C):
    from workbench.kernels._triangular import unit_lower_inverse

    M = torch.randn(2, 3, C, C, dtype=torch.float64, generator=torch.Generator().manual_seed(C)) * 0.3
    expected = torch.linalg.inv(torch.eye(C, dtype=torch.float64) + M.tril(-1))
    assert rel_err(unit_lower_inverse(M), expected) < 1e-12
    assert torch.equal(unit_lower_inverse(M), unit_lower_inverse(M.tril(-1)))  # only the strict lower part is read
    if C <= 16:
        x = M[0, 0].clone().requires_grad_()
        assert torch.autograd.gradcheck(unit_lower_inverse, (x,))


@pytest.mark.parametrize("transpose", [False, True])
def test_solve_unit_lower_against_a_dense_solve(transpose):
    from workbench.kernels import solve_unit_lower

    g = torch.Generator().manual_seed(0)
    L = torch.randn(3, 7, 7, generator=g, dtype=torch.float64)  # its diagonal and upper triangle are ignored
    B = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    M = torch.eye(7, dtype=torch.float64) + L.tril(-1)
    want = torch.linalg.solve(M.mT if transpose else M, B)
    torch.testing.assert_close(solve_unit_lower(L, B, transpose=transpose), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="square"):
        solve_unit_lower(L[..., :6], B)
    with pytest.raises(ValueError, match=r"\[\.\.\., n, k\] with n = 7"):
        solve_unit_lower(L, B[..., :6, :])
