"""``delta_rule(backend="fla")``: the mapping onto flash-linear-attention's chunk kernels, checked on CPU by
running it on fla's pure-torch chunk references (same positional order and keywords as the Triton kernels), and
the clear errors for what the backend cannot do. The Triton kernels themselves run in tests/test_gpu.py."""

from __future__ import annotations

import pytest
import torch

from helpers import fla_naive, rel_err
from workbench.kernels import delta_rule
from workbench.kernels.delta_rule import delta_rule_fla


def fla_references() -> dict:
    return {"head": fla_naive("gated_delta_rule").naive_chunk_gated_delta_rule,
            "channel": fla_naive("kda").naive_chunk_kda}


def inputs(b=2, t=70, h=3, dk=16, dv=12, gate="head", seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, dk, generator=gen)
    k = torch.nn.functional.normalize(torch.randn(b, t, h, dk, generator=gen), dim=-1)
    v = torch.randn(b, t, h, dv, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    shape = {"none": None, "head": (b, t, h), "channel": (b, t, h, dk)}[gate]
    g = None if shape is None else -torch.rand(*shape, generator=gen) * 0.2
    s0 = torch.randn(b, h, dk, dv, generator=gen) * 0.1
    return q, k, v, beta, g, s0


@pytest.mark.parametrize("gate", ["none", "head", "channel"])
@pytest.mark.parametrize("chunk_size", [32, 64])
def test_fla_mapping_equals_our_reference(gate, chunk_size):
    q, k, v, beta, g, s0 = inputs(gate=gate, t=128 if gate == "channel" else 70)  # fla's KDA reference: whole chunks
    ours = delta_rule(q, k, v, beta, g=g, initial_state=s0, backend="reference", output_final_state=True)
    theirs = delta_rule_fla(q, k, v, beta, g=g, initial_state=s0, chunk_size=chunk_size, output_final_state=True,
                            kernels=fla_references())
    assert theirs.output.dtype == q.dtype and theirs.final_state.dtype == torch.float32
    assert theirs.chunk_states is None and theirs.delta is None
    assert rel_err(theirs.output, ours.output) < 1e-5
    assert rel_err(theirs.final_state, ours.final_state) < 1e-5


def test_fla_mapping_without_final_state_returns_none():
    q, k, v, beta, g, _ = inputs()
    res = delta_rule_fla(q, k, v, beta, g=g, kernels=fla_references())
    assert res.final_state is None
    assert rel_err(res.output, delta_rule(q, k, v, beta, g=g, backend="reference").output) < 1e-5


def test_fla_backend_refuses_cpu_tensors_with_a_pointer_to_chunk():
    q, k, v, beta, g, _ = inputs()
    with pytest.raises(ValueError, match="need CUDA tensors.*backend='chunk'"):
        delta_rule(q, k, v, beta, g=g, backend="fla")


@pytest.mark.parametrize("kwargs, match", [
    ({"output_chunk_states": True}, "output and the final state only"),
    ({"output_delta": True}, "output and the final state only"),
    ({"chunk_size": 48}, r"chunk_size in \(16, 32, 64\)"),
])
def test_fla_backend_refuses_what_its_kernels_cannot_return(kwargs, match):
    q, k, v, beta, g, _ = inputs()
    with pytest.raises(ValueError, match=match):
        delta_rule_fla(q, k, v, beta, g=g, kernels=fla_references(), **kwargs)


def test_fla_backend_refuses_a_hard_reset_and_a_small_chunk_for_a_channel_decay():
    q, k, v, beta, g, _ = inputs()
    g[0, 5, 1] = float("-inf")
    with pytest.raises(ValueError, match="hard reset"):
        delta_rule_fla(q, k, v, beta, g=g, kernels=fla_references())
    q, k, v, beta, g, _ = inputs(gate="channel")
    with pytest.raises(ValueError, match=r"\(32, 64\) for a per-channel"):
        delta_rule_fla(q, k, v, beta, g=g, chunk_size=16, kernels=fla_references())


def test_unknown_backend_names_the_three():
    q, k, v, beta, g, _ = inputs()
    with pytest.raises(ValueError, match="'reference', 'chunk', 'fla'|'chunk', 'reference', 'fla'"):
        delta_rule(q, k, v, beta, backend="triton")
