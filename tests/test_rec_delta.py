"""The Recurrent Delta Net (Irie et al. 2021) against a loop written here from the paper's equations
(in the authors' orientation: W is [d_v, d_k], v̄ = W k, W += β (v − v̄) kᵀ, y = W q), and every workbench
feature on it: hooks, fast weights at any position, both patch modes across chunk boundaries (the
recurrence feeds back y_{t-1}), the clear effective-attention error, K-FAC sites, checkpoints, the probe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from helpers import assert_restart_is_exact, gradcheck_with_state_and_output, rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import effective_attention, fast_weights, patch_fast_weights, probe_associations
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.kernels import rec_delta
from workbench.kernels.rec_delta import rec_delta_reference
from workbench.mixers import NotDefinedForMixer

TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))
C = 4  # chunk size of the model: chunk starts at 0, 4, 8, 12


def paper_loop(qx, kx, vx, bx, R_q, R_k, R_v, r_b, W0=None, y0=None) -> dict[str, torch.Tensor]:
    """Every quantity of the recurrence at every position, float64, one (batch, head) matrix product at a
    time. Inputs as the kernel's: slow parts [batch, pos, head, ·], R [head, d_v, ·], r_b [head, d_v];
    W0 in our [d_k, d_v] layout. Returns states in our layout [batch, pos, head, d_k, d_v]."""
    qx, kx, vx, bx, R_q, R_k, R_v, r_b = (x.detach().double() for x in (qx, kx, vx, bx, R_q, R_k, R_v, r_b))
    b, T, H, dk = qx.shape
    dv = vx.shape[-1]
    names = ("y", "f", "q", "k", "v", "beta", "v_old", "u", "W")
    out = {n: [[[None] * H for _ in range(T)] for _ in range(b)] for n in names}
    for i in range(b):
        for h in range(H):
            W = torch.zeros(dv, dk, dtype=torch.float64) if W0 is None else W0[i, h].double().T.clone()
            y = torch.zeros(dv, dtype=torch.float64) if y0 is None else y0[i, h].double()
            for t in range(T):
                f = torch.tanh(y)
                q = torch.softmax(qx[i, t, h] + R_q[h].T @ f, 0)
                k = torch.softmax(kx[i, t, h] + R_k[h].T @ f, 0)
                v = vx[i, t, h] + R_v[h].T @ f
                beta = torch.sigmoid(bx[i, t, h] + r_b[h] @ f)
                v_old = W @ k
                u = beta * (v - v_old)
                W = W + torch.outer(u, k)
                y = W @ q
                for n, x in zip(names, (y, f, q, k, v, beta, v_old, u, W.T.clone())):
                    out[n][i][t][h] = x
    return {n: torch.stack([torch.stack([torch.stack(row) for row in seq]) for seq in out[n]]) for n in names}


def random_inputs(b=2, T=11, H=3, d=5, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return (r(b, T, H, d), r(b, T, H, d), r(b, T, H, d), r(b, T, H), r(H, d, d) * 0.5, r(H, d, d) * 0.5,
            r(H, d, d) * 0.5, r(H, d) * 0.5)


# ---------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_reference_equals_the_papers_loop(dtype):
    args = random_inputs(dtype=dtype)
    res = rec_delta(*args, chunk_size=3, output_final_state=True, output_chunk_states=True, output_delta=True)
    want = paper_loop(*args)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    assert res.output.dtype == dtype and rel_err(res.output, want["y"]) < tol
    assert rel_err(res.delta, want["u"]) < tol
    assert rel_err(res.final_state, want["W"][:, -1]) < tol
    assert res.chunk_states.shape == (2, 4, 3, 5, 5) and res.chunk_states[:, 0].abs().max() == 0
    assert rel_err(res.chunk_states[:, 1:], want["W"][:, [2, 5, 8]]) < tol


@pytest.mark.parametrize("split", [1, 4, 7])
def test_a_restart_from_the_state_and_the_previous_output_is_exact(split):
    args = random_inputs()
    assert_restart_is_exact(rec_delta, args[:4], args[4:], split, 1e-3)


def test_gradcheck_in_float64():
    assert gradcheck_with_state_and_output(rec_delta, random_inputs(b=1, T=4, H=2, d=3, seed=1), (1, 2, 3, 3),
                                           (1, 2, 3))


def test_the_public_function_validates_and_has_no_chunkwise_form():
    args = random_inputs(b=1, T=3, H=2, d=4)
    with pytest.raises(ValueError, match="no chunkwise form.*backend='reference'"):
        rec_delta(*args, backend="chunk")
    with pytest.raises(ValueError, match="backend must be one of"):
        rec_delta(*args, backend="fast")
    with pytest.raises(ValueError, match=r"R_v must have shape \(2, 4, 4\)"):
        rec_delta(*args[:6], args[6][:, :3], args[7])
    with pytest.raises(ValueError, match=r"previous_output must have shape \(1, 2, 4\)"):
        rec_delta(*args, previous_output=torch.zeros(1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="beta must have shape"):
        rec_delta(*args[:3], args[3][:, :2], *args[4:])
    assert rec_delta_reference(*args).output.shape == (1, 3, 2, 4)


# ---------------------------------------------------------------------- the model
def model_of(**kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24, n_ctx=32, chunk_size=C,
                      init_std=0.3, mixer="rec_delta", **kw)
    return HookedFastWeightLM(cfg).eval()


@pytest.fixture(scope="module")
def model():
    return model_of()


def layer_loop(model, cache, layer: int) -> dict[str, torch.Tensor]:
    a = model.blocks[layer].attn
    p = f"blocks.{layer}.attn."
    return paper_loop(*(cache[p + f"hook_{n}_pre"] for n in ("q", "k", "v", "beta")), a.R_q, a.R_k, a.R_v, a.r_beta)


def test_every_hook_of_the_model_is_the_papers_quantity(model):
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        want = layer_loop(model, cache, layer)
        p = f"blocks.{layer}.attn."
        assert rel_err(cache[p + "hook_z"], want["y"]) < 1e-5
        for hook, name in (("feedback", "f"), ("q", "q"), ("k", "k"), ("v", "v"), ("beta", "beta"),
                           ("v_old", "v_old"), ("delta", "u")):
            assert rel_err(cache[p + f"hook_{hook}"], want[name]) < 1e-4, hook
    x = cache["blocks.0.ln1.hook_normalized"]
    a = model.blocks[0].attn
    assert torch.allclose(cache["blocks.0.attn.hook_q_pre"], torch.einsum("bpm,hmd->bphd", x, a.W_Q))
    assert torch.allclose(cache["blocks.0.attn.hook_beta_pre"], x @ a.W_beta)


def test_the_model_backpropagates_into_the_recurrent_weights():
    m = model_of()
    m.train()
    m(TOKENS, return_type="loss").backward()
    for n in ("R_q", "R_k", "R_v", "r_beta", "W_beta"):
        g = getattr(m.blocks[0].attn, n).grad
        assert g is not None and g.abs().max() > 0, n


@pytest.mark.parametrize("positions", [[0, 3, 4, 5, 12], [-1, 7, 8]])
def test_fast_weights_at_positions_inside_and_at_chunk_boundaries(model, positions):
    _, cache = model.run_with_cache(TOKENS)
    W = fast_weights(model, TOKENS, 1, positions)
    want = layer_loop(model, cache, 1)["W"][:, [p % 13 for p in positions]]
    assert W.shape == (2, len(positions), 2, 8, 8) and rel_err(W, want) < 1e-5


def test_fast_weights_alone_in_their_chunk_restart_from_the_run_output(model, monkeypatch):
    """With every single position advanced by one run from its chunk's snapshot (workbench/mixers/state.py,
    _KERNEL_FROM forced to 1), that run restarts with the output just before the chunk (q, k, v, β read it)."""
    monkeypatch.setattr("workbench.mixers.state._KERNEL_FROM", 1)
    _, cache = model.run_with_cache(TOKENS)
    positions = [2, 6, 12]  # one per chunk of 4
    W = fast_weights(model, TOKENS, 1, positions)
    assert rel_err(W, layer_loop(model, cache, 1)["W"][:, positions]) < 1e-5


def test_readout_patch_changes_only_that_positions_output(model):
    _, cache = model.run_with_cache(TOKENS)
    want = layer_loop(model, cache, 0)
    double = lambda S: 2 * S  # noqa: E731
    _, patched = patch_fast_weights(model, TOKENS, 0, 6, double, mode="readout", return_cache=True)
    z0, z1 = cache["blocks.0.attn.hook_z"], patched["blocks.0.attn.hook_z"]
    assert torch.equal(z0[:, :6], z1[:, :6]) and torch.equal(z0[:, 7:], z1[:, 7:])
    read = torch.einsum("bhk,bhkv->bhv", want["q"][:, 6], 2 * want["W"][:, 6])  # q_6 from the unpatched y_5
    assert rel_err(z1[:, 6], read) < 1e-5
    for hook in ("q", "k", "feedback", "delta"):  # the run itself is unchanged: what it fed back too
        assert torch.equal(patched[f"blocks.0.attn.hook_{hook}"], cache[f"blocks.0.attn.hook_{hook}"]), hook


@pytest.mark.parametrize("p", [3, 4, 6, 12])  # end of a chunk, a chunk start, inside a chunk, the last position
def test_carry_patch_equals_a_rerun_from_the_patched_state_and_read_out(model, p):
    _, cache = model.run_with_cache(TOKENS)
    pre = [cache[f"blocks.0.attn.hook_{n}_pre"] for n in ("q", "k", "v", "beta")]
    a = model.blocks[0].attn
    R = (a.R_q, a.R_k, a.R_v, a.r_beta)
    want = paper_loop(*pre, *R)
    edit = lambda S: 0.5 * S.flip(-1) + 0.1  # noqa: E731
    _, carried = patch_fast_weights(model, TOKENS, 0, p, edit, mode="carry", return_cache=True)
    z = carried["blocks.0.attn.hook_z"]
    W_p = edit(want["W"][:, p])  # [batch, head, d_k, d_v]
    y_p = torch.einsum("bhk,bhkv->bhv", want["q"][:, p], W_p)  # the patched read-out, fed back to p + 1
    assert torch.equal(z[:, :p], cache["blocks.0.attn.hook_z"][:, :p])
    assert rel_err(z[:, p], y_p) < 1e-5
    if p + 1 < 13:
        rest = paper_loop(*(x[:, p + 1:] for x in pre), *R, W0=W_p, y0=y_p)
        assert rel_err(z[:, p + 1:], rest["y"]) < 1e-5
        assert rel_err(carried["blocks.0.attn.hook_q"][:, p + 1:], rest["q"]) < 1e-5
        assert rel_err(carried["blocks.0.attn.hook_delta"][:, p + 1:], rest["u"]) < 1e-4
        assert not torch.allclose(z[:, p + 1:], cache["blocks.0.attn.hook_z"][:, p + 1:])


def test_quantities_computed_inside_the_recurrence_refuse_a_patch(model):
    for hook in ("hook_q", "hook_feedback", "hook_delta"):
        with pytest.raises(ValueError, match="computed inside its recurrence.*hook_q_pre"):
            model.run_with_hooks(TOKENS, fwd_hooks=[(f"blocks.0.attn.{hook}", lambda x, hook: x * 2)])
    # the slow parts are inputs: patching one re-runs the recurrence
    logits = model(TOKENS)
    patched = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_v_pre", lambda x, hook: x * 2)])
    assert not torch.allclose(patched, logits)


def test_effective_attention_is_the_clear_error(model):
    with pytest.raises(NotDefinedForMixer, match="not linear in the values"):
        effective_attention(model, TOKENS, 0)


def test_kfac_sites_exist_and_collect(model):
    sites = linear_sites(model, layers=[0])
    assert {s.param for s in sites} >= {"blocks.0.attn.W_Q", "blocks.0.attn.W_beta", "blocks.0.attn.W_O"}
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in sites)
    factors = collect_kfac(model, [TOKENS], KFACConfig(sites=("blocks.0.attn.W_V", "blocks.0.attn.W_O")),
                           progress=False)
    assert set(factors) == {"blocks.0.attn.W_V", "blocks.0.attn.W_O"}


def test_checkpoint_round_trip(model, tmp_path):
    save(model, tmp_path)
    assert '"kind": "rec_delta"' in (tmp_path / "config.json").read_text()
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
    assert torch.equal(fast_weights(again, TOKENS, 1, [5]), fast_weights(model, TOKENS, 1, [5]))


def test_the_recall_probe_reads_the_fast_weights_with_the_effective_keys(model):
    pairs = [(0, 1), (4, 6)]
    df = probe_associations(model, TOKENS, 1, pairs)
    _, cache = model.run_with_cache(TOKENS)
    states = layer_loop(model, cache, 1)["W"]
    k, v = cache["blocks.1.attn.hook_k"].double(), cache["blocks.1.attn.hook_v"].double()
    assert len(df) and df.fidelity.notna().all()
    for _, r in df.iterrows():
        got = states[r.seq, r.pos, r["head"]].T @ k[r.seq, r.key_pos, r["head"]]
        assert abs(r.fidelity - float(F.cosine_similarity(got, v[r.seq, r.value_pos, r["head"]], dim=0))) < 1e-4


def test_config_refuses_the_outlier_protected_qk_norm():
    with pytest.raises(ValueError, match="QK-norm does not apply"):
        ModelConfig(d_vocab=23, mixer="rec_delta", block="outlier_protected")
