"""Path knockout inside the recurrence (workbench.analysis.knockout) against independent computations:
knocking out every source at every target equals zeroing the head's (or the layer's) mixer output, or, for any
fast-weight memory, reading the memory as it was before the first write at every position (a readout state
patch); knocking out nothing changes nothing; on mixers linear in their values the effective-attention route
equals the re-run route; the grid equals one knockout per cell."""

from __future__ import annotations

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.knockout import final_token_logprob, knock_out, knocked_readout, knockout_effects
from workbench.mixers import NotDefinedForMixer, names
from workbench.mixers.knockout import knocked_out

TOKENS = torch.randint(0, 23, (2, 7), generator=torch.Generator().manual_seed(1))
LINEAR_IN_VALUES = [dict(mixer="linear"), dict(mixer="linear", feature_map="elu1", sum_norm=True), dict(mixer="delta"),
                    dict(mixer="gated_delta"), dict(mixer="kda"), dict(mixer="gla"), dict(mixer="mamba2")]


def make(**kw) -> HookedFastWeightLM:
    torch.manual_seed(0)
    base = dict(d_vocab=23, d_model=16, n_layers=2, n_heads=2, d_head=4, d_mlp=24, n_ctx=64, chunk_size=4,
                init_std=0.3)
    return HookedFastWeightLM(ModelConfig.from_dict({**base, **kw})).double().eval()


def close(a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> bool:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max()) <= tol * max(1.0, float(b.abs().max()))


def without_head_contribution(model, tokens, layer: int, heads: list[int]) -> torch.Tensor:
    """Logits with the heads' contributions Σ head_outputs(z, x)[h] subtracted from the mixer output."""
    _, cache = model.run_with_cache(tokens)
    attn = model.mixer(layer)
    per_head = attn.head_outputs(cache[f"blocks.{layer}.attn.hook_z"], cache[f"blocks.{layer}.ln1.hook_normalized"])

    def hook(out, hook):
        return out - per_head[:, :, heads].sum(2).to(out.dtype)

    return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.hook_attn_out", hook)])


@pytest.mark.parametrize("mixer", names())
def test_knocking_out_nothing_changes_nothing(mixer):
    model = make(mixer=mixer)
    clean = model(TOKENS)
    assert torch.equal(knock_out(model, TOKENS, 1, 0, sources=[], targets=None), clean)
    assert torch.equal(knock_out(model, TOKENS, 1, 0, sources=None, targets=[]), clean)
    assert knockout_effects(model, TOKENS, 1, 0, sources=[]).empty
    # a knockout of sources after every target is a no-op too (causality), and the model is left as it was
    assert close(knock_out(model, TOKENS, 1, 1, sources=[6], targets=[0, 3, 5]), clean, 1e-12)
    assert all(model.mixer(i).state_request is None for i in model.mixer_layers)


@pytest.mark.parametrize("mixer", names())
def test_knocking_out_every_source_at_every_target_zeroes_the_heads_read_out(mixer):
    model = make(mixer=mixer)
    attn = model.mixer(1)
    memory_starts_empty = not attn.has_fast_weights or not model.initial_fast_weights(TOKENS, 1).abs().max() > 0
    z = model.layer_cache(TOKENS, 1, ["hook_z"])("hook_z")
    x = torch.randn(1, 1, model.cfg.d_model, dtype=torch.float64)
    empty_read_is_zero = float(attn.head_outputs(torch.zeros_like(z[:1, :1]), x).detach().abs().max()) == 0
    if memory_starts_empty and empty_read_is_zero:  # the head's whole output is its memory's read-out
        got = knock_out(model, TOKENS, 1, 1, sources=None, targets=None)
        assert close(got, without_head_contribution(model, TOKENS, 1, [1]))
        got = knock_out(model, TOKENS, 1, None, sources=None, targets=None)  # every head: the layer's mixer output
        assert close(got, without_head_contribution(model, TOKENS, 1, [0, 1]))
        if not attn.adds_beside_heads:
            bias = attn.output_bias()
            zeroed = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.hook_attn_out", lambda out, hook: (
                torch.zeros_like(out) if bias is None else bias.expand_as(out).clone()))])
            assert close(got, zeroed)
    if attn.has_fast_weights:  # any memory: every read sees the memory as it was before the first write
        start = model.initial_fast_weights(TOKENS, 1)

        def read_start(states, hook):  # [batch, pos, head, d_k, d_v]
            out = states.clone()
            out[:, :, 1] = start[:, None, 1].to(out.dtype)
            return out

        with model.expose_states(list(range(TOKENS.shape[1])), mode="readout", layers=[1]):
            expected = model.run_with_hooks(TOKENS, fwd_hooks=[("blocks.1.attn.hook_state", read_start)])
        assert close(knock_out(model, TOKENS, 1, 1, sources=None, targets=None, route="rerun"), expected)


@pytest.mark.parametrize("kw", LINEAR_IN_VALUES, ids=lambda kw: "_".join(map(str, kw.values())))
def test_the_effective_attention_route_equals_the_rerun_route_where_the_output_is_linear_in_the_values(kw):
    model = make(**kw)
    for head, sources, targets in ((0, [2], [2, 5, 6]), (1, [0, 3, 4], [4, 6]), (1, None, [6])):
        a = knocked_readout(model, TOKENS, 0, head, sources, route="attention")
        b = knocked_readout(model, TOKENS, 0, head, sources, route="rerun")
        assert close(a, b), (head, sources)
        assert close(knock_out(model, TOKENS, 0, head, sources, targets, route="attention"),
                     knock_out(model, TOKENS, 0, head, sources, targets, route="rerun"))
    assert not close(a, model.layer_cache(TOKENS, 0, ["hook_z"])("hook_z"))  # it did knock something out


@pytest.mark.parametrize("mixer", ["delta", "rec_delta", "srwm", "softmax"])
def test_the_grid_equals_one_knockout_per_cell(mixer):
    model = make(mixer=mixer)
    metric = final_token_logprob(torch.tensor([3, 5]))
    df = knockout_effects(model, TOKENS, 1, 1, metric=metric, sources=[1, 4, 6], targets=[4, 6])
    assert list(zip(df.source, df.target)) == [(1, 4), (1, 6), (4, 4), (4, 6), (6, 6)]  # targets before a source: none
    clean = metric(model(TOKENS)).detach()
    for row in df.itertuples():
        one = (metric(knock_out(model, TOKENS, 1, 1, [row.source], [row.target])) - clean).detach()
        assert abs(row.effect - float(one.mean())) <= 1e-9
        assert abs(row.effect_sem - float(one.std() / 2 ** 0.5)) <= 1e-9
    assert df.effect.abs().max() > 0
    assert set(df.route) == {"attention" if mixer in ("delta", "softmax") else "rerun"}


def test_clear_errors():
    soft, rec = make(mixer="softmax"), make(mixer="rec_delta")
    with pytest.raises(NotDefinedForMixer, match="no fast-weight memory to re-run"):
        knock_out(soft, TOKENS, 0, 0, [1], [2], route="rerun")
    with pytest.raises(NotDefinedForMixer, match="not linear"):
        knock_out(rec, TOKENS, 0, 0, [1], [2], route="attention")
    with pytest.raises(ValueError, match="route must be one of"):
        knock_out(rec, TOKENS, 0, 0, [1], [2], route="zero")
    with pytest.raises(ValueError, match="head must be an int in \\[0, 1\\]"):
        knock_out(rec, TOKENS, 0, 2, [1], [2])
    with pytest.raises(ValueError, match="outside the sequence"):
        knock_out(rec, TOKENS, 0, 0, [7], [2])
    with pytest.raises(ValueError, match="one number per sequence"):
        knockout_effects(rec, TOKENS, 0, 0, metric=lambda logits: logits.sum(), sources=[1], targets=[2])
    with pytest.raises(RuntimeError, match="inside expose_states"):
        with rec.expose_states([1], layers=[0]), knocked_out(rec.mixer(0), [1], 0):
            pass
    assert rec.mixer(0).state_request is None


@pytest.mark.integration  # builds a transformers model, saves it and opens it (seconds)
def test_knockout_on_an_imported_checkpoint(tmp_path):
    from foreign_models import opened_tiny_qwen3_5

    model = opened_tiny_qwen3_5(tmp_path)
    tokens = torch.randint(0, 64, (1, 12), generator=torch.Generator().manual_seed(3))
    layer = model.fast_weight_layers[0]
    a = knocked_readout(model, tokens, layer, 2, [1, 5], route="attention")
    b = knocked_readout(model, tokens, layer, 2, [1, 5], route="rerun")
    assert close(a, b, 1e-4)
    df = knockout_effects(model, tokens, layer, 2, sources=[0, 5], targets=[5, 11])
    assert len(df) == 4 and df.effect.abs().max() > 0
    soft = [i for i in model.mixer_layers if i not in model.fast_weight_layers][0]
    assert knockout_effects(model, tokens, soft, 0, sources=[2], targets=[11]).route.tolist() == ["attention"]


def test_the_heatmap_puts_sources_across_and_targets_down_and_leaves_no_path_blank():
    import pandas as pd

    from workbench.plots import knockout_heatmap

    df = pd.DataFrame(dict(layer=1, head=0, route="rerun", source=[0, 0, 2], target=[1, 2, 2], effect=[-0.5, 0.25, 1.0]))
    fig = knockout_heatmap(df, labels=["a", "b", "c"])
    trace = fig.data[0]
    assert list(trace.x) == ["0: a", "2: c"] and list(trace.y) == ["1: b", "2: c"]
    assert [list(row) for row in trace.z] == [[-0.5, None], [0.25, 1.0]]  # target 1 < source 2: no path, blank
    assert trace.zmid == 0 and trace.zmax == 1.0 and "layer 1, head 0, route rerun" in fig.layout.title.text
    with pytest.raises(ValueError, match="lacks columns"):
        knockout_heatmap(pd.DataFrame(dict(source=[0])))
