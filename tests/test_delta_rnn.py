"""The Delta RNN (Irie et al. 2021) against a loop written here from the paper's equations (in the
authors' orientation: W [d_v, d_k], R [d_v, d_v], v̄ = W k, W += β (v − v̄) kᵀ, y = W q + R softmax(y_{t-1})),
and every workbench feature on it: hooks, fast weights [W | R] at any position, both patch modes across
chunk boundaries (the read-out feeds back y_{t-1}), the clear effective-attention error, K-FAC sites,
checkpoints, the recall probe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_restart_is_exact, gradcheck_with_state_and_output, rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import effective_attention, fast_weights, patch_fast_weights, probe_associations
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.kernels import delta_rnn
from workbench.mixers import NotDefinedForMixer

TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))
C = 4
FIELDS = ("q", "k", "v", "beta", "rec_k", "rec_v", "rec_beta")


def paper_loop(q, k, v, beta, rk, rv, rbeta, S0=None, y0=None) -> dict[str, torch.Tensor]:
    """Every quantity at every position, float64, one (batch, head) at a time; S0 / states in our packed
    layout [d_k, 2·d_v] = [W | R] (W and R transposed from the authors')."""
    q, k, v, beta, rk, rv, rbeta = (x.detach().double() for x in (q, k, v, beta, rk, rv, rbeta))
    b, T, H, dk = q.shape
    dv = v.shape[-1]
    names = ("y", "z", "s", "r", "v_old", "u", "rv_old", "ur", "S")
    out = {n: [[[None] * H for _ in range(T)] for _ in range(b)] for n in names}
    for i in range(b):
        for h in range(H):
            if S0 is None:
                W, R = torch.zeros(dv, dk, dtype=torch.float64), torch.zeros(dv, dv, dtype=torch.float64)
            else:
                W, R = S0[i, h, :, :dv].double().T.clone(), S0[i, h, :, dv:].double().T.clone()
            y = torch.zeros(dv, dtype=torch.float64) if y0 is None else y0[i, h].double()
            for t in range(T):
                v_old = W @ k[i, t, h]
                u = beta[i, t, h] * (v[i, t, h] - v_old)
                W = W + torch.outer(u, k[i, t, h])
                z = W @ q[i, t, h]
                rv_old = R @ rk[i, t, h]
                ur = rbeta[i, t, h] * (rv[i, t, h] - rv_old)
                R = R + torch.outer(ur, rk[i, t, h])
                s = torch.softmax(y, 0)
                r = R @ s
                y = z + r
                for n, x in zip(names, (y, z, s, r, v_old, u, rv_old, ur, torch.cat([W.T, R.T], 1))):
                    out[n][i][t][h] = x
    return {n: torch.stack([torch.stack([torch.stack(row) for row in seq]) for seq in out[n]]) for n in names}


def random_inputs(b=2, T=11, H=3, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    q, k = (F.elu(r(b, T, H, d)) + 1 for _ in range(2))
    q, k = q / q.sum(-1, keepdim=True), k / k.sum(-1, keepdim=True)
    return (q, k, r(b, T, H, d), torch.sigmoid(r(b, T, H)), torch.softmax(r(b, T, H, d), -1), r(b, T, H, d),
            torch.sigmoid(r(b, T, H)))


# ---------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_equals_the_papers_loop(dtype):
    args = random_inputs(dtype=dtype)
    res = delta_rnn(*args, chunk_size=3, output_final_state=True, output_chunk_states=True, output_delta=True)
    want = paper_loop(*args)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert res.output.dtype == dtype and rel_err(res.output, want["y"]) < tol
    assert res.delta.shape == (2, 11, 3, 15)
    for i, n in enumerate(("u", "ur", "z")):
        assert rel_err(res.delta[..., 5 * i:5 * (i + 1)], want[n]) < tol, n
    assert rel_err(res.final_state, want["S"][:, -1]) < tol
    assert res.chunk_states.shape == (2, 4, 3, 5, 10) and res.chunk_states[:, 0].abs().max() == 0
    assert rel_err(res.chunk_states[:, 1:], want["S"][:, [2, 5, 8]]) < tol


@pytest.mark.parametrize("split", [1, 6])
def test_a_restart_from_the_state_and_the_previous_output_is_exact(split):
    assert_restart_is_exact(delta_rnn, random_inputs(), (), split, 1e-3)


def test_gradcheck_in_float64():
    assert gradcheck_with_state_and_output(delta_rnn, random_inputs(b=1, T=4, H=2, d=3, seed=1), (1, 2, 3, 6),
                                           (1, 2, 3))


def test_the_public_function_validates_and_has_no_chunkwise_form():
    args = random_inputs(b=1, T=3, H=2, d=4)
    with pytest.raises(ValueError, match="no chunkwise form.*backend='reference'"):
        delta_rnn(*args, backend="chunk")
    with pytest.raises(ValueError, match="d_k = d_v"):
        delta_rnn(args[0][..., :3], args[1][..., :3], *args[2:])
    with pytest.raises(ValueError, match=r"initial_state must have shape .*\(1, 2, 4, 8\)"):
        delta_rnn(*args, initial_state=torch.zeros(1, 2, 4, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="rec_beta must have shape"):
        delta_rnn(*args[:6], args[6][:, :2])
    with pytest.raises(ValueError, match="rec_v must have the inputs' dtype"):
        delta_rnn(*args[:5], args[5].float(), args[6])
    with pytest.raises(ValueError, match=r"previous_output must have shape \[batch, head, d_v\]"):
        delta_rnn(*args, previous_output=torch.zeros(1, 4, dtype=torch.float64))


# ---------------------------------------------------------------------- the model
@pytest.fixture(scope="module")
def model():
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=32, chunk_size=C,
                      init_std=0.3, mixer="delta_rnn")
    return HookedFastWeightLM(cfg).eval()


def layer_inputs(cache, layer):
    return [cache[f"blocks.{layer}.attn.hook_{n}"] for n in FIELDS]


def test_every_hook_of_the_model_is_the_papers_quantity(model):
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        want = paper_loop(*layer_inputs(cache, layer))
        p = f"blocks.{layer}.attn."
        assert rel_err(cache[p + "hook_z"], want["y"]) < 1e-5
        for hook, name in (("ff", "z"), ("feedback", "s"), ("rec_read", "r"), ("v_old", "v_old"), ("delta", "u"),
                           ("rec_v_old", "rv_old"), ("rec_delta", "ur")):
            assert rel_err(cache[p + f"hook_{hook}"], want[name]) < 1e-4, hook
    a, x = model.blocks[0].attn, cache["blocks.0.ln1.hook_normalized"]
    q = F.elu(torch.einsum("bpm,hmd->bphd", x, a.W_Q)) + 1
    assert torch.allclose(cache["blocks.0.attn.hook_q"], q / q.sum(-1, keepdim=True), atol=1e-6)
    assert torch.allclose(cache["blocks.0.attn.hook_rec_k"], torch.softmax(torch.einsum("bpm,hmd->bphd", x, a.W_RK), -1))


@pytest.mark.parametrize("positions", [[0, 3, 4, 5, 12], [-1, 8]])
def test_fast_weights_are_w_and_r_at_positions_inside_and_at_chunk_boundaries(model, positions):
    _, cache = model.run_with_cache(TOKENS)
    S = fast_weights(model, TOKENS, 1, positions)
    want = paper_loop(*layer_inputs(cache, 1))["S"][:, [p % 13 for p in positions]]
    assert S.shape == (2, len(positions), 2, 8, 16) and rel_err(S, want) < 1e-5


def test_readout_patch_changes_only_that_positions_output(model):
    _, cache = model.run_with_cache(TOKENS)
    want = paper_loop(*layer_inputs(cache, 0))
    _, patched = patch_fast_weights(model, TOKENS, 0, 5, lambda S: 2 * S, mode="readout", return_cache=True)
    z0, z1 = cache["blocks.0.attn.hook_z"], patched["blocks.0.attn.hook_z"]
    assert torch.equal(z0[:, :5], z1[:, :5]) and torch.equal(z0[:, 6:], z1[:, 6:])
    assert rel_err(z1[:, 5], 2 * want["y"][:, 5]) < 1e-5  # both reads are linear in [W | R]
    assert torch.equal(patched["blocks.0.attn.hook_feedback"], cache["blocks.0.attn.hook_feedback"])


@pytest.mark.parametrize("p", [3, 4, 6, 12])
def test_carry_patch_equals_a_rerun_from_the_patched_state_and_read_out(model, p):
    _, cache = model.run_with_cache(TOKENS)
    inputs = layer_inputs(cache, 0)
    want = paper_loop(*inputs)
    edit = lambda S: 0.5 * S.flip(-2) + 0.05  # noqa: E731
    _, carried = patch_fast_weights(model, TOKENS, 0, p, edit, mode="carry", return_cache=True)
    z = carried["blocks.0.attn.hook_z"]
    S_p = edit(want["S"][:, p])
    W_p, R_p = S_p[..., :8], S_p[..., 8:]
    y_prev = want["y"][:, p - 1] if p > 0 else torch.zeros_like(want["y"][:, 0])
    y_p = (torch.einsum("bhk,bhkv->bhv", inputs[0][:, p].double(), W_p)
           + torch.einsum("bhk,bhkv->bhv", torch.softmax(y_prev, -1), R_p))
    assert torch.equal(z[:, :p], cache["blocks.0.attn.hook_z"][:, :p])
    assert rel_err(z[:, p], y_p) < 1e-5
    if p + 1 < 13:
        rest = paper_loop(*(x[:, p + 1:] for x in inputs), S0=S_p, y0=y_p)
        assert rel_err(z[:, p + 1:], rest["y"]) < 1e-5
        for hook, name in (("ff", "z"), ("feedback", "s"), ("rec_read", "r"), ("rec_delta", "ur")):
            assert rel_err(carried[f"blocks.0.attn.hook_{hook}"][:, p + 1:], rest[name]) < 1e-4, hook
    assert rel_err(carried["blocks.0.attn.hook_rec_read"][:, p], want["r"][:, p]) < 1e-5  # the run before the patch


def test_quantities_computed_inside_the_recurrence_refuse_a_patch(model):
    for hook in ("hook_ff", "hook_feedback", "hook_rec_delta"):
        with pytest.raises(ValueError, match="computed inside its recurrence"):
            model.run_with_hooks(TOKENS, fwd_hooks=[(f"blocks.0.attn.{hook}", lambda x, hook: x * 2)])
    logits = model(TOKENS)
    patched = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_rec_v", lambda x, hook: x * 2)])
    assert not torch.allclose(patched, logits)


def test_effective_attention_is_the_clear_error(model):
    with pytest.raises(NotDefinedForMixer, match="not linear in the values"):
        effective_attention(model, TOKENS, 0)


def test_kfac_sites_exist_and_collect(model):
    sites = linear_sites(model, layers=[0])
    assert {s.param for s in sites} >= {"blocks.0.attn.W_Q", "blocks.0.attn.W_RK", "blocks.0.attn.W_rbeta",
                                        "blocks.0.attn.W_O"}
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in sites)
    factors = collect_kfac(model, [TOKENS], KFACConfig(sites=("blocks.0.attn.W_RV", "blocks.0.attn.W_O")),
                           progress=False)
    assert set(factors) == {"blocks.0.attn.W_RV", "blocks.0.attn.W_O"}


def test_checkpoint_round_trip_and_backward(model, tmp_path):
    save(model, tmp_path)
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
    again.train()
    again(TOKENS, return_type="loss").backward()
    assert again.blocks[0].attn.W_RK.grad.abs().max() > 0 and again.blocks[0].attn.W_rbeta.grad.abs().max() > 0


def test_the_recall_probe_reads_the_feed_forward_memory(model):
    df = probe_associations(model, TOKENS, 1, [(0, 1), (4, 6)])
    _, cache = model.run_with_cache(TOKENS)
    states = paper_loop(*layer_inputs(cache, 1))["S"][..., :8]  # W
    k, v = cache["blocks.1.attn.hook_k"].double(), cache["blocks.1.attn.hook_v"].double()
    assert len(df) and df.fidelity.notna().all()
    for _, r in df.iterrows():
        got = states[r.seq, r.pos, r["head"]].T @ k[r.seq, r.key_pos, r["head"]]
        assert abs(r.fidelity - float(F.cosine_similarity(got, v[r.seq, r.value_pos, r["head"]], dim=0))) < 1e-4
