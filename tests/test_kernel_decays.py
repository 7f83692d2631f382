"""The gated delta rule at the edges of its decay: hard resets (g = −inf), very large decays, and bad gates.

Every backend is compared with a float64 loop written here from the equations
(S_t = α_t S_{t−1};  u_t = β_t (v_t − S_tᵀk_t);  S_t += k_t u_tᵀ;  o_t = S_tᵀ q_t).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import rel_err
from workbench.kernels import delta_rule
from workbench.mixers.delta import DeltaRule, readout_from_writes
from workbench.mixers.state import RecurrenceInputs


def loop64(q, k, v, beta, g, s0=None):
    q, k, v, beta, g = (x.double() for x in (q, k, v, beta, g))
    b, t_len, h, dk = q.shape
    S = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64) if s0 is None else s0.double()
    outs = []
    for t in range(t_len):
        S = S * g[:, t].exp()[..., None, None]
        u = beta[:, t, :, None] * (v[:, t] - torch.einsum("bhk,bhkv->bhv", k[:, t], S))
        S = S + k[:, t, :, :, None] * u[:, :, None, :]
        outs.append(torch.einsum("bhk,bhkv->bhv", q[:, t], S))
    return torch.stack(outs, 1), S


def inputs(b=2, t=150, h=3, d=12, seed=0):
    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(b, t, h, d, generator=gen)
    k = F.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1)
    v = torch.randn(b, t, h, d, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.1
    s0 = torch.randn(b, h, d, d, generator=gen) * 0.1
    return q, k, v, beta, g, s0


def with_gates(kind: str, g: torch.Tensor) -> torch.Tensor:
    g = g.clone()
    if kind == "hard_resets":
        g[:, ::37] = -float("inf")
        g[-1, 3, -1] = -float("inf")
    elif kind == "large_steps":  # a −200 step leaves the cumulative sums large for the rest of the chunk
        g[:, 5::50] = -200.0
    elif kind == "strong_everywhere":
        g[:, :100] = -30.0
    elif kind == "zero":
        g.zero_()
    return g


GATES = ["hard_resets", "large_steps", "strong_everywhere", "zero"]


@pytest.mark.parametrize("kind", GATES)
@pytest.mark.parametrize("backend,chunk", [("reference", 64), ("chunk", 16), ("chunk", 64), ("chunk", 37)])
def test_every_backend_is_exact_at_the_edges_of_the_decay(kind, backend, chunk):
    """≤ 1e-6 relative to float64 (float32 rounding); before, the chunk form gave NaN for −inf and lost
    2e-5 on large decays (kernels/_decay.py)."""
    q, k, v, beta, g, s0 = inputs()
    g = with_gates(kind, g)
    want, want_S = loop64(q, k, v, beta, g, s0)
    res = delta_rule(q, k, v, beta, g=g, initial_state=s0, chunk_size=chunk, backend=backend, output_final_state=True)
    assert torch.isfinite(res.output).all()
    assert rel_err(res.output.double(), want) < 1e-6
    assert rel_err(res.final_state.double(), want_S) < 1e-6


@pytest.mark.parametrize("kind", ["hard_resets", "large_steps"])
def test_gradients_are_finite_and_agree_across_backends(kind):
    q, k, v, beta, g, s0 = inputs(t=80)
    g = with_gates(kind, g)

    def grads(backend):
        xs = [x.clone().requires_grad_() for x in (q, k, v, beta, g)]
        out = delta_rule(*xs[:4], g=xs[4], chunk_size=16, backend=backend).output
        (out * torch.linspace(-1, 1, out.shape[-1])).sum().backward()
        return [x.grad for x in xs]

    ref, chk = grads("reference"), grads("chunk")
    for i, (a, r) in enumerate(zip(chk, ref)):
        assert torch.isfinite(a).all() and torch.isfinite(r).all(), i
        assert rel_err(a, r) < 1e-5, i


def test_a_hard_reset_forgets_everything_before_it():
    q, k, v, beta, g, _ = inputs(t=40)
    g[:, 20] = -float("inf")
    full = delta_rule(q, k, v, beta, g=g, chunk_size=16).output
    g_tail = g[:, 20:].clone()
    g_tail[:, 0] = 0.0  # the tail starts from an empty memory, so the reset's own decay is moot
    tail = delta_rule(q[:, 20:], k[:, 20:], v[:, 20:], beta[:, 20:], g=g_tail, chunk_size=16).output
    assert rel_err(full[:, 20:], tail) < 1e-6


@pytest.mark.parametrize("kind", ["hard_resets", "large_steps"])
def test_effective_attention_and_patched_readout_stay_exact(kind):
    """The exact effective attention reproduces the output, and the read-out of given writes matches the
    kernel's, with −inf and large decays (both build Γ from the same float64 cumulative sums)."""
    q, k, v, beta, g, _ = inputs(b=1, t=70)
    g = with_gates(kind, g)
    res = delta_rule(q, k, v, beta, g=g, chunk_size=16, output_delta=True)
    A = DeltaRule().effective_attention(RecurrenceInputs(dict(q=q, k=k, v=v, beta=beta, g=g)))
    assert torch.isfinite(A).all()
    assert rel_err(torch.einsum("bhqk,bkhd->bqhd", A, v), res.output) < 1e-5
    assert rel_err(readout_from_writes(q, k, res.delta, g), res.output) < 1e-5


@pytest.mark.parametrize("bad,msg", [(0.3, "positive or NaN"), (float("nan"), "worst: nan"), (float("inf"), "positive")])
@pytest.mark.parametrize("backend", ["reference", "chunk"])
def test_a_positive_or_nan_log_decay_is_refused(bad, msg, backend):
    q, k, v, beta, g, _ = inputs(t=10)
    g[0, 4, 1] = bad
    with pytest.raises(ValueError, match=msg):
        delta_rule(q, k, v, beta, g=g, backend=backend)
    with pytest.raises(ValueError, match="pass log α, not α"):
        delta_rule(q, k, v, beta, g=g.exp().nan_to_num(), backend=backend)


def test_a_hook_that_patches_the_decay_positive_gets_the_clear_error():
    from workbench import HookedFastWeightLM, ModelConfig

    model = HookedFastWeightLM(ModelConfig(d_vocab=16, d_model=16, n_layers=1, n_heads=2, d_head=8,
                                           mixer="gated_delta")).eval()
    tokens = torch.randint(0, 16, (1, 9))
    with pytest.raises(ValueError, match="log decays"):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_log_decay", lambda g, hook: g.exp())])
    reset = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_log_decay",
                                                     lambda g, hook: torch.full_like(g, -float("inf")))])
    assert torch.isfinite(reset).all()


@pytest.mark.parametrize("per_channel", [False, True])
@pytest.mark.parametrize("fn", ["delta_rule", "linear_attention"])
def test_a_hard_reset_forgets_the_initial_state_exactly(fn, per_channel):
    """g = −inf at the first step: the output is exactly 0 with zero writes (β = 0 or v = 0), in every backend.
    Before, the chunk forms left e^-80 · S_0 (1e-35), found by tests/test_kernel_properties.py."""
    from workbench.kernels import linear_attention
    q, k, v, beta, g, s0 = inputs(b=1, t=5, h=1, d=3)
    g = g.clone()
    g[:, 0] = -float("inf")
    if per_channel:
        g = g[..., None].expand(*g.shape, 3).contiguous()
    for backend, chunk in [("reference", 64), ("chunk", 1), ("chunk", 4)]:
        if fn == "delta_rule":
            out = delta_rule(q, k, v, torch.zeros_like(beta), g=g, initial_state=s0, chunk_size=chunk,
                             backend=backend).output
        else:
            out = linear_attention(q, k, torch.zeros_like(v), g=g, initial_state=s0, chunk_size=chunk,
                                   backend=backend).output
        assert torch.equal(out, torch.zeros_like(out)), (backend, chunk, out.abs().max())
