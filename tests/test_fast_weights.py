"""Fast weights as objects: read W_t, patch it (readout / carry), edit it, exact effective attention.

Every check compares against an explicit loop over positions written here from the formulas, or
against hook_z, never against the code path under test."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import torch

from helpers import rel_err
from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import edit_association, effective_attention, fast_weights, patch_fast_weights, rank_one_edit

TOKENS = torch.randint(0, 29, (2, 45), generator=torch.Generator().manual_seed(2))
FAST = [dict(mixer="delta"), dict(mixer="gated_delta"), dict(mixer="linear", feature_map="elu1", sum_norm=True),
        dict(mixer="linear", feature_map="dpfp", dpfp_nu=2)]
IDS = ["delta", "gated_delta", "linear_sumnorm", "linear_dpfp"]


def make(**kw) -> HookedFastWeightLM:
    base = dict(d_vocab=29, d_model=32, n_heads=2, d_head=8, d_mlp=48, chunk_size=16, init_std=0.3)
    return HookedFastWeightLM(ModelConfig.from_dict(dict(**{**base, **kw})))


def loop_states(model, cache, layer, initial=None, start=0):
    """All states W_t (after the write at t), by the textbook recurrence, in float64: [batch, pos, head, dk, dv]."""
    a = f"blocks.{layer}.attn."
    attn = model.blocks[layer].attn
    q = cache[a + "hook_q"].double() * attn.scale
    k, v = cache[a + "hook_k"].double(), cache[a + "hook_v"].double()
    delta = model.cfg.mixer.kind in ("delta", "gated_delta")
    if not delta and model.cfg.mixer.sum_norm:
        v = torch.cat([v, torch.ones_like(v[..., :1])], -1)
    b, t, h, dk = k.shape
    S = torch.zeros(b, h, dk, v.shape[-1], dtype=torch.float64) if initial is None else initial.double()
    states = []
    for i in range(start, t):
        if delta:
            if a + "hook_log_decay" in cache:
                S = S * cache[a + "hook_log_decay"][:, i].double().exp()[..., None, None]
            beta = cache[a + "hook_beta"][:, i].double()
            u = beta[..., None] * (v[:, i] - torch.einsum("bhkv,bhk->bhv", S, k[:, i]))
            S = S + torch.einsum("bhk,bhv->bhkv", k[:, i], u)
        else:
            S = S + torch.einsum("bhk,bhv->bhkv", k[:, i], v[:, i])
        states.append(S)
    return torch.stack(states, 1), q


def read(q, S, normalize):
    o = torch.einsum("bhk,bhkv->bhv", q.double(), S.double())
    return o[..., :-1] / (o[..., -1:] + 1e-6) if normalize else o


@pytest.mark.parametrize("kw", FAST, ids=IDS)
def test_fast_weights_equal_the_textbook_recurrence(kw):
    model = make(**kw)
    _, cache = model.run_with_cache(TOKENS)
    positions = [0, 15, 16, 31, 44, -3]
    for layer in (0, 1):
        W = fast_weights(model, TOKENS, layer, positions)
        want, _ = loop_states(model, cache, layer)
        assert W.shape == (2, len(positions), 2, model.blocks[1].attn.d_k, want.shape[-1])
        assert rel_err(W, want[:, [p % 45 for p in positions]]) < 1e-5
    assert torch.equal(model.fast_weights(TOKENS, 1, 7), fast_weights(model, TOKENS, 1, [7]))


@pytest.mark.parametrize("kw", FAST, ids=IDS)
@pytest.mark.parametrize("kernel_from", [16, 1])
def test_fast_weights_alone_in_their_chunk_come_from_the_kernel_and_equal_the_textbook_recurrence(kw, kernel_from,
                                                                                                   monkeypatch):
    """A chunk holding one requested position is advanced by one run of the model's backend from its snapshot
    (workbench/mixers/state.py, from _KERNEL_FROM steps on; 1 forces that path for every single position)."""
    monkeypatch.setattr("workbench.mixers.state._KERNEL_FROM", kernel_from)
    model = make(chunk_size=32, **kw)
    _, cache = model.run_with_cache(TOKENS)
    positions = [17, 44, 33]  # 17 alone in chunk 0 (18 steps); 33 and 44 share chunk 1 (the reference loop)
    for layer in (0, 1):
        W = fast_weights(model, TOKENS, layer, positions)
        want, _ = loop_states(model, cache, layer)
        assert rel_err(W, want[:, positions]) < 1e-5
    single = fast_weights(model, TOKENS, 1, [40])  # alone in chunk 1, 9 steps: the kernel only when forced
    assert rel_err(single, loop_states(model, cache, 1)[0][:, [40]]) < 1e-5


def test_fast_weights_reject_bad_requests():
    model = make(mixer="delta")
    with pytest.raises(ValueError, match="outside the sequence"):
        fast_weights(model, TOKENS, 0, [45])
    with pytest.raises(ValueError, match="layer must be"):
        fast_weights(model, TOKENS, 2, [0])
    with pytest.raises(ValueError, match="empty"):
        fast_weights(model, TOKENS, 0, [])
    with pytest.raises(ValueError, match="softmax attention"):
        fast_weights(make(mixer="softmax"), TOKENS, 0, [0])


@pytest.mark.parametrize("kw", FAST, ids=IDS)
def test_hook_state_is_cached_only_when_exposed(kw):
    model = make(**kw)
    logits, cache = model.run_with_cache(TOKENS)
    assert not any("hook_state" in n for n in cache.keys())
    with model.expose_states([3, 40]):
        logits2, cache2 = model.run_with_cache(TOKENS)
    assert torch.equal(logits, logits2)
    want, _ = loop_states(model, cache, 0)
    assert rel_err(cache2["blocks.0.attn.hook_state"], want[:, [3, 40]]) < 1e-5
    assert all(attn.state_request is None for attn in (b.attn for b in model.blocks))


@pytest.mark.parametrize("kw", FAST, ids=IDS)
def test_readout_patch_changes_only_that_position(kw):
    model = make(**kw)
    _, clean = model.run_with_cache(TOKENS)
    p = 20
    new_state = torch.randn(2, 2, model.blocks[1].attn.d_k, clean["blocks.1.attn.hook_v"].shape[-1]
                            + int(kw.get("sum_norm", False))).abs()
    _, cache = patch_fast_weights(model, TOKENS, 1, p, new_state, mode="readout", return_cache=True)
    z0, z1 = clean["blocks.1.attn.hook_z"], cache["blocks.1.attn.hook_z"]
    same = (z0 - z1).abs().amax(dim=(0, 2, 3)) == 0
    assert same[:p].all() and same[p + 1:].all() and not same[p]
    q = cache["blocks.1.attn.hook_q"][:, p] * model.blocks[1].attn.scale
    assert rel_err(z1[:, p], read(q, new_state, kw.get("sum_norm", False))) < 1e-5


@pytest.mark.parametrize("kw", FAST, ids=IDS)
def test_carry_patch_equals_the_recurrence_run_from_the_edited_state(kw):
    model = make(**kw)
    p = 17
    edit = lambda S: S * 0.5 + 0.1  # noqa: E731
    _, cache = patch_fast_weights(model, TOKENS, 1, p, edit, mode="carry", return_cache=True)
    _, clean = model.run_with_cache(TOKENS)
    states, q = loop_states(model, clean, 1)
    edited = edit(states[:, p])
    later, _ = loop_states(model, cache, 1, initial=edited, start=p + 1)  # same layer inputs: layer 1 reads layer 0
    norm = kw.get("sum_norm", False)
    want = torch.stack([read(q[:, t], later[:, t - p - 1], norm) for t in range(p + 1, 45)], 1)
    z = cache["blocks.1.attn.hook_z"]
    assert rel_err(z[:, p + 1:], want) < 1e-5
    assert rel_err(z[:, p], read(q[:, p], edited, norm)) < 1e-5
    assert torch.equal(z[:, :p], clean["blocks.1.attn.hook_z"][:, :p])


def test_state_patch_errors():
    model = make(mixer="delta")
    with pytest.raises(ValueError, match="carry mode takes exactly one position"):
        with model.expose_states([1, 2], mode="carry"):
            pass
    with pytest.raises(ValueError, match="mode must be one of"):
        with model.expose_states([1], mode="sideways"):
            pass
    with pytest.raises(ValueError, match="must have shape"):
        patch_fast_weights(model, TOKENS, 0, 3, torch.zeros(3))
    assert all(b.attn.state_request is None for b in model.blocks)


def test_rank_one_edit_stores_the_association_and_spares_orthogonal_keys():
    S = torch.randn(4, 6)
    k = torch.randn(4)
    v = torch.randn(6)
    S2 = rank_one_edit(S, k, v)
    assert rel_err(S2.T @ k, v) < 1e-5
    ortho = torch.randn(4)
    ortho = ortho - (ortho @ k) / (k @ k) * k
    assert rel_err(S2.T @ ortho, S.T @ ortho) < 1e-5


def test_edit_association_makes_the_memory_return_the_new_value_and_leaves_the_model_alone():
    model = make(mixer="delta")
    before = {n: p.clone() for n, p in model.state_dict().items()}
    key = torch.nn.functional.normalize(torch.randn(8), dim=0)
    value = torch.randn(8)
    p = 30
    _, cache = edit_association(model, TOKENS, 1, p, key, value, head=1, return_cache=True)
    with model.expose_states([p], layers=[1]):
        pass
    # the edited state is what the run carried: rebuild it from the recurrence and check it returns value
    _, clean = model.run_with_cache(TOKENS)
    states, _ = loop_states(model, clean, 1)
    edited = states[:, p].clone()
    edited[:, 1] = rank_one_edit(edited[:, 1], key.double(), value.double())
    assert rel_err(torch.einsum("bkv,k->bv", edited[:, 1], key.double()), value.double().expand(2, 8)) < 1e-5
    later, _ = loop_states(model, cache, 1, initial=edited, start=p + 1)
    q = cache["blocks.1.attn.hook_q"].double() * model.blocks[1].attn.scale
    assert rel_err(cache["blocks.1.attn.hook_z"][:, p + 1], read(q[:, p + 1], later[:, 0], False)) < 1e-5
    assert all(torch.equal(before[n], p_) for n, p_ in model.state_dict().items())
    with pytest.raises(ValueError, match="key must have shape"):
        edit_association(model, TOKENS, 1, p, torch.randn(3), value, head=1)


@pytest.mark.parametrize("kw", FAST + [dict(mixer="softmax"), dict(mixer="linear", feature_map="favor")],
                         ids=IDS + ["softmax", "linear_favor"])
def test_effective_attention_reproduces_hook_z(kw):
    model = make(**kw, n_ctx=256)
    tokens = torch.randint(0, 29, (2, 203), generator=torch.Generator().manual_seed(5))
    _, cache = model.run_with_cache(tokens)
    for layer in (0, 1):
        A = effective_attention(model, tokens, layer)
        assert A.shape == (2, 2, 203, 203)
        assert (A.triu(1) == 0).all()
        z = torch.einsum("bhqk,bkhd->bqhd", A.double(), cache[f"blocks.{layer}.attn.hook_v"].double())
        assert rel_err(z, cache[f"blocks.{layer}.attn.hook_z"]) < 1e-5


def test_transformer_lens_heuristic_is_far_off_where_ours_is_exact():
    """TL 4.3 GatedDeltaNetBridge.compute_effective_attention drops the key-removal term."""
    gdn = pytest.importorskip("transformer_lens.model_bridge.generalized_components.gated_delta_net")
    model = make(mixer="gated_delta", n_ctx=256)
    tokens = torch.randint(0, 29, (2, 128), generator=torch.Generator().manual_seed(6))
    _, cache = model.run_with_cache(tokens)
    a = "blocks.1.attn."
    tl_cache = {  # TL reads hook_q/k/beta/log_decay under blocks.{i}.linear_attn
        "blocks.1.linear_attn.hook_q": cache[a + "hook_q"] * model.blocks[1].attn.scale,
        "blocks.1.linear_attn.hook_k": cache[a + "hook_k"],
        "blocks.1.linear_attn.hook_beta": cache[a + "hook_beta"],
        "blocks.1.linear_attn.hook_log_decay": cache[a + "hook_log_decay"],
    }
    tl = gdn.GatedDeltaNetBridge.compute_effective_attention(None, tl_cache, 1)
    v, z = cache[a + "hook_v"].double(), cache[a + "hook_z"]
    tl_err = rel_err(torch.einsum("bhqk,bkhd->bqhd", tl.double(), v), z)
    ours = rel_err(torch.einsum("bhqk,bkhd->bqhd", effective_attention(model, tokens, 1).double(), v), z)
    assert ours < 1e-5
    assert tl_err > 0.05, tl_err  # the documented O(1) gap of the heuristic


@pytest.mark.integration
def test_reading_states_at_8192_positions_does_not_allocate_the_trajectory():
    """2 layers, 4 heads of 64x64, T = 8192: the full trajectory would be 8192·4·64·64·4 B = 512 MiB."""
    script = textwrap.dedent("""
        import resource, torch
        from workbench import HookedFastWeightLM, ModelConfig
        cfg = ModelConfig(d_vocab=64, d_model=64, n_layers=2, n_heads=4, d_head=64, d_mlp=64, n_ctx=8192)
        model = HookedFastWeightLM(cfg).eval()
        tokens = torch.randint(0, 64, (1, 8192))
        with torch.no_grad():
            model(tokens)
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        W = model.fast_weights(tokens, 1, [5, 4000, 8191])
        grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base
        print(tuple(W.shape), grown // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    shape, grown_mib = out.stdout.split(")")
    assert shape.strip() == "(1, 3, 4, 64, 64"
    assert int(grown_mib) < 256, f"peak memory grew by {grown_mib} MiB"


@pytest.mark.parametrize("mixer", ["linear", "delta", "gated_delta", "rec_delta", "delta_rnn", "delta_lstm", "fwm", "srwm"])
def test_initial_fast_weights_are_the_state_before_the_first_write(mixer):
    """W_{-1}: zeros for a memory that starts empty, the slow weights W_0 for the self-referential matrix; the
    trajectory's ``before(0)`` is it, so the app's "write at pos 0" is W_0 − W_{-1}."""
    from workbench.app_support.trajectory import fast_weight_trajectory

    torch.manual_seed(0)
    model = HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24,
                                           n_ctx=64, chunk_size=4, init_std=0.3, mixer=mixer)).eval()
    tokens = torch.randint(0, 23, (2, 9), generator=torch.Generator().manual_seed(1))
    start = model.initial_fast_weights(tokens, 1)
    after = model.fast_weights(tokens, 1, [0])[:, 0]
    assert start.shape == after.shape and start.dtype == torch.float32
    W0 = getattr(model.blocks[1].attn, "W_0", None)
    expected = torch.zeros_like(start) if W0 is None else W0.detach().expand_as(start)
    assert torch.equal(start, expected)
    assert not torch.equal(after, start)  # the first write changed it
    traj = fast_weight_trajectory(model, tokens[:1], 1)
    assert torch.equal(traj.before(0), start[0]) and torch.equal(traj.before(3), traj.W[2])
    with pytest.raises(ValueError, match="fast weights|fast-weight"):
        HookedFastWeightLM(ModelConfig(d_vocab=23, d_model=16, n_layers=1, n_heads=2, d_head=8, mixer="softmax")
                           ).initial_fast_weights(tokens, 0)
