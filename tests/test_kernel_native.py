"""The WY chunk kernel's native helpers (kernels/delta_rule/wy_native.c, built by kernels/_native.py) against its
PyTorch path: same outputs, states, delta errors and gradients in every input, on awkward shapes; and
``WORKBENCH_NATIVE=0`` really takes the PyTorch path. Skips only where no C compiler is present."""

from __future__ import annotations

import importlib
import shutil

import pytest
import torch

from helpers import rel_err
from test_kernels import grads, make
from workbench.kernels import delta_rule

wy = importlib.import_module("workbench.kernels.delta_rule.wy")

SHAPES = [  # (batch, pos, head, d_k, d_v, chunk): views (batch 1), padding, d_k ≠ d_v, blocks of 16 and 32
    (1, 100, 2, 60, 32, 64),
    (2, 63, 3, 17, 11, 16),
    (1, 130, 2, 8, 5, 32),
    (1, 256, 4, 64, 64, 64),
]


@pytest.fixture
def native():
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler: the kernels run their PyTorch path")
    if wy.native_library(torch.zeros(1)) is None:
        pytest.fail("a C compiler is present but wy_native.c did not build")


def run_both(monkeypatch, fn):
    native_result = fn()
    monkeypatch.setenv("WORKBENCH_NATIVE", "0")
    assert wy.native_library(torch.zeros(1)) is None
    torch_result = fn()
    monkeypatch.delenv("WORKBENCH_NATIVE")
    return native_result, torch_result


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_native_and_pytorch_paths_agree_forward_and_backward(native, monkeypatch, shape, gated):
    b, t, h, dk, dv, c = shape
    q, k, v, beta, g, s0 = make(b, t, h, dk, dv, seed=5)

    def fn(q, k, v, beta, g, s0):
        return delta_rule(q, k, v, beta, g=g if gated else None, initial_state=s0, chunk_size=c,
                          output_final_state=True, output_chunk_states=True, output_delta=True)

    (nat, gn), (pt, gp) = run_both(monkeypatch, lambda: grads(fn, [q, k, v, beta, g, s0]))
    for name in ("output", "final_state", "chunk_states", "delta"):
        assert rel_err(getattr(nat, name), getattr(pt, name)) < 1e-5, name
    for i, (a, r) in enumerate(zip(gn, gp)):
        if r is None:
            assert a is None or not gated and i == 4
            continue
        assert rel_err(a, r) < 1e-5, f"grad of input {i}"


def test_native_and_pytorch_paths_agree_without_autograd(native, monkeypatch):
    q, k, v, beta, g, s0 = make(1, 200, 3, 32, 48, seed=6)
    g[0, 50:53] = -float("inf")  # hard resets

    def fn():
        with torch.no_grad():
            return delta_rule(q, k, v, beta, g=g, initial_state=s0, output_final_state=True, output_delta=True)

    nat, pt = run_both(monkeypatch, fn)
    for name in ("output", "final_state", "delta"):
        assert rel_err(getattr(nat, name), getattr(pt, name)) < 1e-5, name


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("gates", ["none", "mild", "large"])
def test_fused_inference_pass_equals_the_staged_native_path(native, monkeypatch, shape, gates):
    """wy_fused_fwd (one C pass per block, used without autograd) against the staged path (batched products, then
    wy_loop_fwd) and the reference: mild gates take its γ_t/γ_s ratio form, large ones (hard resets, −200, −30 at every
    step, a block decaying by just over e^−30) its exp of each float64 difference."""
    b, t, h, dk, dv, c = shape
    q, k, v, beta, g, s0 = make(b, t, h, dk, dv, seed=7)
    if gates == "large":
        g[:, 5] = -float("inf")
        g[:, 20, 0] = -200.0
        g[:, 40:48] = -30.0
        g[:, 32:34, -1] = -15.5  # the block of 32 from 32 decays by 31 in all at the last head: the exp form
    kw = dict(g=None if gates == "none" else g, initial_state=s0, chunk_size=c, output_final_state=True,
              output_chunk_states=True, output_delta=True)
    with torch.no_grad():
        fused = delta_rule(q, k, v, beta, **kw)
        monkeypatch.setattr(wy, "FUSED", False)
        staged = delta_rule(q, k, v, beta, **kw)
    ref = delta_rule(q, k, v, beta, backend="reference", **kw)
    for name in ("output", "final_state", "chunk_states", "delta"):
        assert rel_err(getattr(fused, name), getattr(staged, name)) < 1e-5, name
        assert rel_err(getattr(fused, name), getattr(ref, name)) < 1e-5, name
    with torch.no_grad():  # without chunk states and delta errors the pass keeps two of each (ping-pong buffers)
        monkeypatch.setattr(wy, "FUSED", True)
        lean = delta_rule(q, k, v, beta, **{**kw, "output_chunk_states": False, "output_delta": False})
    assert lean.chunk_states is None and lean.delta is None
    assert torch.equal(lean.output, fused.output) and torch.equal(lean.final_state, fused.final_state)


@pytest.mark.parametrize("gated", [False, True], ids=["delta", "gated"])
def test_a_forward_gives_the_same_bits_with_and_without_autograd(native, gated):
    """Under autograd the values come from the fused pass too (kernels/delta_rule/chunk.py, _ValuesOf), so analyses
    run under no_grad match plain forwards bit for bit; the gradient is the staged form's."""
    q, k, v, beta, g, s0 = make(1, 100, 2, 16, 8, seed=8)
    kw = dict(g=g if gated else None, initial_state=s0, output_final_state=True, output_chunk_states=True,
              output_delta=True)
    with torch.no_grad():
        plain = delta_rule(q, k, v, beta, **kw)
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v, beta)]
    traced = delta_rule(*leaves, **kw)
    for name in ("output", "final_state", "chunk_states", "delta"):
        assert torch.equal(getattr(traced, name), getattr(plain, name)), name
    traced.output.sum().backward()
    ref = [x.detach().clone().requires_grad_() for x in (q, k, v, beta)]
    delta_rule(*ref, backend="reference", **kw).output.sum().backward()
    for a, r in zip(leaves, ref):
        assert rel_err(a.grad, r.grad) < 1e-5
