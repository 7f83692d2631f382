"""The fast weights of a model we did not write: the q, k, v, β, g entering a transformers Qwen3-Next
Gated DeltaNet layer (captured through nnsight) reproduce, through our kernel, the layer's core attention
output and its recurrent state (the cache) at the end and at any prefix; the spectra are those states'."""

from __future__ import annotations

import pytest
import torch

from foreign_models import tiny_gpt2, tiny_olmo_hybrid, tiny_qwen3_5, tiny_qwen3_next
from helpers import rel_err
from workbench.analysis.foreign import (capture_gated_delta, fast_weights_at, gated_delta_modules, recompute,
                                        rule_inputs, state_statistics)

transformers = pytest.importorskip("transformers")
nnsight = pytest.importorskip("nnsight")

IDS = torch.randint(0, 64, (2, 37), generator=torch.Generator().manual_seed(0))  # 37: not a multiple of any chunk


def core_attention_outputs(model, ids):
    """Each Gated DeltaNet layer's core attention output (the input of its gated norm, before the output gate,
    norm and projection) and its final recurrent state from the cache, by a plain forward with torch hooks."""
    seen = {}
    handles = []
    for path in gated_delta_modules(model):
        layer = model.get_submodule(path)
        norm = layer.norm if hasattr(layer, "norm") else layer.o_norm  # Qwen3-Next, Qwen3.5 / OLMo-hybrid
        handles.append(norm.register_forward_pre_hook(lambda m, a, path=path: seen.__setitem__(path, a[0])))
    try:
        with torch.no_grad():
            cache = model(ids, use_cache=True).past_key_values
    finally:
        for h in handles:
            h.remove()
    b, t = ids.shape
    return {path: (o.reshape(b, t, -1, o.shape[-1]), cache.get_recurrent_state(int(path.split(".")[2])))
            for path, o in seen.items()}


def model_states_at(model, ids, t: int) -> dict[str, torch.Tensor]:
    """The model's own recurrent state after position t: its cache after running the prefix ids[:, :t+1]."""
    with torch.no_grad():
        cache = model(ids[:, : t + 1], use_cache=True).past_key_values
    return {path: cache.get_recurrent_state(int(path.split(".")[2])) for path in gated_delta_modules(model)}


def test_recomputed_output_and_final_state_equal_qwen3_next():
    model = tiny_qwen3_next()
    caps = capture_gated_delta(model, IDS)
    assert list(caps) == ["model.layers.0.linear_attn", "model.layers.1.linear_attn"]
    reference = core_attention_outputs(model, IDS)
    for path, cap in caps.items():
        assert cap.q.shape == cap.k.shape == (2, 37, 4, 8) and cap.beta.shape == cap.g.shape == (2, 37, 4)
        out, state = reference[path]
        assert rel_err(cap.output, out) == 0  # the captured rule output is what the gated norm reads
        for chunk_size, backend in ((16, "chunk"), (64, "chunk"), (5, "reference")):
            ours = recompute(cap, chunk_size=chunk_size, backend=backend)
            assert rel_err(ours.output, out) <= 1e-5, (path, chunk_size, backend)
            assert rel_err(ours.final_state, state) <= 1e-5, (path, chunk_size, backend)
            assert rel_err(ours.final_state, cap.final_state) <= 1e-5
        assert ours.chunk_states.shape == (2, 8, 4, 8, 8)


@pytest.mark.parametrize("build", [tiny_qwen3_5, tiny_olmo_hybrid], ids=["qwen3_5", "olmo_hybrid"])
def test_other_models_calling_the_same_rule(build):
    if not hasattr(transformers, "OlmoHybridConfig") or not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers version lacks Qwen3.5 or OLMo-hybrid")
    model = build()
    caps = capture_gated_delta(nnsight.NNsight(model), IDS)  # an nnsight wrapper is accepted as well
    reference = core_attention_outputs(model, IDS)
    assert list(caps) == list(reference) == ["model.layers.0.linear_attn"]
    for path, cap in caps.items():
        ours = recompute(cap, chunk_size=16)
        assert rel_err(ours.output, reference[path][0]) <= 1e-5
        assert rel_err(ours.final_state, reference[path][1]) <= 1e-5


def test_states_at_any_position_equal_the_models_state_after_that_prefix():
    model = tiny_qwen3_next()
    caps = capture_gated_delta(model, IDS)
    positions = [0, 15, 16, 22, 36]
    ours = {path: fast_weights_at(cap, positions, chunk_size=16) for path, cap in caps.items()}
    for i, t in enumerate(positions):
        theirs = model_states_at(model, IDS, t)
        for path in caps:
            assert rel_err(ours[path][:, i], theirs[path]) <= 1e-5, (path, t)
    # the chunk-boundary snapshots: entry c is the state before position 16·c, i.e. after 16·c − 1
    cap = caps["model.layers.1.linear_attn"]
    starts = recompute(cap, chunk_size=16).chunk_states
    assert starts[:, 0].abs().max() == 0
    assert rel_err(starts[:, 1], fast_weights_at(cap, 15, chunk_size=16)[:, 0]) <= 1e-6
    assert rel_err(starts[:, 2], model_states_at(model, IDS, 31)["model.layers.1.linear_attn"]) <= 1e-5


def test_state_statistics_are_the_spectra_of_the_models_states():
    model = tiny_qwen3_next()
    batches = [IDS, torch.randint(0, 64, (2, 37), generator=torch.Generator().manual_seed(1))]
    df = state_statistics(model, batches, positions=[5, -1], n_singular=3, chunk_size=16, progress=False)
    assert list(df.columns) == ["module", "layer", "head", "pos", "frobenius", "sigma_1", "sigma_2", "sigma_3",
                                "effective_rank", "n_sequences"]
    assert len(df) == 2 * 2 * 4 and set(df.pos) == {5, 36} and (df.n_sequences == 4).all()
    for t in (5, 36):
        S = [model_states_at(model, ids, t) for ids in batches]
        for path in gated_delta_modules(model):
            W = torch.cat([s[path] for s in S]).double()  # [sequences, head, d_k, d_v]
            sigma = torch.linalg.svdvals(W)
            p = sigma / sigma.sum(-1, keepdim=True)
            erank = (-(p * p.log()).sum(-1)).exp().mean(0)
            rows = df[(df.module == path) & (df.pos == t)].sort_values("head")
            torch.testing.assert_close(torch.tensor(rows.frobenius.to_numpy()), W.pow(2).sum((-2, -1)).sqrt().mean(0),
                                       rtol=1e-5, atol=0)
            torch.testing.assert_close(torch.tensor(rows[["sigma_1", "sigma_2", "sigma_3"]].to_numpy()),
                                       sigma[..., :3].mean(0), rtol=1e-5, atol=1e-7)
            torch.testing.assert_close(torch.tensor(rows.effective_rank.to_numpy()), erank, rtol=1e-4, atol=0)
    assert (df.effective_rank <= 8).all() and (df.effective_rank > 1).all()


def test_rule_inputs_normalise_scale_and_share_key_heads():
    g = torch.Generator().manual_seed(3)
    q, k = torch.randn(1, 6, 2, 8, generator=g) * 3, torch.randn(1, 6, 2, 8, generator=g) * 3
    v, beta, decay = torch.randn(1, 6, 4, 5, generator=g), torch.rand(1, 6, 4, generator=g), -torch.rand(1, 6, 4)
    out = rule_inputs((q, k, v), {"g": decay, "beta": beta, "use_qk_l2norm_in_kernel": True})
    assert out["q"].shape == out["k"].shape == (1, 6, 4, 8)
    torch.testing.assert_close(out["k"].norm(dim=-1), torch.ones(1, 6, 4), rtol=1e-6, atol=0)
    torch.testing.assert_close(out["q"].norm(dim=-1), torch.full((1, 6, 4), 8 ** -0.5), rtol=1e-6, atol=0)
    assert torch.equal(out["k"][:, :, 0], out["k"][:, :, 1]) and torch.equal(out["k"][:, :, 2], out["k"][:, :, 3])
    assert torch.equal(out["g"], decay) and torch.equal(out["beta"], beta) and torch.equal(out["v"], v)
    raw = rule_inputs((q, k, v, decay, beta), {})  # positional, no l2 norm: only the d_k^-½ scale
    torch.testing.assert_close(raw["q"][:, :, 3], q[:, :, 1] * 8 ** -0.5)
    with pytest.raises(ValueError, match="cached recurrent state"):
        rule_inputs((q, k, v), {"g": decay, "beta": beta, "initial_state": torch.zeros(1, 4, 8, 5)})
    with pytest.raises(ValueError, match="lacks"):
        rule_inputs((q, k, v), {"g": decay})


def test_models_without_the_rule_are_refused():
    with pytest.raises(ValueError, match="no Gated DeltaNet layer"):
        capture_gated_delta(tiny_gpt2(n_layer=1), IDS[:, :8])
    model = tiny_qwen3_next()
    with pytest.raises(ValueError, match="does not call torch_chunk_gated_delta_rule"):
        capture_gated_delta(model, IDS, modules=["model.layers.2.self_attn"])
    with pytest.raises(ValueError, match="no module"):
        capture_gated_delta(model, IDS, modules=["model.layers.7.linear_attn"])
    with pytest.raises(ValueError, match="outside the sequence"):
        fast_weights_at(capture_gated_delta(model, IDS[:, :4])["model.layers.0.linear_attn"], 4)


def test_the_docs_example_runs():
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "foreign_models.md").read_text()
    (block,) = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    scope = {"__name__": "__docs__"}
    exec(compile(block, "docs/foreign_models.md", "exec"), scope)
    assert scope["S"].shape == (2, 3, 4, 8, 8) and len(scope["table"]) == 2 * 4 * 6
    assert rel_err(scope["rec"].output, scope["cap"].output) <= 1e-5
