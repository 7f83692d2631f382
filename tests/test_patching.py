"""Activation and attribution patching (workbench.analysis.patching), against independent computations: a sweep
equals a hand-written loop of run_with_hooks calls; patching the last layer's residual at the metric's position
restores the source run exactly; attribution patching equals real patching on a model that is linear in every
swept site; a carry-mode state patch equals a hand-written expose_states hook; every mixer and an imported
checkpoint run it."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import (activation_patching, attribution_agreement, attribution_patching, head_breakdown,
                                logit_diff)
from workbench.analysis.patching import available_sites, site_hook
from workbench.mixers import names
from workbench.plots import attribution_scatter, head_effects_bar, patching_heatmap, patching_heatmaps

ANSWER, DISTRACTOR = 3, 4


def small(mixer="gated_delta", n_layers=2, **kw) -> HookedFastWeightLM:
    cfg = ModelConfig(d_vocab=11, d_model=16, n_layers=n_layers, n_heads=2, d_head=8, d_mlp=16, n_ctx=32,
                      chunk_size=4, mixer=mixer, **kw)
    return HookedFastWeightLM(cfg).eval()


def pair(n_pos=6, batch=2, changed=2, seed=0):
    clean = torch.randint(0, 11, (batch, n_pos), generator=torch.Generator().manual_seed(seed))
    corrupted = clean.clone()
    corrupted[:, changed] = (corrupted[:, changed] + 1) % 11
    return clean, corrupted


def metric_of(model, tokens, hooks=(), state=None):
    """The batch-mean logit difference of one run, hooks given by hand (state: (layer, position, mode))."""
    with torch.no_grad():
        if state is None:
            logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
        else:
            with model.expose_states([state[1]], mode=state[2], layers=[state[0]]):
                logits = model.run_with_hooks(tokens, fwd_hooks=list(hooks))
    return float((logits[:, -1, ANSWER] - logits[:, -1, DISTRACTOR]).double().mean())


def value(df, site, layer, position, head=None):
    rows = df[(df.site == site) & (df.layer == layer) & (df.position == position)]
    rows = rows[rows["head"].isna()] if head is None else rows[rows["head"] == head]
    assert len(rows) == 1, (site, layer, position, head)
    return rows.iloc[0]


# ---------------------------------------------------------------------- against a hand-written loop
@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_a_sweep_equals_a_hand_written_loop_of_run_with_hooks(direction):
    model = small().double()
    clean, corrupted = pair(n_pos=4)
    target, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    sites = ["resid_pre", "attn_out", "mlp_out", "z", "write", "beta", "decay", "state_readout", "state_carry"]
    df = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=sites, per_head=True,
                             direction=direction, progress=False)
    base, src = metric_of(model, target), metric_of(model, source)
    assert df.attrs["target_metric"] == pytest.approx(base, abs=1e-12)
    _, cache = model.run_with_cache(source)
    checked = 0
    for row in df.itertuples():
        layer, p, h = row.layer, row.position, None if pd.isna(row.head) else int(row.head)
        if row.site.startswith("state"):
            name = f"blocks.{layer}.attn.hook_state"
            want = model.fast_weights(source, layer, [p])[:, 0]  # [batch, head, d_k, d_v], read independently

            def hook(states, hook, want=want, h=h):
                new = states.clone()
                new[:, 0, h] = want[:, h].to(new)
                return new

            got = metric_of(model, target, [(name, hook)], (layer, p, row.site.split("_")[1]))
        else:
            name = site_hook(model, row.site, layer)
            clean_act = cache[name]

            def hook(act, hook, clean_act=clean_act, p=p, h=h):
                act = act.clone()
                if h is None:
                    act[:, p] = clean_act[:, p]
                else:
                    act[:, p, h] = clean_act[:, p, h]
                return act

            got = metric_of(model, target, [(name, hook)])
        # TransformerLens' sweep stores the effect in float32; model.fast_weights reads the hand loop's states in
        # float32 (hook_state holds them in the model's float64): rounding of that size and no more
        slack = 1e-6 * abs(base) if row.site.startswith("state") else 1e-9
        assert row.effect == pytest.approx(got - base, rel=1e-6, abs=slack), (row.site, layer, p, h)
        assert row.patched == pytest.approx(got, rel=1e-12, abs=slack + 1e-6 * abs(got - base))
        assert row.normalized == pytest.approx((got - base) / (src - base), rel=1e-6, abs=slack / abs(src - base))
        checked += 1
    assert checked == len(df) == 2 * 4 * (3 + 6 * 2)  # layers × positions × (3 whole sites + 6 per-head sites × 2 heads)
    assert df.effect.abs().max() > 1e-4  # the patches do something


@pytest.mark.parametrize("direction", ["denoising", "noising"])
def test_patching_the_last_layers_residual_restores_the_source_run_exactly(direction):
    model = small("delta").double()
    clean, corrupted = pair()
    df = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=["resid_post", "resid_mid"],
                             layers=[-1], direction=direction, progress=False)
    post = df[df.site == "resid_post"].set_index("position")
    assert post.loc[5, "normalized"] == pytest.approx(1.0, abs=1e-6)  # the metric reads position 5 only
    assert (post.loc[:4, "effect"].abs() < 1e-6).all()  # no later layer reads the earlier positions
    mid = df[df.site == "resid_mid"].set_index("position")
    assert mid.loc[5, "normalized"] == pytest.approx(1.0, abs=1e-6)  # only the MLP (position-wise) follows
    clean_m, corrupted_m = metric_of(model, clean), metric_of(model, corrupted)
    assert df.attrs["clean_metric"] == pytest.approx(clean_m) and df.attrs["corrupted_metric"] == pytest.approx(corrupted_m)


def test_a_carry_state_patch_equals_a_hand_written_expose_states_hook():
    model = small("delta").double()
    clean, corrupted = pair()
    df = head_breakdown(model, clean, corrupted, (ANSWER, DISTRACTOR), "state_carry", 0, 2)
    assert list(df["head"]) == [0, 1]
    for h in (0, 1):
        w_clean = model.fast_weights(clean, 0, [2])

        def hook(states, hook, h=h):
            return torch.cat([states[:, :, :h], w_clean[:, :, h:h + 1].to(states), states[:, :, h + 1:]], dim=2)

        want = metric_of(model, corrupted, [("blocks.0.attn.hook_state", hook)], (0, 2, "carry"))
        assert value(df, "state_carry", 0, 2, h).patched == pytest.approx(want, abs=1e-12)
    readout = head_breakdown(model, clean, corrupted, (ANSWER, DISTRACTOR), "state_readout", 0, 2)
    assert not torch.allclose(torch.tensor(readout.effect.to_numpy(float)), torch.tensor(df.effect.to_numpy(float)))


# ---------------------------------------------------------------------- attribution patching
def linear_model() -> HookedFastWeightLM:
    """Linear attention with the identity feature map, no norm, no MLP, one layer: the logits are linear in v, z, the
    mixer output, the residual after it and the fast weights (readout and carry) — not in resid_pre (q·k)."""
    return small({"kind": "linear", "feature_map": "identity", "sum_norm": False}, n_layers=1, norm="none",
                 mlp="none", init_std=0.5).double()


def test_attribution_patching_equals_real_patching_for_a_linear_metric_on_a_linear_model():
    model = linear_model()
    clean, corrupted = pair(changed=1)
    sites = ["v", "z", "attn_out", "resid_post", "state_readout", "state_carry"]
    for direction in ("denoising", "noising"):
        kw = dict(sites=sites, per_head=True, direction=direction, progress=False)
        real = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), **kw)
        estimate = attribution_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), **kw)
        assert len(real) == len(estimate) and real.effect.abs().max() > 1e-3
        err = (real.effect.to_numpy() - estimate.effect.to_numpy())
        assert abs(err).max() <= 1e-5 * real.effect.abs().max(), direction  # states are float32 in the recurrence
        agreement = attribution_agreement(real, estimate).set_index("site")
        assert agreement.loc["all", "pearson"] > 0.999999 and agreement.loc["all", "slope"] == pytest.approx(1, abs=1e-5)
    # the same comparison on resid_pre (through q·k) does not hold: the test can fail
    real = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=["resid_pre"], progress=False)
    estimate = attribution_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=["resid_pre"], progress=False)
    assert (real.effect - estimate.effect).abs().max() > 1e-3 * real.effect.abs().max()


def test_attribution_patching_leaves_the_models_gradients_alone():
    model = small()
    clean, corrupted = pair()
    attribution_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), positions=[2, 5], progress=False)
    assert all(p.grad is None for p in model.parameters())


# ---------------------------------------------------------------------- every mixer, an imported checkpoint
@pytest.mark.parametrize("kind", names())
def test_patching_runs_on_every_mixer(kind):
    model = small(kind, n_layers=1)
    clean, corrupted = pair(n_pos=4, batch=1)
    kw = dict(positions=[1, 3], progress=False)
    real = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), **kw)
    estimate = attribution_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), **kw)
    sites = set(available_sites(model, None)) & {"resid_pre", "attn_out", "mlp_out", "z", "state_readout",
                                                 "state_carry", "write", "beta", "decay"}
    assert set(real.site) == set(estimate.site) == sites
    roles = set(model.mixer(0).patch_sites())
    assert ({"state_readout", "state_carry"} <= sites) == ("state" in roles)
    assert {"write", "beta", "decay"} & sites == {"write", "beta", "decay"} & roles
    assert real.patched.notna().all() and estimate.effect.notna().all()
    assert len(real) == len(estimate) == len(sites) * 2  # sites × positions
    assert len(attribution_agreement(real, estimate)) == len(sites) + 1
    head_site = "state_carry" if "state" in roles else "z"
    cell = head_breakdown(model, clean, corrupted, (ANSWER, DISTRACTOR), head_site, 0, 1)
    assert list(cell["head"]) == [0, 1] and cell.patched.notna().all()


@pytest.mark.integration
def test_patching_runs_on_an_imported_checkpoint(tmp_path):
    from foreign_models import opened_tiny_qwen3_5

    model = opened_tiny_qwen3_5(tmp_path)
    clean = torch.randint(0, 64, (2, 8), generator=torch.Generator().manual_seed(0))
    corrupted = clean.clone()
    corrupted[:, 3] = (corrupted[:, 3] + 7) % 64
    kw = dict(sites=["resid_pre", "z", "state_carry", "write", "beta", "decay"], positions=[3, 7], progress=False)
    real = activation_patching(model, clean, corrupted, (5, 9), **kw)
    estimate = attribution_patching(model, clean, corrupted, (5, 9), **kw)
    layer = model.fast_weight_layers[0]
    assert set(real[real.layer == layer].site) == {"resid_pre", "z", "state_carry", "write", "beta", "decay"}
    assert real.patched.notna().all() and estimate.effect.notna().all()
    # at the changed position the layer's state carries the clean input's memory: it moves the metric
    assert value(real, "state_carry", layer, 3).effect != 0
    assert attribution_agreement(real, estimate).pearson.notna().any()


# ---------------------------------------------------------------------- errors and plots
def test_bad_input_is_a_clear_error():
    model = small("delta")
    clean, corrupted = pair()
    with pytest.raises(ValueError, match="same shape"):
        activation_patching(model, clean, corrupted[:, :4], (1, 2))
    with pytest.raises(ValueError, match="unknown patching site 'attn'"):
        activation_patching(model, clean, corrupted, (1, 2), sites=["attn"])
    with pytest.raises(ValueError, match="'decay' exists at none of layers"):
        activation_patching(model, clean, corrupted, (1, 2), sites=["decay"])
    with pytest.raises(ValueError, match="direction must be one of"):
        activation_patching(model, clean, corrupted, (1, 2), direction="both")
    with pytest.raises(ValueError, match="one value per sequence"):
        activation_patching(model, clean, corrupted, lambda logits: logits.sum(), sites=["z"], positions=[0])
    with pytest.raises(ValueError, match="answer token ids must be in"):
        activation_patching(model, clean, corrupted, (99, 2), sites=["z"], positions=[0])
    with pytest.raises(ValueError, match="metric must be a callable"):
        activation_patching(model, clean, corrupted, "logit diff")
    with pytest.raises(ValueError, match="has no head axis"):
        head_breakdown(model, clean, corrupted, (1, 2), "resid_pre", 0, 1)
    with pytest.raises(ValueError, match="outside the sequence"):
        activation_patching(model, clean, corrupted, (1, 2), positions=[6])
    with pytest.raises(ValueError, match="training mode; call model.eval"):
        attribution_patching(small("delta").train(), clean, corrupted, (1, 2))


def test_logit_diff_and_the_plots():
    logits = torch.arange(2 * 3 * 5, dtype=torch.float32).view(2, 3, 5)
    assert logit_diff(4, 1)(logits).tolist() == [3.0, 3.0]
    assert logit_diff([4, 0], [1, 1], position=0)(logits).tolist() == [3.0, -1.0]
    model = small("delta")
    clean, corrupted = pair()
    real = activation_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=["resid_pre", "state_carry"],
                               progress=False)
    estimate = attribution_patching(model, clean, corrupted, (ANSWER, DISTRACTOR), sites=["resid_pre", "state_carry"],
                                    progress=False)
    fig = patching_heatmap(real, "state_carry", position_labels=[str(t) for t in corrupted[0].tolist()])
    z = fig.data[0].z
    assert len(z) == 2 and len(z[0]) == 6 and fig.data[0].customdata[1][4].tolist() == [1, 4]
    assert z[1][4] == pytest.approx(value(real, "state_carry", 1, 4).normalized)
    assert len(patching_heatmaps(real).data) == 2
    scatter = attribution_scatter(real, estimate, agreement=attribution_agreement(real, estimate))
    assert len(scatter.data) == 3 and "r =" in scatter.layout.title.text
    cell = head_breakdown(model, clean, corrupted, (ANSWER, DISTRACTOR), "z", 1, 5)
    assert list(head_effects_bar(cell).data[0].x) == ["head 0", "head 1"]
    with pytest.raises(ValueError, match="no per-head rows"):
        head_effects_bar(real)


def test_the_docs_table_is_what_each_mixer_answers():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "patching.md").read_text()
    for kind in names():
        sites = small(kind).mixer(0).patch_sites()
        cells = " | ".join(f"`{sites[r]}`" if r in sites else "—" for r in ("state", "write", "beta", "decay"))
        assert f"| {kind} | {cells} |" in text, kind
