"""GPU checks: our kernels on CUDA against the CPU reference and against flash-linear-attention's
Triton kernels (an independent implementation). Skipped cleanly without a CUDA device."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def inputs(b=2, t=200, h=3, dk=64, dv=48, seed=0, device="cuda"):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(b, t, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, t, h, dv, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.2
    return [x.to(device) for x in (q, k, v, beta, g)]


@pytest.mark.parametrize("gated", [False, True])
def test_chunk_kernel_on_cuda_matches_cpu_reference_forward_and_backward(gated):
    from workbench.kernels import delta_rule

    cpu = inputs(device="cpu")
    gpu = [x.clone().cuda().requires_grad_() for x in cpu]
    cpu = [x.clone().requires_grad_() for x in cpu]
    outs = []
    for (q, k, v, beta, g), backend in ((cpu, "reference"), (gpu, "chunk")):
        res = delta_rule(q, k, v, beta, g=g if gated else None, backend=backend, output_final_state=True)
        (res.output.square().sum() + res.final_state.sum()).backward()
        outs.append((res.output, res.final_state, [x.grad for x in (q, k, v, beta, g) if x.grad is not None]))
    (o_r, s_r, g_r), (o_c, s_c, g_c) = outs
    assert rel_err(o_c.cpu(), o_r) < 1e-5
    assert rel_err(s_c.cpu(), s_r) < 1e-5
    for a, b in zip(g_c, g_r):
        assert rel_err(a.cpu(), b) < 1e-4


@pytest.mark.parametrize("gated", [False, True])
def test_chunk_kernel_matches_fla_triton_kernels(gated):
    pytest.importorskip("triton")
    fla_ops = pytest.importorskip("fla.ops")
    from workbench.kernels import delta_rule

    q, k, v, beta, g = inputs(t=300)
    scale = q.shape[-1] ** -0.5
    if gated:  # fp32 in, tf32 matmuls inside fla's kernels
        ours = delta_rule(q * scale, k, v, beta, g=g, output_final_state=True)
        theirs, state = fla_ops.chunk_gated_delta_rule(q, k, v, g, beta, scale=scale, output_final_state=True)
        tol = 5e-3
    else:  # fla's ungated chunk kernel takes bf16 only: compare on the same bf16-rounded inputs
        q, k, v, beta = (x.bfloat16() for x in (q, k, v, beta))
        ours = delta_rule(q.float() * scale, k.float(), v.float(), beta.float(), output_final_state=True)
        theirs, state = fla_ops.chunk_delta_rule(q, k, v, beta, scale=scale, output_final_state=True)
        tol = 2e-2
    assert rel_err(ours.output, theirs.float()) < tol
    assert rel_err(ours.final_state, state.float()) < tol


def test_bf16_on_cuda_stays_close_to_fp32():
    from workbench.kernels import delta_rule, linear_attention

    q, k, v, beta, g = inputs()
    full = delta_rule(q, k, v, beta, g=g).output
    half = delta_rule(q.bfloat16(), k.bfloat16(), v.bfloat16(), beta.bfloat16(), g=g.bfloat16()).output
    assert half.dtype == torch.bfloat16
    assert rel_err(half.float(), full) < 3e-2
    la = linear_attention(q.relu(), k.relu(), v, normalize=True).output
    la_ref = linear_attention(q.relu().cpu(), k.relu().cpu(), v.cpu(), normalize=True, backend="reference").output
    assert rel_err(la.cpu(), la_ref) < 1e-5


@pytest.mark.parametrize("gate", ["none", "head", "channel"])
def test_fla_backend_on_cuda_matches_our_chunk_kernel(gate):
    pytest.importorskip("triton")
    from workbench.kernels import delta_rule

    q, k, v, beta, g = inputs(t=256)
    g = {"none": None, "head": g, "channel": g[..., None].expand(*g.shape, q.shape[-1]).contiguous()}[gate]
    q = q * q.shape[-1] ** -0.5
    ours = delta_rule(q, k, v, beta, g=g, output_final_state=True)
    theirs = delta_rule(q, k, v, beta, g=g, backend="fla", output_final_state=True)
    assert theirs.output.dtype == q.dtype
    assert rel_err(theirs.output, ours.output) < 5e-3  # tf32 matmuls inside fla's kernels
    assert rel_err(theirs.final_state, ours.final_state) < 5e-3
