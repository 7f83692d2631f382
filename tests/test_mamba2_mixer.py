"""The Mamba-2 mixer (``mamba2``): the sum rule with one decay per head, keys B, queries C, values dt·x, a D skip
and a gated group norm. Its memory read-out against a float64 SSM loop over its own cached inputs (in Mamba's
own terms: x, dt, A, B, C), the skip, exact effective attention, a carry patch against a re-run from the patched
state, and the two backends."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import effective_attention, fast_weights, patch_fast_weights

TOKENS = torch.randint(0, 29, (2, 45), generator=torch.Generator().manual_seed(0))


def model(**kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=29, d_model=32, n_layers=2, n_heads=4, d_head=6, d_mlp=32, chunk_size=16, init_std=0.2,
                      mixer={"kind": "mamba2", "d_head_v": 16, "n_groups": 2, **kw}, norm="rmsnorm", mlp="none",
                      positional="none")
    m = HookedFastWeightLM(cfg).eval()
    with torch.no_grad():  # steps that make the decay matter over 45 positions
        for block in m.blocks:
            block.attn.dt_bias.fill_(-0.5)
            block.attn.A_log.uniform_(-2.0, 0.0)
    return m


def test_the_read_out_is_the_ssm_scan_of_its_inputs():
    """h_t = exp(dt_t A) h_{t-1} + dt_t x_t B_tᵀ ([head_dim, state], Mamba's layout); z_t = h_t C_t; y = z + D x."""
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    a, attn = "blocks.1.attn.", m.mixer(1)
    x, dt = cache[a + "hook_x"].double(), cache[a + "hook_dt"].double()
    A = -attn.A_log.double().exp()
    B, C = cache[a + "hook_k"].double(), cache[a + "hook_q"].double()
    assert torch.equal(B[:, :, 0], B[:, :, 1]) and not torch.equal(B[:, :, 1], B[:, :, 2])  # 2 groups of 2 heads
    assert rel_err(cache[a + "hook_log_decay"], dt * A) <= 1e-6
    h, states = torch.zeros(2, 4, 16, 6, dtype=torch.float64), []
    for t in range(45):
        h = h * (dt[:, t] * A).exp()[..., None, None] + (dt[:, t, :, None] * x[:, t])[..., None] * B[:, t, :, None, :]
        assert rel_err(cache[a + "hook_z"][:, t], torch.einsum("bhpn,bhn->bhp", h, C[:, t])) <= 1e-5, t
        states.append(h)
    assert rel_err(cache[a + "hook_skip"], attn.D.double()[:, None] * x) <= 1e-6
    ours = fast_weights(m, TOKENS, 1, [0, 20, 44])  # [batch, n_positions, head, d_k = state, d_v = head_dim]
    for j, t in enumerate([0, 20, 44]):
        assert rel_err(ours[:, j], states[t].transpose(-1, -2)) <= 1e-5


@pytest.mark.parametrize("kw", [{}, {"n_groups": 1, "dt_min": 0.2, "dt_max": 0.5, "conv_size": 2}])
def test_effective_attention_is_exact_and_backends_agree(kw):
    m = model(**kw)
    logits, cache = m.run_with_cache(TOKENS)
    for layer in range(2):
        A = effective_attention(m, TOKENS, layer)
        z = torch.einsum("bhqk,bkhd->bqhd", A, cache[f"blocks.{layer}.attn.hook_v"])
        assert rel_err(z, cache[f"blocks.{layer}.attn.hook_z"]) <= 1e-5
    if kw:
        dt = cache["blocks.0.attn.hook_dt"]
        assert dt.min() >= 0.2 and dt.max() <= 0.5
    ref = HookedFastWeightLM(m.cfg.replace(backend="reference"), init=False)
    ref.load_state_dict(m.state_dict())
    assert rel_err(ref.eval()(TOKENS), logits) <= 1e-5


def test_a_carry_patch_equals_a_rerun_from_the_patched_state():
    m = model()
    p = 20
    _, cache = m.run_with_cache(TOKENS)
    patched = patch_fast_weights(m, TOKENS, 0, p, lambda w: torch.zeros_like(w), mode="carry")
    inputs = m.mixer(0).recurrence_inputs(lambda n: cache[f"blocks.0.attn.{n}"])
    rest = m.mixer(0).recurrence.run(inputs.at(slice(p + 1, None)), initial_state=torch.zeros(2, 4, 6, 16),
                                     backend="reference")
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_z", lambda z, hook: torch.cat(
            [z[:, :p], torch.zeros_like(z[:, p:p + 1]), rest.output], dim=1))]):
        want = m(TOKENS)
    assert rel_err(patched, want) <= 1e-5


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="n_groups"):
        model(n_groups=3)
    with pytest.raises(ValueError, match="dt_max"):
        model(dt_min=0.5, dt_max=0.1)


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_head_outputs_hold_the_skip_and_sum_to_the_mixer_output(groups):
    """Each head's share is its read-out plus its skip D ⊙ x through the run's gated group norm and W_O: summed with
    b_O it is the mixer output, and the residual decomposition needs no 'attn_other' remainder. A read-out vector
    alone (readout_outputs) goes through the gate and the group norm without the skip."""
    from workbench.analysis.outliers import decompose_residual

    m = model(n_groups=groups)
    with torch.no_grad():
        for block in m.blocks:
            block.attn.D.normal_(0.0, 1.0, generator=torch.Generator().manual_seed(groups))  # a skip that matters
            block.attn.b_O.normal_(0.0, 0.1, generator=torch.Generator().manual_seed(7))
    _, cache = m.run_with_cache(TOKENS)
    for i in range(2):
        attn, a = m.mixer(i), f"blocks.{i}.attn."
        x, z = cache[f"blocks.{i}.ln1.hook_normalized"], cache[a + "hook_z"]
        heads = attn.head_outputs(z, x)  # [batch, pos, head, d_model]
        assert rel_err(heads.sum(-2) + attn.output_bias(), cache[f"blocks.{i}.hook_attn_out"]) <= 1e-5
        without = attn.readout_outputs(z, x)  # the read-outs alone: the skip is missing
        assert rel_err(without.sum(-2) + attn.output_bias(), cache[f"blocks.{i}.hook_attn_out"]) > 1e-2
        ones = torch.ones_like(z)
        assert torch.allclose(attn.readout_outputs(ones[:, 3], x[:, 3]), attn.readout_outputs(ones, x)[:, 3], atol=1e-6)
        with pytest.raises(ValueError, match="needs a run.*readout_outputs"):
            attn.head_outputs(z[:, 3], x[:, 3])
    df = decompose_residual(m, TOKENS, neuron=5, layer=1)
    assert "attn_other" not in set(df.kind)
