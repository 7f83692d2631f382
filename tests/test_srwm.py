"""The self-referential weight matrix (Irie et al. 2022): the reference kernel against a loop written here
from the paper's equations, and the mixer's hooks, fast weights, state patches, carried segments,
gradients, K-FAC sites and checkpoints against that loop."""

from __future__ import annotations

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig, load, save
from workbench.analysis import effective_attention, fast_weights, patch_fast_weights, probe_associations
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.kernels import srwm, srwm_reference, srwm_trace
from workbench.mixers import NotDefinedForMixer
from workbench.mixers.srwm import SRWMConfig, carried, run_segment


# ---------------------------------------------------------------------- the paper's equations, as written there
def paper_loop(x: torch.Tensor, W0: torch.Tensor):
    """Irie et al. 2022, eqs. 5–8, in float64 with the paper's orientation (W [d_out, d_in], y = W x):
    W = [W_y; W_q; W_k; w_β]; y, k, q, β from W_{t-1}; v = W_{t-1} q, v̄ = W_{t-1} k;
    W_t = W_{t-1} + σ(β) (v − v̄) ⊗ k, one β per block of rows. x: [batch, pos, head, d] (already φ(x)),
    W0: [batch, head, d, 3d+4] (our layout). Returns per-position dicts and the states W_t, all in our layout."""
    b, T, h, d = x.shape
    ys, states, rec = [], [], {n: [] for n in ("q", "k", "beta", "v", "v_old", "delta")}
    for bi in range(b):
        ys.append([]), states.append([])
        for n in rec:
            rec[n].append([])
        for hi in range(h):
            W = W0[bi, hi].double().T.clone()  # [3d+4, d]
            blocks = [slice(0, d), slice(d, 2 * d), slice(2 * d, 3 * d), slice(3 * d, 3 * d + 4)]
            yh, Sh, rh = [], [], {n: [] for n in rec}
            for t in range(T):
                xt = x[bi, t, hi].double()
                y = W[blocks[0]] @ xt
                q = torch.softmax(W[blocks[1]] @ xt, 0)
                k = torch.softmax(W[blocks[2]] @ xt, 0)
                beta = torch.sigmoid(W[blocks[3]] @ xt)
                v, v_old = W @ q, W @ k
                delta = torch.cat([beta[i] * (v[s] - v_old[s]) for i, s in enumerate(blocks)])
                W = W + torch.outer(delta, k)
                yh.append(y), Sh.append(W.T.clone())
                for n, val in zip(rh, (q, k, beta, v, v_old, delta)):
                    rh[n].append(val)
            ys[-1].append(torch.stack(yh)), states[-1].append(torch.stack(Sh))
            for n in rec:
                rec[n][-1].append(torch.stack(rh[n]))
    stack = lambda rows: torch.stack([torch.stack(r, 1) for r in rows])  # noqa: E731  [b, T, h, ...]
    return stack(ys), stack(states), {n: stack(r) for n, r in rec.items()}


def random_inputs(b=2, T=11, h=3, d=5, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(b, T, h, d, generator=g) * 2, -1).to(dtype)
    W0 = (torch.randn(b, h, d, 3 * d + 4, generator=g) / d ** 0.5).to(dtype)
    return x, W0


# ---------------------------------------------------------------------- the kernel
@pytest.mark.parametrize("T, chunk", [(1, 4), (11, 4), (13, 64), (9, 3)])
def test_reference_matches_the_papers_loop(T, chunk):
    x, W0 = random_inputs(T=T)
    y, states, rec = paper_loop(x, W0)
    out = srwm(x, W0, chunk_size=chunk, output_final_state=True, output_chunk_states=True, output_delta=True)
    assert out.output.shape == (2, T, 3, 5) and rel_err(out.output, y) < 1e-5
    assert rel_err(out.final_state, states[:, -1]) < 1e-5
    assert rel_err(out.delta, rec["delta"]) < 1e-5
    before = torch.cat([W0[:, None].double(), states[:, :-1]], 1)  # the state before each position's write
    assert out.chunk_states.shape[1] == -(-T // chunk)
    assert rel_err(out.chunk_states, before[:, ::chunk]) < 1e-5
    tr = srwm_trace(x, W0)
    for n in ("q", "k", "beta", "v", "v_old", "delta"):
        assert rel_err(getattr(tr, n), rec[n]) < 1e-5, n
    assert rel_err(tr.main[..., :5], y) < 1e-5
    assert torch.equal(srwm_reference(x, W0).output, out.output)


def test_the_kernel_validates_its_arguments():
    x, W0 = random_inputs()
    with pytest.raises(ValueError, match="no chunkwise form.*backend='reference'"):
        srwm(x, W0, backend="chunk")
    with pytest.raises(ValueError, match="backend must be one of"):
        srwm(x, W0, backend="fused")
    with pytest.raises(ValueError, match=r"initial_state must have shape \[batch, head, d_k, d_v\].*expand"):
        srwm(x, W0[0])
    with pytest.raises(ValueError, match="leaves no output block.*e.g. 19"):
        srwm(x, W0[..., :14])
    with pytest.raises(ValueError, match="4 dims"):
        srwm(x[0], W0)
    with pytest.raises(ValueError, match="empty"):
        srwm(x[:, :0], W0)
    with pytest.raises(ValueError, match="chunk_size"):
        srwm(x, W0, chunk_size=0)


def test_gradcheck_float64():
    x, W0 = random_inputs(b=1, T=4, h=2, d=3, dtype=torch.float64)
    x.requires_grad_(True), W0.requires_grad_(True)

    def f(x, W0):
        out = srwm(x, W0, output_final_state=True)
        return out.output, out.final_state

    assert torch.autograd.gradcheck(f, (x, W0), eps=1e-6, atol=1e-6)


# ---------------------------------------------------------------------- the mixer
def model_of(mixer="srwm", **kw) -> HookedFastWeightLM:
    args = dict(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24, n_ctx=64, chunk_size=4,
                init_std=0.3, mixer=mixer)
    args.update(kw)
    return HookedFastWeightLM(ModelConfig(**args)).eval()


TOKENS = torch.randint(0, 23, (2, 13), generator=torch.Generator().manual_seed(0))


def layer_loop(model, cache, layer):
    x = cache[f"blocks.{layer}.attn.hook_x"]
    W0 = model.blocks[layer].attn.W_0.detach().expand(x.shape[0], -1, -1, -1)
    return paper_loop(x, W0)


def test_hooks_hold_the_papers_quantities():
    model = model_of()
    _, cache = model.run_with_cache(TOKENS)
    for layer in range(2):
        a = f"blocks.{layer}.attn."
        y, states, rec = layer_loop(model, cache, layer)
        assert rel_err(cache[a + "hook_z"], y) < 1e-5
        assert torch.allclose(cache[a + "hook_x"], torch.softmax(cache[a + "hook_x_pre"], -1))
        for n in ("q", "k", "v", "v_old", "delta"):
            assert rel_err(cache[a + f"hook_{n}"], rec[n]) < 1e-5, n
        for i, n in enumerate(("y", "q", "k", "beta")):
            assert rel_err(cache[a + f"hook_beta_{n}"], rec["beta"][..., i]) < 1e-5, n
        assert rel_err(cache[a + "hook_final_state"], states[:, -1]) < 1e-5
        main = cache[a + "hook_main"]
        assert rel_err(main[..., :4], y) < 1e-5 and torch.allclose(torch.softmax(main[..., 8:12], -1), cache[a + "hook_k"])


def test_fast_weights_at_chosen_positions_are_the_loops_states():
    model = model_of()
    _, cache = model.run_with_cache(TOKENS)
    _, states, _ = layer_loop(model, cache, 1)
    W = fast_weights(model, TOKENS, 1, [0, 5, 8, -1])
    assert W.shape == (2, 4, 2, 4, 16)
    assert rel_err(W, states[:, [0, 5, 8, 12]]) < 1e-5


def test_readout_patch_changes_only_the_output_that_reads_the_state():
    model = model_of()
    _, cache = model.run_with_cache(TOKENS)
    zero = lambda S: torch.zeros_like(S)  # noqa: E731
    _, patched = patch_fast_weights(model, TOKENS, 0, 6, zero, mode="readout", return_cache=True)
    z0, z1 = cache["blocks.0.attn.hook_z"], patched["blocks.0.attn.hook_z"]
    # W_6 (after the write at 6) is read by y_7, and only there
    assert torch.equal(z0[:, :7], z1[:, :7]) and torch.equal(z0[:, 8:], z1[:, 8:])
    assert z1[:, 7].abs().max() == 0 and z0[:, 7].abs().max() > 0
    # the last state is read by no position of this sequence
    _, last = patch_fast_weights(model, TOKENS, 0, -1, zero, mode="readout", return_cache=True)
    assert torch.equal(last["blocks.0.attn.hook_z"], z0)


def test_carry_patch_equals_a_rerun_from_the_patched_state():
    model = model_of()
    _, cache = model.run_with_cache(TOKENS)
    x = cache["blocks.0.attn.hook_x"]
    _, states, _ = layer_loop(model, cache, 0)
    edit = lambda S: 0.5 * S + 0.1  # noqa: E731
    _, carried_cache = patch_fast_weights(model, TOKENS, 0, 6, edit, mode="carry", return_cache=True)
    z = carried_cache["blocks.0.attn.hook_z"]
    y_rest, _, rec_rest = paper_loop(x[:, 7:], edit(states[:, 6]))
    assert torch.equal(z[:, :7], cache["blocks.0.attn.hook_z"][:, :7])
    assert rel_err(z[:, 7:], y_rest) < 1e-5
    assert rel_err(carried_cache["blocks.0.attn.hook_delta"][:, 7:], rec_rest["delta"]) < 1e-5


def test_generated_quantities_are_read_only_and_the_input_is_patchable():
    model = model_of()
    with pytest.raises(ValueError, match="hook_v is generated by the SRWM's own recurrence"):
        model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.0.attn.hook_v", lambda v, hook: v * 0)])
    with pytest.raises(ValueError, match="hook_beta_q is generated"):
        model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.attn.hook_beta_q", lambda b, hook: b.mul_(2))])
    flat = lambda x, hook: torch.full_like(x, 1 / x.shape[-1])  # noqa: E731
    with model.hooks(fwd_hooks=[("blocks.0.attn.hook_x", flat)]):
        _, cache = model.run_with_cache(TOKENS)
    assert torch.equal(cache["blocks.0.attn.hook_x"], torch.full_like(cache["blocks.0.attn.hook_x"], 0.25))
    y, _, _ = layer_loop(model, cache, 0)
    assert rel_err(cache["blocks.0.attn.hook_z"], y) < 1e-5


def test_effective_attention_is_a_clear_error_and_write_attention_is_exact():
    model = model_of()
    with pytest.raises(NotDefinedForMixer, match="not defined for the SRWM.*write_attention"):
        effective_attention(model, TOKENS, 0)
    attn = model.mixer(1)
    _, cache = model.run_with_cache(TOKENS)
    get = lambda n: cache[f"blocks.1.attn.{n}"]  # noqa: E731
    A, base = attn.write_attention(get)
    z = torch.einsum("bhqk,bkhd->bqhd", A, get("hook_delta")[..., :4]) + base
    assert rel_err(z, get("hook_z")) < 1e-5


def test_the_recall_probe_says_why_it_does_not_apply():
    model = model_of()
    with pytest.raises(NotDefinedForMixer, match="associative-recall probe does not apply"):
        probe_associations(model, TOKENS, 0, [(1, 2), (4, 5)])


def test_kfac_sites_exist_and_collect():
    model = model_of()
    sites = linear_sites(model, layers=[0])
    mine = {s.param for s in sites if ".attn." in s.param}
    assert mine == {"blocks.0.attn.W_in", "blocks.0.attn.W_O"}
    assert all(s.input_hook in model.hook_dict and s.output_hook in model.hook_dict for s in sites)
    factors = collect_kfac(model, [TOKENS], KFACConfig(sites=("blocks.0.attn.W_in", "blocks.0.attn.W_O")),
                           progress=False)
    assert set(factors) == {"blocks.0.attn.W_in", "blocks.0.attn.W_O"}


def test_checkpoint_round_trip_and_config(tmp_path):
    model = model_of(mixer={"kind": "srwm", "beta_init": 0.5, "input_softmax": False})
    save(model, tmp_path)
    assert '"kind": "srwm"' in (tmp_path / "config.json").read_text()
    again = load(tmp_path)
    assert again.cfg == model.cfg and torch.equal(again(TOKENS), model(TOKENS))
    assert ModelConfig.from_json(model.cfg.to_json()) == model.cfg
    W0 = model.mixer(0).W_0.detach()
    assert abs(float(W0[..., -4:].mean()) - 0.5) < 0.3 and abs(float(W0[..., :-4].mean())) < 0.2


def test_the_authors_layer_splits_the_residual_into_heads():
    model = model_of(mixer={"kind": "srwm", "input_proj": False}, d_model=8)  # 2 heads × 4 = d_model
    assert not hasattr(model.mixer(0), "W_in")
    _, cache = model.run_with_cache(TOKENS)
    x_in = cache["blocks.0.ln1.hook_normalized"]
    assert torch.equal(cache["blocks.0.attn.hook_x_pre"], x_in.view(2, 13, 2, 4))
    assert {s.param for s in linear_sites(model, layers=[0]) if ".attn." in s.param} == {"blocks.0.attn.W_O"}
    with pytest.raises(ValueError, match="input_proj=False.*d_model = n_heads·d_head.*set input_proj=True"):
        ModelConfig(d_vocab=11, d_model=16, n_heads=2, d_head=4, mixer={"kind": "srwm", "input_proj": False})
    with pytest.raises(ValueError, match="SRWMConfig.beta_init must be a finite number"):
        SRWMConfig(beta_init=float("nan")).check(None)


# ---------------------------------------------------------------------- stateful: carried segments
def test_two_carried_segments_equal_one_long_sequence():
    model = model_of(positional="none", mixer=["srwm", "srwm"])
    long_logits, long_cache = model.run_with_cache(TOKENS)
    fresh = model(TOKENS[:, 6:])  # the second segment from the slow weights W_0
    first, shifts = run_segment(model, TOKENS[:, :6])
    second, shifts2 = run_segment(model, TOKENS[:, 6:], shifts)
    assert set(shifts) == {0, 1} and shifts[0].shape == (2, 2, 4, 16)
    assert rel_err(torch.cat([first, second], 1), long_logits) < 1e-5
    for i in range(2):
        final = long_cache[f"blocks.{i}.attn.hook_final_state"]
        assert rel_err(shifts2[i] + model.mixer(i).W_0, final) < 1e-5
    # every analysis inside carried() starts from the carried state
    with carried(model, shifts):
        W = fast_weights(model, TOKENS[:, 6:], 1, [0, 3])
    assert rel_err(W, fast_weights(model, TOKENS, 1, [6, 9])) < 1e-5
    # the start is gone after the context
    assert torch.equal(model(TOKENS[:, 6:]), fresh) and rel_err(fresh, second) > 1e-3
    assert all(model.mixer(i).start_shift is None for i in range(2))


def test_carried_segments_pass_gradients_to_the_slow_weights_and_validate():
    model = model_of(positional="none")
    _, shifts = run_segment(model, TOKENS[:, :5])
    assert not shifts[0].requires_grad  # detached, as the authors' truncated back-propagation
    loss = run_segment(model, TOKENS[:, 5:], shifts, return_type="loss")[0]
    loss.backward()
    assert model.mixer(0).W_0.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="batch must match"):
        run_segment(model, TOKENS[:1, 5:], shifts)
    hybrid = model_of(mixer=["delta", "srwm"])
    with pytest.raises(ValueError, match=r"layers \[0\] are not SRWM layers; the SRWM layers of this model are \[1\]"):
        with carried(hybrid, {0: shifts[0]}):
            pass
    with pytest.raises(ValueError, match="no SRWM layer"):
        run_segment(model_of(mixer="delta"), TOKENS)


def test_head_outputs_and_an_association_edit():
    from workbench.analysis import edit_association

    model = model_of()
    logits, cache = model.run_with_cache(TOKENS)
    attn = model.mixer(0)
    per_head = attn.head_outputs(cache["blocks.0.attn.hook_z"], cache["blocks.0.ln1.hook_normalized"])
    assert rel_err(per_head.sum(-2), cache["blocks.0.hook_attn_out"]) < 1e-5
    g = torch.Generator().manual_seed(1)
    key, value = torch.softmax(torch.randn(2, 4, generator=g), -1), torch.randn(2, 16, generator=g)
    edited = edit_association(model, TOKENS, 0, 4, key, value)
    assert torch.equal(edited[:, :5], logits[:, :5]) and not torch.allclose(edited[:, 5:], logits[:, 5:])


def test_outlier_and_state_statistics_run_on_an_srwm_model():
    from workbench.analysis.outliers import outlier_table, state_statistics, trace_outliers

    model = model_of()
    stats = trace_outliers(model, [TOKENS], progress=False)  # default sites, hook_v 3·d_head + 4 wide per head
    assert stats["blocks.0.attn.hook_v"].width == 2 * 16 and set(outlier_table(stats).layer) == {0, 1}
    states = state_statistics(model, [TOKENS], positions=[2, 8], progress=False)
    assert set(states.layer) == {0, 1} and states.frobenius.gt(0).all()
    from workbench.analysis.outliers import decompose_residual

    _, cache = model.run_with_cache(TOKENS)
    df = decompose_residual(model, TOKENS, neuron=3, layer=1)  # the SRWM's output projection has no bias
    total = df.groupby(["batch", "pos"]).value.sum().to_numpy().reshape(2, 13)
    assert rel_err(torch.tensor(total), cache["blocks.1.hook_resid_post"][..., 3]) < 1e-5


def test_the_apps_head_scores_leave_an_srwm_layer_nan():
    from workbench.app_support.attention_maps import head_score_table

    df = head_score_table(model_of(mixer=["delta", "srwm"]), TOKENS[0])
    assert df[df.layer == 1].induction.isna().all() and df[df.layer == 0].induction.notna().all()
