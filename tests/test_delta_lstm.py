"""The Delta LSTM (Irie et al. 2021, version 4) against a loop written here from the paper's equations
(the authors' orientation: W^g [d_v, d_k], R^g [d_v, d_v], v̄ = W k, W += β (v − v̄) kᵀ; the LSTM cell of
``fast_lstm_v4``), and every workbench feature on it: hooks, fast weights and cell at any position, both
patch modes across chunk boundaries (the gates read h_{t-1}), the clear errors for effective attention
and the recall probe, K-FAC sites, checkpoints."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_restart_is_exact, gradcheck_with_state_and_output, rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import effective_attention, fast_weights, patch_fast_weights, probe_associations
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.kernels import delta_lstm
from workbench.mixers import NotDefinedForMixer

TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))
C = 4
FIELDS = ("q", "k", "v", "beta", "rec_k", "rec_v", "rec_beta")


def paper_loop(q, k, v, beta, rk, rv, rbeta, S0=None, h0=None) -> dict[str, torch.Tensor]:
    """Every quantity at every position, float64, one (batch, head) at a time. S0 / the returned states in
    our packed layout [d_k, 6·d_v + 1] = [W^i | W^u | W^o | R^i | R^u | R^o | c] (each block transposed
    from the authors')."""
    q, k, v, beta, rk, rv, rbeta = (x.detach().double() for x in (q, k, v, beta, rk, rv, rbeta))
    b, T, H, _, d = q.shape
    names = ("h", "c", "i", "u", "o", "s", "z", "delta", "rec_delta", "S")
    out = {n: [[[None] * H for _ in range(T)] for _ in range(b)] for n in names}
    for n_ in range(b):
        for hd in range(H):
            if S0 is None:
                W = [torch.zeros(d, d, dtype=torch.float64) for _ in range(3)]
                R = [torch.zeros(d, d, dtype=torch.float64) for _ in range(3)]
                c = torch.zeros(d, dtype=torch.float64)
            else:
                blocks = [S0[n_, hd, :, j * d:(j + 1) * d].double().T.clone() for j in range(6)]
                W, R, c = blocks[:3], blocks[3:], S0[n_, hd, :, -1].double()
            h = torch.zeros(d, dtype=torch.float64) if h0 is None else h0[n_, hd].double()
            for t in range(T):
                z, us, urs = [], [], []
                for g in range(3):
                    u = beta[n_, t, hd, g] * (v[n_, t, hd, g] - W[g] @ k[n_, t, hd, g])
                    W[g] = W[g] + torch.outer(u, k[n_, t, hd, g])
                    ur = rbeta[n_, t, hd, g] * (rv[n_, t, hd, g] - R[g] @ rk[n_, t, hd, g])
                    R[g] = R[g] + torch.outer(ur, rk[n_, t, hd, g])
                    z.append(W[g] @ q[n_, t, hd, g])
                    us.append(u)
                    urs.append(ur)
                s = torch.softmax(h, 0)
                gi = torch.sigmoid(R[0] @ s + z[0])
                upd = R[1] @ s + z[1]
                go = torch.sigmoid(R[2] @ s + z[2])
                c = gi * upd + (1 - gi) * c
                h = c * go
                S = torch.cat([m.T for m in W + R] + [c[:, None]], 1)
                vals = (h, c, gi, upd, go, s, torch.stack(z), torch.stack(us), torch.stack(urs), S)
                for name, x in zip(names, vals):
                    out[name][n_][t][hd] = x
    return {n: torch.stack([torch.stack([torch.stack(row) for row in seq]) for seq in out[n]]) for n in names}


def random_inputs(b=2, T=9, H=2, d=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    q, k = (F.elu(r(b, T, H, 3, d)) + 1 for _ in range(2))
    q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
    return (q, k, r(b, T, H, 3, d), torch.sigmoid(r(b, T, H, 3)), torch.softmax(r(b, T, H, 3, d), -1),
            r(b, T, H, 3, d), torch.sigmoid(r(b, T, H, 3)))


# ---------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_equals_the_papers_loop(dtype):
    args = random_inputs(dtype=dtype)
    res = delta_lstm(*args, chunk_size=3, output_final_state=True, output_chunk_states=True, output_delta=True)
    want = paper_loop(*args)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert res.output.dtype == dtype and rel_err(res.output, want["h"]) < tol
    rec = res.delta.unflatten(-1, (13, 4))
    assert rel_err(rec[..., 0:3, :], want["delta"]) < tol and rel_err(rec[..., 3:6, :], want["rec_delta"]) < tol
    assert rel_err(rec[..., 6:9, :], want["z"]) < tol
    for j, n in enumerate(("i", "u", "o", "c")):
        assert rel_err(rec[..., 9 + j, :], want[n]) < tol, n
    assert rel_err(res.final_state, want["S"][:, -1]) < tol
    assert res.chunk_states.shape == (2, 3, 2, 4, 25) and res.chunk_states[:, 0].abs().max() == 0
    assert rel_err(res.chunk_states[:, 1:], want["S"][:, [2, 5]]) < tol


@pytest.mark.parametrize("split", [1, 5])
def test_a_restart_from_the_state_and_the_previous_output_is_exact(split):
    assert_restart_is_exact(delta_lstm, random_inputs(), (), split, 1e-4)


def test_gradcheck_in_float64():
    assert gradcheck_with_state_and_output(delta_lstm, random_inputs(b=1, T=3, H=1, d=2, seed=1), (1, 1, 2, 13),
                                           (1, 1, 2))


def test_the_public_function_validates_and_has_no_chunkwise_form():
    args = random_inputs(b=1, T=3, H=2, d=4)
    with pytest.raises(ValueError, match="no chunkwise form.*backend='reference'"):
        delta_lstm(*args, backend="chunk")
    with pytest.raises(ValueError, match=r"q must have shape \[batch, pos, head, 3, dim\]"):
        delta_lstm(args[0][..., 0, :], *args[1:])
    with pytest.raises(ValueError, match=r"initial_state must have shape .*\(1, 2, 4, 25\)"):
        delta_lstm(*args, initial_state=torch.zeros(1, 2, 4, 24, dtype=torch.float64))
    with pytest.raises(ValueError, match="rec_beta must have shape"):
        delta_lstm(*args[:6], args[6][..., :2])
    with pytest.raises(ValueError, match="rec_k must have the inputs' dtype"):
        delta_lstm(*args[:4], args[4].float(), *args[5:])
    with pytest.raises(TypeError, match="beta must be a torch.Tensor"):
        delta_lstm(*args[:3], None, *args[4:])
    with pytest.raises(ValueError, match=r"previous_output must have shape \[batch, head, d_v\]"):
        delta_lstm(*args, previous_output=torch.zeros(1, 4, dtype=torch.float64))


# ---------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=32, chunk_size=C,
                      init_std=0.3, mixer="delta_lstm")
    return HookedFastWeightLM(cfg).eval()


def layer_inputs(cache, layer):
    return [cache[f"blocks.{layer}.attn.hook_{n}"] for n in FIELDS]


def test_every_hook_of_the_model_is_the_papers_quantity(model):
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        want = paper_loop(*layer_inputs(cache, layer))
        p = f"blocks.{layer}.attn."
        assert rel_err(cache[p + "hook_z"], want["h"]) < 1e-5
        for hook, name in (("ff", "z"), ("feedback", "s"), ("delta", "delta"), ("rec_delta", "rec_delta"),
                           ("gate_i", "i"), ("update", "u"), ("gate_o", "o"), ("cell", "c")):
            assert rel_err(cache[p + f"hook_{hook}"], want[name]) < 1e-4, hook
    a, x = model.blocks[0].attn, cache["blocks.0.ln1.hook_normalized"]
    k = (F.elu(torch.einsum("bpm,hmd->bphd", x, a.W_K)) + 1).unflatten(-1, (3, 8))
    assert torch.allclose(cache["blocks.0.attn.hook_k"], k / k.sum(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(cache["blocks.0.attn.hook_rec_beta"], torch.sigmoid(x @ a.W_rbeta).unflatten(-1, (2, 3)))
    assert torch.allclose(cache["blocks.0.attn.hook_o_in"], cache["blocks.0.attn.hook_z"] / 8 ** 0.5)


@pytest.mark.parametrize("positions", [[0, 3, 4, 5, 12], [-1, 8]])
def test_fast_weights_and_cell_at_positions_inside_and_at_chunk_boundaries(model, positions):
    _, cache = model.run_with_cache(TOKENS)
    S = fast_weights(model, TOKENS, 1, positions)
    want = paper_loop(*layer_inputs(cache, 1))["S"][:, [p % 13 for p in positions]]
    assert S.shape == (2, len(positions), 2, 8, 49) and rel_err(S, want) < 1e-5


def test_readout_patch_changes_only_that_positions_output(model):
    _, cache = model.run_with_cache(TOKENS)
    want = paper_loop(*layer_inputs(cache, 0))
    zero_cell = lambda S: torch.cat([S[..., :-1], torch.zeros_like(S[..., -1:])], -1)  # noqa: E731
    _, patched = patch_fast_weights(model, TOKENS, 0, 5, zero_cell, mode="readout", return_cache=True)
    z0, z1 = cache["blocks.0.attn.hook_z"], patched["blocks.0.attn.hook_z"]
    assert torch.equal(z0[:, :5], z1[:, :5]) and torch.equal(z0[:, 6:], z1[:, 6:])
    assert z1[:, 5].abs().max() == 0  # h = o ⊙ c with the cell wiped
    assert rel_err(patched["blocks.0.attn.hook_z"][:, 4], want["h"][:, 4]) < 1e-5


@pytest.mark.parametrize("p", [3, 4, 6, 12])
def test_carry_patch_equals_a_rerun_from_the_patched_state_and_read_out(model, p):
    _, cache = model.run_with_cache(TOKENS)
    inputs = layer_inputs(cache, 0)
    want = paper_loop(*inputs)
    edit = lambda S: 0.5 * S.flip(-2) + 0.05  # noqa: E731
    _, carried = patch_fast_weights(model, TOKENS, 0, p, edit, mode="carry", return_cache=True)
    z = carried["blocks.0.attn.hook_z"]
    S_p = edit(want["S"][:, p])  # [batch, head, d_k, 49]
    h_prev = want["h"][:, p - 1] if p > 0 else torch.zeros_like(want["h"][:, 0])
    W_o, R_o, c = S_p[..., 16:24], S_p[..., 40:48], S_p[..., -1]
    o = torch.sigmoid(torch.einsum("bhk,bhkv->bhv", inputs[0][:, p, :, 2].double(), W_o)
                      + torch.einsum("bhk,bhkv->bhv", torch.softmax(h_prev, -1), R_o))
    h_p = o * c  # the patched read-out: h_t = o_t ⊙ c_t from the edited state
    assert torch.equal(z[:, :p], cache["blocks.0.attn.hook_z"][:, :p])
    assert rel_err(z[:, p], h_p) < 1e-5
    if p + 1 < 13:
        rest = paper_loop(*(x[:, p + 1:] for x in inputs), S0=S_p, h0=h_p)
        assert rel_err(z[:, p + 1:], rest["h"]) < 1e-5
        for hook, name in (("cell", "c"), ("feedback", "s"), ("gate_i", "i")):
            assert rel_err(carried[f"blocks.0.attn.hook_{hook}"][:, p + 1:], rest[name]) < 1e-4, hook


def test_quantities_computed_inside_the_recurrence_refuse_a_patch(model):
    for hook in ("hook_cell", "hook_gate_o", "hook_feedback"):
        with pytest.raises(ValueError, match="computed inside its recurrence"):
            model.run_with_hooks(TOKENS, fwd_hooks=[(f"blocks.0.attn.{hook}", lambda x, hook: x * 2)])
    logits = model(TOKENS)
    patched = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_rec_v", lambda x, hook: x * 2)])
    assert not torch.allclose(patched, logits)


def test_effective_attention_and_the_recall_probe_are_clear_errors(model):
    with pytest.raises(NotDefinedForMixer, match="not linear in the values"):
        effective_attention(model, TOKENS, 0)
    with pytest.raises(NotDefinedForMixer, match="gate pre-activations"):
        probe_associations(model, TOKENS, 1, [(0, 1)])


def test_kfac_sites_exist_and_collect(model):
    sites = linear_sites(model, layers=[0])
    assert {s.param for s in sites} >= {"blocks.0.attn.W_Q", "blocks.0.attn.W_rbeta", "blocks.0.attn.W_O"}
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in sites)
    factors = collect_kfac(model, [TOKENS], KFACConfig(sites=("blocks.0.attn.W_V", "blocks.0.attn.W_beta",
                                                              "blocks.0.attn.W_O")), progress=False)
    assert set(factors) == {"blocks.0.attn.W_V", "blocks.0.attn.W_beta", "blocks.0.attn.W_O"}


def test_checkpoint_round_trip_and_backward(model, tmp_path):
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
    again.train()
    again(TOKENS, return_type="loss").backward()
    assert again.blocks[0].attn.W_RK.grad.abs().max() > 0 and again.blocks[0].attn.W_rbeta.grad.abs().max() > 0
