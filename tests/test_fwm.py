"""Fast Weight Memory (Schlag, Munkhdalai & Schmidhuber 2021): the reference recurrence against a loop
written here from the paper's equations (as in the authors' catbAbI/models/lm_fwm.py), gradients, the
mixer's hooks, fast weights at any position, both patch modes, the write patches, the analyses that do
not apply (clear errors), K-FAC sites and a checkpoint round trip."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import edit_association, effective_attention, fast_weights, patch_fast_weights
from workbench.analysis import probe_associations
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.kernels import fwm
from workbench.mixers import NotDefinedForMixer


# ---------------------------------------------------------------------- an independent loop (float64)
def layer_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    mu = x.mean(-1, keepdim=True)
    return (x - mu) / ((x - mu).pow(2).mean(-1, keepdim=True) + eps).sqrt()


def paper_loop(s, r, t, beta, q, e, F0=None, writes=None):
    """Per sequence and head, with flattened matrices instead of einsum: F as a (d_s·d_r) × d_t matrix M,
    the key s⊗r as a vector k: v_old = Mᵀk, M += k uᵀ, M /= max(1, ‖M‖). Returns (reads [b, pos, h, hop,
    d_t], states after each write [b, pos, h, d_s, d_r, d_t], writes [b, pos, h, d_t])."""
    b, n, h, ds = s.shape
    dr, dt, hops = r.shape[-1], t.shape[-1], e.shape[3]
    reads = torch.zeros(b, n, h, hops, dt, dtype=torch.float64)
    states = torch.zeros(b, n, h, ds, dr, dt, dtype=torch.float64)
    us = torch.zeros(b, n, h, dt, dtype=torch.float64)
    for bi in range(b):
        for hi in range(h):
            M = torch.zeros(ds * dr, dt, dtype=torch.float64) if F0 is None else F0[bi, hi].double().reshape(ds * dr, dt)
            for i in range(n):
                k = torch.outer(s[bi, i, hi].double(), r[bi, i, hi].double()).reshape(-1)
                if writes is None:
                    u = beta[bi, i, hi].double() * (t[bi, i, hi].double() - M.T @ k) / dt
                else:
                    u = writes[bi, i, hi].double()
                M = M + torch.outer(k, u)
                M = M / max(1.0, float(M.norm()))
                us[bi, i, hi], states[bi, i, hi] = u, M.reshape(ds, dr, dt)
                node = q[bi, i, hi].double()
                for j in range(hops):  # contract the source axis with the node, the relation axis with e_j
                    G = (node[:, None] * M.reshape(ds, dr, dt).reshape(ds, dr * dt)).sum(0).reshape(dr, dt)
                    node = layer_norm(e[bi, i, hi, j].double() @ G)
                    reads[bi, i, hi, j] = node
    return reads, states, us


def inputs(b=2, n=13, h=2, ds=5, dr=3, hops=3, dtype=torch.float32, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *shape: torch.randn(*shape, generator=g, dtype=torch.float64)  # noqa: E731
    s, r, t = torch.tanh(scale * rnd(b, n, h, ds)), torch.tanh(scale * rnd(b, n, h, dr)), torch.tanh(scale * rnd(b, n, h, ds))
    beta = torch.sigmoid(rnd(b, n, h) + 1)
    q, e = rnd(b, n, h, ds), torch.tanh(rnd(b, n, h, hops, dr))
    return [x.to(dtype) for x in (s, r, t, beta, q, e)]


# ---------------------------------------------------------------------- the reference
def test_reference_equals_the_paper_loop_on_awkward_shapes():
    s, r, t, beta, q, e = inputs()
    res = fwm(s, r, t, beta, q, e, chunk_size=4, output_final_state=True, output_chunk_states=True, output_delta=True)
    reads, states, us = paper_loop(s, r, t, beta, q, e)
    assert res.output.shape == (2, 13, 2, 3, 5) and res.output.dtype == torch.float32
    assert rel_err(res.output, reads) < 1e-5
    assert rel_err(res.delta, us) < 1e-5
    assert rel_err(res.final_state, states[:, -1]) < 1e-5
    assert res.chunk_states.shape == (2, 4, 2, 5, 3, 5)  # before positions 0, 4, 8, 12
    assert res.chunk_states[:, 0].abs().max() == 0
    assert rel_err(res.chunk_states[:, 1:], states[:, [3, 7, 11]]) < 1e-5


def test_the_norm_rescaling_is_exercised_and_matches():
    """Large writes from a large initial state: ‖F‖ exceeds 1 and is divided back to 1, as in the code."""
    s, r, t, beta, q, e = inputs(ds=4, dr=4, hops=2, scale=4.0)
    F0 = 3 * torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(1))
    res = fwm(s, r, t, beta, q, e, initial_state=F0, output_final_state=True)
    reads, states, _ = paper_loop(s, r, t, beta, q, e, F0=F0)
    norms = states.flatten(3).norm(dim=-1)  # [batch, pos, head]
    assert norms.max() <= 1 + 1e-9 and (norms - 1).abs().lt(1e-9).float().mean() > 0.5  # mostly rescaled to 1
    assert rel_err(res.output, reads) < 1e-5 and rel_err(res.final_state, states[:, -1]) < 1e-5


def test_given_writes_replace_the_delta_write():
    s, r, t, beta, q, e = inputs(n=7, hops=1)
    writes = 0.3 * torch.randn(2, 7, 2, 5, generator=torch.Generator().manual_seed(2))
    res = fwm(s, r, t, beta, q, e, writes=writes, output_delta=True)
    reads, _, us = paper_loop(s, r, t, beta, q, e, writes=writes)
    assert rel_err(res.output, reads) < 1e-5 and torch.equal(res.delta, writes)


def test_training_keeps_chunk_starts_not_every_state_and_gradients_are_unchanged(monkeypatch):
    """With gradients and states too large to keep per position, the loop is checkpointed (kernels/fwm/naive.py):
    autograd keeps the chunk-start states, not ~6 states per position (a d_head 32 FWM at batch 32, 128 positions
    went over 24 GB before). The gradients equal those of the same loop without checkpoints (and gradcheck below
    runs through both)."""
    import importlib

    naive = importlib.import_module("workbench.kernels.fwm.naive")
    monkeypatch.setattr(naive, "CHECKPOINT_ABOVE_BYTES", 0)  # these tiny states: checkpoint anyway
    xs = inputs(b=2, n=40, h=2, ds=6, dr=4, hops=2)
    weights = torch.linspace(-1, 1, 6)
    state = 2 * 2 * 6 * 4 * 6  # batch · head · d_s · d_r · d_t

    def run():
        leaves = [x.clone().requires_grad_() for x in xs]
        saved = []
        with torch.autograd.graph.saved_tensors_hooks(lambda x: (saved.append(x.numel()), x)[1], lambda x: x):
            out = fwm(*leaves, chunk_size=8).output
        (out * weights).sum().backward()
        return sum(saved) / state, [x.grad for x in leaves]

    kept, grads = run()
    monkeypatch.setattr(naive, "CHECKPOINT_ABOVE_BYTES", float("inf"))  # below the budget: no checkpoints
    kept_plain, grads_plain = run()
    assert kept < 20 < 200 < kept_plain, (kept, kept_plain)  # 13.6 vs 246.6 states' worth for 40 positions
    assert kept_plain <= naive.STATES_KEPT_PER_POSITION * 40 + 10  # the budget's estimate holds (246.6 for 40)
    for i, (a, b) in enumerate(zip(grads, grads_plain)):
        assert rel_err(a, b) < 1e-6, i


def test_the_checkpoint_budget_follows_the_size_of_the_states(monkeypatch):
    """Checkpoints start where STATES_KEPT_PER_POSITION · pos · state bytes passes the budget."""
    import importlib

    naive = importlib.import_module("workbench.kernels.fwm.naive")
    xs = [x.clone().requires_grad_() for x in inputs(b=2, n=40, h=2, ds=6, dr=4, hops=2)]
    calls = []
    real = naive.checkpoint
    monkeypatch.setattr(naive, "checkpoint", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    need = naive.STATES_KEPT_PER_POSITION * 40 * (2 * 2 * 6 * 4 * 6) * 4  # float32
    for budget, expect in ((need, False), (need - 1, True)):
        calls.clear()
        monkeypatch.setattr(naive, "CHECKPOINT_ABOVE_BYTES", budget)
        fwm(*xs, chunk_size=8).output.sum().backward()
        assert bool(calls) is expect, budget


@pytest.mark.parametrize("checkpointed", [False, True])
def test_gradcheck_float64(checkpointed, monkeypatch):
    import importlib

    if checkpointed:
        monkeypatch.setattr(importlib.import_module("workbench.kernels.fwm.naive"), "CHECKPOINT_ABOVE_BYTES", 0)
    s, r, t, beta, q, e = inputs(b=1, n=4, h=1, ds=3, dr=2, hops=2, dtype=torch.float64, scale=3.0)
    F0 = (1.5 * torch.randn(1, 1, 3, 2, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    args = [x.clone().requires_grad_() for x in (s, r, t, beta, q, e, F0)]

    def f(s, r, t, beta, q, e, F0):
        res = fwm(s, r, t, beta, q, e, initial_state=F0, output_final_state=True)
        return res.output, res.final_state

    assert torch.autograd.gradcheck(f, args, eps=1e-6, atol=1e-6)
    args = [x.clone().requires_grad_() for x in (s, r, t, beta, q, e)]  # from zeros: ‖F‖ < 1, no rescaling
    assert torch.autograd.gradcheck(lambda *a: fwm(*a).output, args, eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("change, message", [
    (dict(backend="chunk"), "no chunkwise form.*backend='reference'"),
    (dict(s=torch.zeros(2, 13, 2)), r"s must have shape \[batch, pos, head, d_s\]"),
    (dict(q=torch.zeros(2, 13, 2, 4)), r"q must have shape \[batch, pos, head, d_s\]"),
    (dict(e=torch.zeros(2, 13, 2, 3)), "one relation per read hop"),
    (dict(t=torch.zeros(2, 13, 2, 4)), "make d_s equal d_t"),
    (dict(beta=None), "beta is required"),
    (dict(initial_state=torch.zeros(2, 2, 5, 5)), r"initial_state must have shape \[batch, head, d_s, d_r, d_t\]"),
    (dict(chunk_size=0), "chunk_size must be a positive int"),
])
def test_bad_arguments_say_the_fix(change, message):
    s, r, t, beta, q, e = inputs()
    kw = dict(s=s, r=r, t=t, beta=beta, q=q, e=e)
    kw.update({k: v for k, v in change.items() if k in kw})
    opts = {k: v for k, v in change.items() if k not in kw}
    with pytest.raises(ValueError, match=message):
        fwm(kw["s"], kw["r"], kw["t"], kw["beta"], kw["q"], kw["e"], **opts)


# ---------------------------------------------------------------------- the mixer in a model
TOKENS = torch.randint(0, 23, (2, 11), generator=torch.Generator().manual_seed(0))


def model(n_reads=2, **kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24, n_ctx=32, chunk_size=4,
                      init_std=0.3, mixer={"kind": "fwm", "n_reads": n_reads, **kw})
    return HookedFastWeightLM(cfg).eval()


def cached(cache, layer, name):
    return cache[f"blocks.{layer}.attn.hook_{name}"]


def loop_from_cache(cache, layer, **kw):
    return paper_loop(*(cached(cache, layer, n) for n in ("s", "r", "t", "beta", "q", "e")), **kw)


def test_the_mixer_is_the_authors_cell():
    """LSTM (gates i, f, z, o; σ(f + 1)), tanh s, r, t, β = σ(· + 1), the memory, out = h + z W_O + b_O."""
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    for layer in range(2):
        attn = m.blocks[layer].attn
        x = cache[f"blocks.{layer}.ln1.hook_normalized"].double()
        hd, cd = torch.zeros(2, 16, dtype=torch.float64), torch.zeros(2, 16, dtype=torch.float64)
        hs = []
        for i in range(TOKENS.shape[1]):
            g = x[:, i] @ attn.W_ih.double() + hd @ attn.W_hh.double() + attn.b_lstm.double()
            gi, gf, gz, go = g.split(16, dim=-1)
            cd = torch.sigmoid(gf + 1) * cd + torch.sigmoid(gi) * torch.tanh(gz)
            hd = torch.sigmoid(go) * torch.tanh(cd)
            hs.append(hd)
        h = torch.stack(hs, 1)
        assert rel_err(cached(cache, layer, "h"), h) < 1e-5
        s = torch.tanh(torch.einsum("bpm,hmd->bphd", h, attn.W_s.double()) + attn.b_s.double())
        assert rel_err(cached(cache, layer, "s"), s) < 1e-5
        beta = torch.sigmoid(h @ attn.W_beta.double() + attn.b_beta.double() + 1)
        assert rel_err(cached(cache, layer, "beta"), beta) < 1e-5
        reads, _, us = loop_from_cache(cache, layer)
        assert rel_err(cached(cache, layer, "read"), reads) < 1e-5
        assert torch.equal(cached(cache, layer, "z"), cached(cache, layer, "read")[..., -1, :])
        assert rel_err(cached(cache, layer, "write"), us) < 1e-5
        t = cached(cache, layer, "t").double()
        assert rel_err(cached(cache, layer, "v_old"), t - us * 4 / beta[..., None]) < 1e-4
        out = h + torch.einsum("bphd,hdm->bpm", reads[..., -1, :], attn.W_O.double()) + attn.b_O.double()
        assert rel_err(cache[f"blocks.{layer}.hook_attn_out"], out) < 1e-5


def test_without_the_residual_the_output_is_the_read_out_only():
    m = model(n_reads=1, residual=False)
    _, cache = m.run_with_cache(TOKENS)
    attn = m.blocks[0].attn
    out = torch.einsum("bphd,hdm->bpm", cached(cache, 0, "z"), attn.W_O) + attn.b_O
    assert rel_err(cache["blocks.0.hook_attn_out"], out) < 1e-6


def test_fast_weights_at_chosen_positions_equal_the_loop():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    W = fast_weights(m, TOKENS, 1, [0, 5, 6, -1])
    _, states, _ = loop_from_cache(cache, 1)
    assert W.shape == (2, 4, 2, 4, 4, 4)  # [batch, n_positions, head, d_s, d_r, d_t]
    assert rel_err(W, states[:, [0, 5, 6, 10]]) < 1e-5


def test_readout_patch_changes_only_that_position():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    new = torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    _, patched = patch_fast_weights(m, TOKENS, 0, 6, new, mode="readout", return_cache=True)
    z0, z1 = cached(cache, 0, "z"), cached(patched, 0, "z")
    assert torch.equal(z0[:, :6], z1[:, :6]) and torch.equal(z0[:, 7:], z1[:, 7:])
    q, e = cached(cache, 0, "q").double(), cached(cache, 0, "e").double()
    node = q[:, 6]
    for j in range(2):  # the read of the given state, by the hop equation
        node = layer_norm(torch.einsum("bhsrt,bhs,bhr->bht", new.double(), node, e[:, 6, :, j]))
    assert rel_err(z1[:, 6], node) < 1e-5


def test_carry_patch_recomputes_later_positions_from_the_patched_state():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    new = 0.5 * torch.randn(2, 2, 4, 4, 4, generator=torch.Generator().manual_seed(6))
    _, carried = patch_fast_weights(m, TOKENS, 0, 4, new, mode="carry", return_cache=True)
    names = ("s", "r", "t", "beta", "q", "e")
    rest = [cached(cache, 0, n)[:, 5:] for n in names]
    reads, _, _ = paper_loop(*rest, F0=new)
    z = cached(carried, 0, "z")
    assert torch.equal(z[:, :4], cached(cache, 0, "z")[:, :4])
    assert rel_err(z[:, 5:], reads[..., -1, :]) < 1e-5


def test_patched_writes_and_old_values_are_fed_back():
    m = model()
    _, cache = m.run_with_cache(TOKENS)
    writes = cached(cache, 0, "write").clone()
    writes[:, 3] = 0.2

    def set_writes(u, hook):
        u[:, 3] = 0.2  # in place: detected by the version counter
        return u

    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_write", set_writes)]):
        _, patched = m.run_with_cache(TOKENS)
    reads, _, _ = loop_from_cache(cache, 0, writes=writes)
    z = cached(patched, 0, "z")
    assert rel_err(z, reads[..., -1, :]) < 1e-5 and not torch.allclose(z[:, 3:], cached(cache, 0, "z")[:, 3:])
    zero_old = lambda v, hook: torch.zeros_like(v)  # noqa: E731  the memory "held nothing" at every write
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_v_old", zero_old)]):
        _, patched = m.run_with_cache(TOKENS)
    b, t = cached(cache, 0, "beta").double(), cached(cache, 0, "t").double()
    reads, _, _ = loop_from_cache(cache, 0, writes=b[..., None] * t / 4)
    assert rel_err(cached(patched, 0, "z"), reads[..., -1, :]) < 1e-5
    assert rel_err(cached(patched, 0, "write"), b[..., None] * t / 4) < 1e-6


def test_analyses_that_assume_a_matrix_state_say_why_not():
    m = model()
    with pytest.raises(NotDefinedForMixer, match="not linear in the values"):
        effective_attention(m, TOKENS, 0)
    with pytest.raises(NotDefinedForMixer, match=r"recall probe .* third-order tensor F \[d_s, d_r, d_t\]"):
        probe_associations(m, TOKENS, 0, [(1, 2)])
    with pytest.raises(NotDefinedForMixer, match="third-order"):
        edit_association(m, TOKENS, 0, 3, torch.randn(2, 4), torch.randn(2, 4))
    from workbench.app_support.edits import redirect_recall
    from workbench.app_support.trajectory import fast_weight_trajectory

    traj = fast_weight_trajectory(m, TOKENS[:1], 1)  # the app draws a third-order state slice by slice
    assert traj.axes == ("d_s", "d_r", "d_t") and traj.W.dim() == 5
    assert torch.equal(traj.matrix(traj.W[4, 1], 1, 2), traj.W[4, 1, :, 2, :])
    with pytest.raises(NotDefinedForMixer, match="third-order"):
        redirect_recall(m, TOKENS[:1], 1, 5, 2)


def test_kfac_sites_exist_and_collect():
    m = model()
    sites = linear_sites(m, layers=[0])
    params = {s.param for s in sites}
    assert {f"blocks.0.attn.W_{n}" for n in ("s", "r", "t", "beta", "q", "e", "O")} <= params
    assert all(s.input_hook in m.hook_dict and s.output_hook in m.hook_dict for s in sites)
    want = ("blocks.0.attn.W_s", "blocks.0.attn.W_e", "blocks.0.attn.W_beta", "blocks.0.attn.W_O")
    factors = collect_kfac(m, [TOKENS], KFACConfig(sites=want), progress=False)
    assert set(factors) == set(want)


def test_config_checks_and_checkpoint_round_trip(tmp_path):
    with pytest.raises(ValueError, match="n_reads must be a positive int"):
        model(n_reads=0)
    with pytest.raises(ValueError, match="use block='pre_norm'"):
        ModelConfig(d_vocab=11, mixer="fwm", block="outlier_protected")
    m = model(n_reads=3)
    assert m.fast_weight_layers == [0, 1] and m.cfg.mixer_label.startswith("FWM")
    save(m, tmp_path)
    assert '"kind": "fwm"' in (tmp_path / "config.json").read_text()
    again = load(tmp_path)
    assert again.cfg == m.cfg and torch.equal(again(TOKENS), m(TOKENS))


def test_training_steps_lower_the_loss():
    m = model(n_reads=1).train()
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    tokens = torch.randint(0, 23, (4, 12), generator=torch.Generator().manual_seed(9))
    losses = []
    for _ in range(15):
        loss = m(tokens, return_type="loss")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))) and losses[-1] < losses[0]


def test_state_statistics_read_the_key_unfolding_of_the_third_order_state():
    from workbench.analysis.outliers import state_statistics

    m = model()
    stats = state_statistics(m, [TOKENS], positions=[2, 8], progress=False)
    W = fast_weights(m, TOKENS, 0, [8])[:, 0].double()  # [batch, head, d_s, d_r, d_t]
    want = W.flatten(2).norm(dim=-1).mean(0)  # ‖F_8‖ per head, mean over sequences
    got = stats[(stats.layer == 0) & (stats.pos == 8)].sort_values("head").frobenius.to_numpy()
    assert set(stats.layer) == {0, 1} and torch.allclose(torch.tensor(got), want, rtol=1e-5)
    assert stats.effective_rank.gt(0).all()


def test_the_kernel_signature_annotations_hold():
    """The jaxtyping annotations of fwm(), checked with beartype (import it before nnsight, as conftest does)."""
    from beartype import beartype
    from jaxtyping import TypeCheckError, jaxtyped

    checked = jaxtyped(typechecker=beartype)(fwm)
    s, r, t, beta, q, e = inputs(ds=5, dr=3, hops=2)
    checked(s, r, t, beta, q, e, initial_state=torch.zeros(2, 2, 5, 3, 5))
    with pytest.raises(TypeCheckError):
        checked(s, r, t, beta, q, e[..., :2])  # e's d_r disagrees with r's


def test_read_side_patches():
    """A query patch changes only that position's read (reads never write); a hook_read patch reaches the
    output through its last hop."""
    m = model()
    _, cache = m.run_with_cache(TOKENS)

    def new_query(q, hook):
        q[:, 7] = 1.0
        return q

    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_q", new_query)]):
        _, patched = m.run_with_cache(TOKENS)
    z0, z1 = cached(cache, 0, "z"), cached(patched, 0, "z")
    assert torch.equal(z0[:, :7], z1[:, :7]) and torch.equal(z0[:, 8:], z1[:, 8:]) and not torch.equal(z0[:, 7], z1[:, 7])
    assert torch.equal(cached(patched, 0, "write"), cached(cache, 0, "write"))
    last = lambda n, hook: torch.cat([n[..., :-1, :], torch.zeros_like(n[..., -1:, :])], dim=-2)  # noqa: E731
    with m.hooks(fwd_hooks=[("blocks.0.attn.hook_read", last)]):
        _, patched = m.run_with_cache(TOKENS)
    assert cached(patched, 0, "z").abs().max() == 0
    attn = m.blocks[0].attn
    assert rel_err(patched["blocks.0.hook_attn_out"], cached(cache, 0, "h") + attn.b_O) < 1e-6
