"""The logic behind the app's Outliers and K-FAC editing pages (workbench.app_support.token_streams,
outlier_dashboard, kfac_editing, downloads; workbench.plots.memorization), without Streamlit."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig
from workbench.checkpoint import load_from_bytes
from workbench.analysis.kfac import KFACConfig, collect_kfac, linear_sites
from workbench.analysis.memorization import held_out_perplexity
from workbench.analysis.outliers import decompose_residual, outlier_table, trace_outliers
from workbench.app_support import downloads, kfac_editing, outlier_dashboard, sequences, token_streams
from workbench.plots.memorization import recitation_bars
from workbench.tasks import Canaries
from workbench.training import masked_loss

MQAR_TASK = {"name": "mqar", "vocab_size": 20, "seq_len": 12, "num_kv_pairs": 2}
CANARY_TASK = Canaries(vocab_size=20, seq_len=12, canary_len=8, repetitions=(2, 8), canaries_per_level=2,
                       n_sequences=64).to_dict()


def small(mixer: str = "delta", **kw) -> HookedFastWeightLM:
    kw = {"d_mlp": 16, **kw}
    model = HookedFastWeightLM(ModelConfig.from_dict(dict(d_vocab=20, d_model=16, n_heads=2, d_head=8, n_ctx=24, mixer=mixer,
                                           init_std=0.3, chunk_size=4, **kw)))
    return model.eval().requires_grad_(False)


def state(model) -> dict:
    return {k: v.clone() for k, v in model.state_dict().items()}


def unchanged(model, before: dict) -> bool:
    return (all(torch.equal(before[k], v) for k, v in model.state_dict().items())
            and all(not hp._forward_hooks for hp in model.hook_dict.values()))


# ---------------------------------------------------------------------- token streams
def test_task_streams_are_seeded_sized_and_carry_the_loss_mask():
    cfg = small().cfg
    a = token_streams.task_stream(cfg, MQAR_TASK, 3, 4, seed=1)
    assert a == token_streams.task_stream(cfg, MQAR_TASK, 3, 4, seed=1) and hash(a) == hash(
        token_streams.task_stream(cfg, MQAR_TASK, 3, 4, seed=1))
    assert a != token_streams.task_stream(cfg, MQAR_TASK, 3, 4, seed=2)
    assert (a.n_sequences, a.seq_len, a.n_tokens) == (12, 12, 144) and a.stacked().shape == (12, 12)
    g = torch.Generator().manual_seed(1)
    from workbench.tasks import task_from_dict

    first = task_from_dict(MQAR_TASK).sample(4, g)
    assert torch.equal(a.tensors()[0], first.tokens) and torch.equal(a.masks()[0], first.loss_mask)
    canary = token_streams.task_stream(cfg, CANARY_TASK, 2, 3)
    assert canary.scored is None and canary.masks()[0].all() and canary.masks()[0].shape == (3, 11)
    for args, message in [((0, 4), "number of batches must be a positive"), ((2, 0), "batch size must be"),
                          ((64, 256), "more than the app's")]:
        with pytest.raises(ValueError, match=message):
            token_streams.task_stream(cfg, MQAR_TASK, *args)
    with pytest.raises(ValueError, match="seed must be"):
        token_streams.task_stream(cfg, MQAR_TASK, 1, 1, seed=-1)
    with pytest.raises(ValueError, match="uses 64 token ids"):
        token_streams.task_stream(cfg, {"name": "mqar", "vocab_size": 64, "seq_len": 12, "num_kv_pairs": 2}, 1, 1)
    assert token_streams.fitting_batch_size(cfg, MQAR_TASK, 8, 32) == 32
    assert token_streams.fitting_batch_size(cfg, MQAR_TASK, 8, 10**6) == token_streams.MAX_STREAM_TOKENS // (8 * 12)


def test_the_stream_task_follows_the_sidebar_then_the_model():
    model = small()
    sampled = sequences.task_sequence(model.cfg, MQAR_TASK, 0)
    typed = sequences.typed_sequence(model, "1 2 3")
    assert token_streams.stream_task(model.cfg, sampled) == MQAR_TASK
    assert token_streams.stream_task(model.cfg, typed, CANARY_TASK) == CANARY_TASK  # the model's recipe
    assert token_streams.stream_task(model.cfg, typed)["name"] == "mqar"  # an MQAR sized to the model
    assert token_streams.stream_task(model.cfg.replace(d_vocab=4), typed) is None
    mixture = {"name": "mqar_mixture", "tasks": [dict(MQAR_TASK, seq_len=8), MQAR_TASK]}
    assert token_streams.stream_task(model.cfg, typed, mixture) == MQAR_TASK  # one length: the longest setting
    one = token_streams.sequence_stream(typed)
    assert one.batches == (((1, 2, 3),),) and "typed sequence" in one.label


# ---------------------------------------------------------------------- outliers
def test_outlier_sites_follow_the_architecture():
    assert "delta" in outlier_dashboard.available_sites(small("delta"))
    softmax = outlier_dashboard.available_sites(small("softmax"))
    assert "delta" not in softmax and "mlp_hidden" in softmax
    assert "mlp_hidden" not in outlier_dashboard.available_sites(small("linear", mlp="none", d_mlp=0))
    with pytest.raises(ValueError, match="no hook site chosen"):
        outlier_dashboard.check_sites(small(), [])
    with pytest.raises(ValueError, match=r"has no \['delta'\] hooks"):
        outlier_dashboard.check_sites(small("softmax"), ["resid_post", "delta"])


def test_tracing_a_stream_batch_by_batch_equals_one_pass_and_leaves_the_model_alone():
    model = small()
    before = state(model)
    stream = token_streams.task_stream(model.cfg, MQAR_TASK, 3, 4)
    calls = []
    sites = ("resid_post", "k", "delta", "mlp_hidden")
    stats = outlier_dashboard.trace_stream(model, stream, sites, progress=lambda i, n: calls.append((i, n)))
    assert calls == [(1, 3), (2, 3), (3, 3)]
    one_pass = outlier_table(trace_outliers(model, stream.tensors(), sites, progress=False))
    table = outlier_dashboard.metrics_table(stats)
    pd.testing.assert_frame_equal(table, one_pass, rtol=1e-9)
    assert set(outlier_dashboard.METRICS) <= set(table.columns) and len(table) == 2 * len(sites)
    k = outlier_dashboard.hook_neurons(stats, model.cfg, 1, "k")
    assert list(k.columns[:3]) == ["neuron", "head", "channel"] and len(k) == 16 and k.rms.is_monotonic_decreasing
    assert len(outlier_dashboard.top_neuron_table(stats, model.cfg, 2)) == 2 * len(table)
    with pytest.raises(ValueError, match="was not traced"):
        outlier_dashboard.hook_neurons(stats, model.cfg, 0, "v")
    with pytest.raises(ValueError, match="no batches"):
        outlier_dashboard.merge_stats([])
    assert unchanged(model, before)


def test_residual_writes_sum_to_the_outlier_dimension():
    model = small()
    tokens = token_streams.task_stream(model.cfg, MQAR_TASK, 2, 3).stacked()
    _, cache = model.run_with_cache(tokens)
    resid = cache["blocks.1.hook_resid_post"]
    top = outlier_dashboard.top_residual_neuron(model, tokens, 1, "resid_post")
    assert top == int(resid.pow(2).mean((0, 1)).argmax())
    writes = outlier_dashboard.residual_writes(model, tokens, 1, "resid_post", top)
    assert math.isclose(writes["mean"].sum(), float(resid[..., top].double().mean()), rel_tol=1e-6, abs_tol=1e-9)
    assert math.isclose(writes.share_abs.sum(), 1.0)
    full = decompose_residual(model, tokens, top, 1, "resid_post")
    assert set(writes.component) == set(full.component)
    with pytest.raises(ValueError, match="residual stream is read at"):
        outlier_dashboard.residual_writes(model, tokens, 1, "attn_out", top)
    with pytest.raises(ValueError, match=r"neuron must be an int in \[0, 15\]"):
        outlier_dashboard.residual_writes(model, tokens, 1, "resid_post", 16)


def test_state_table_over_position():
    model = small("gated_delta")
    stream = token_streams.task_stream(model.cfg, MQAR_TASK, 2, 2)
    df = outlier_dashboard.state_table(model, stream, 3)
    assert len(df) == 2 * 2 * 12 and {"frobenius", "sigma_3", "effective_rank"} <= set(df.columns)
    assert (df.n_sequences == 4).all()
    with pytest.raises(ValueError, match="softmax attention"):
        outlier_dashboard.state_table(small("softmax"), stream)


# ---------------------------------------------------------------------- K-FAC editing
def test_sites_and_rho_are_checked_with_the_fix():
    model = small("delta")
    assert kfac_editing.site_names(model, [1], ["mlp_in", "mlp_out"]) == ("blocks.1.mlp.W_in", "blocks.1.mlp.W_out")
    assert kfac_editing.available_kinds(model) == ["mlp_in", "mlp_out", "q", "k", "v", "o", "beta"]
    with pytest.raises(ValueError, match="no layer chosen"):
        kfac_editing.site_names(model, [], ["mlp_in"])
    with pytest.raises(ValueError, match="no kind of linear layer chosen"):
        kfac_editing.site_names(model, [0], [])
    with pytest.raises(ValueError, match=r"has no \['W_beta \(β\)'\] in layer\(s\) \[0\]"):
        kfac_editing.site_names(small("softmax"), [0], ["beta"])
    with pytest.raises(ValueError, match=r"mlp 'none'\) has no \['MLP W_in'\]"):
        kfac_editing.site_names(small("delta", mlp="none", d_mlp=0), [0, 1], ["mlp_in"])
    assert kfac_editing.check_rho(1) == 1.0 and kfac_editing.check_rho(0.25) == 0.25
    for bad in (0, 0.0, -0.1, 1.5, True, "0.5", float("nan")):
        with pytest.raises(ValueError, match=r"ρ must be in \(0, 1\]"):
            kfac_editing.check_rho(bad)


def test_collected_factors_are_collect_kfac_of_the_stream():
    model = small()
    batches = token_streams.task_stream(model.cfg, MQAR_TASK, 3, 2).tensors()
    sites = kfac_editing.site_names(model, [0], ["mlp_in", "v"])
    calls = []
    got = kfac_editing.collect_factors(model, batches, sites, "sampled", 3, progress=lambda i, n: calls.append(i))
    want = collect_kfac(model, batches, KFACConfig(sites=sites, labels="sampled", seed=3), progress=False)
    assert calls == [1, 2, 3] and set(got) == set(sites)
    assert all(torch.equal(got[s].A_sum, want[s].A_sum) and torch.equal(got[s].G_sum, want[s].G_sum) for s in sites)
    spectra = kfac_editing.spectra(got)
    assert len(spectra["blocks.0.mlp.W_in"]) == 16 * 16 and spectra["blocks.0.attn.W_V"].cumulative.iloc[-1] == \
        pytest.approx(1.0)
    with pytest.raises(ValueError, match="no batches"):
        kfac_editing.collect_factors(model, [], sites)


def test_recitation_sets_and_windows():
    model = small()
    canaries = kfac_editing.canary_set(CANARY_TASK)
    assert len(canaries.sequences) == 4 and canaries.length == 8 and canaries.repetitions == (2, 2, 8, 8)
    assert torch.equal(canaries.tensor(), Canaries(**{k: v for k, v in CANARY_TASK.items() if k != "name"}).canaries())
    assert canaries.group == "repetitions" and canaries.meta().repetitions.tolist() == [2, 2, 8, 8]
    with pytest.raises(ValueError, match=r"not one of \['canaries', 'text_canaries'\]"):
        kfac_editing.canary_set(MQAR_TASK)
    typed = kfac_editing.typed_set(model, "1 2 3 4 5\n\n6, 7, 8, 9\n")
    assert typed.sequences == ((1, 2, 3, 4), (6, 7, 8, 9)) and "cut to the shortest" in typed.label
    assert typed.group == "sequence" and typed.meta().sequence.tolist() == [0, 1]
    with pytest.raises(ValueError, match="no sequences to recite"):
        kfac_editing.typed_set(model, " \n ")
    with pytest.raises(ValueError, match=r"line 2: entry 1 \('x'\) is not a token id"):
        kfac_editing.typed_set(model, "1 2\n3 x")
    with pytest.raises(ValueError, match="line 1: token id 20 is outside the vocabulary"):
        kfac_editing.typed_set(model, "1 20")
    seq = sequences.task_sequence(model.cfg, MQAR_TASK, 0)
    assert kfac_editing.sequence_set(seq).sequences == (seq.tokens,)
    assert kfac_editing.check_windows(canaries, 3, 5) == (3, 5)
    with pytest.raises(ValueError, match="prefix \\+ suffix = 9 tokens, but the sequences to recite have 8"):
        kfac_editing.check_windows(canaries, 4, 5)
    with pytest.raises(ValueError, match="the prefix length must be a positive integer"):
        kfac_editing.check_windows(canaries, 0, 5)
    assert kfac_editing.default_windows(24) == (8, 16) and kfac_editing.default_windows(12) == (4, 8)
    assert kfac_editing.default_windows(2) == (1, 1)


def test_text_canaries_recite_their_canaries_and_hold_out_the_validation_text():
    from workbench.tasks import TextCanaries

    task = TextCanaries(tokenizer="bytes", seq_len=32, canary_len=8, repetitions=(1, 4), positions=(0, 8),
                        canaries_per_level=2, n_rows=64)
    cfg = small().cfg.replace(d_vocab=256, n_ctx=32)
    recite = kfac_editing.canary_set(task.to_dict())
    assert torch.equal(recite.tensor(), task.canaries()) and recite.repetitions == (1, 1, 1, 1, 4, 4, 4, 4)
    held_out = kfac_editing.held_out_stream(cfg, task.to_dict(), 2, 8, seed=0)
    assert held_out.scored is None and torch.equal(held_out.stacked(), torch.cat(task.validation(8)[:2]))


def test_perplexity_counts_the_predictions_the_task_scores():
    model = small()
    canary = kfac_editing.held_out_stream(model.cfg, CANARY_TASK, 2, 3, seed=5)
    g = torch.Generator().manual_seed(5)
    task = Canaries(**{k: v for k, v in CANARY_TASK.items() if k != "name"})
    assert canary.scored is None and torch.equal(canary.tensors()[0], task.background(3, g))  # no canaries in it
    assert kfac_editing.perplexity(model, canary) == held_out_perplexity(model, canary.tensors())
    mqar = kfac_editing.held_out_stream(model.cfg, MQAR_TASK, 1, 4, seed=0)
    assert mqar.scored is not None
    from workbench.tasks import TaskBatch

    batch = TaskBatch(mqar.tensors()[0], mqar.masks()[0])
    assert kfac_editing.perplexity(model, mqar) == pytest.approx(math.exp(float(masked_loss(model, batch))), rel=1e-5)


def test_compare_edits_keeps_the_model_and_rho_one_changes_nothing():
    model = small()
    before = state(model)
    factors = kfac_editing.collect_factors(model, token_streams.task_stream(model.cfg, CANARY_TASK, 2, 4).tensors(),
                                           kfac_editing.site_names(model, [0, 1], ["mlp_in", "mlp_out"]))
    recite = kfac_editing.canary_set(CANARY_TASK)
    held_out = kfac_editing.held_out_stream(model.cfg, CANARY_TASK, 2, 4, seed=9)
    steps = []
    same, models = kfac_editing.compare_edits(model, factors, 1.0, recite, held_out, 3, 5,
                                              progress=lambda i, n, what: steps.append((i, n)))
    assert steps == [(i, 5) for i in range(1, 6)]
    assert list(same.summary.model) == list(kfac_editing.MODELS)
    assert list(same.summary.columns) == kfac_editing.SUMMARY_COLUMNS
    assert same.summary.perplexity.nunique() == 1 and (same.summary.top_k_agreement == 1).all()
    assert (same.report.weight_rel_change == 0).all() and len(same.report) == 2 * 4
    edited, models = kfac_editing.compare_edits(model, factors, 0.5, recite, held_out, 3, 5, svd_budget="rank")
    assert set(models) == {"K-FAC", "SVD"} and all(m is not model for m in models.values())
    assert (edited.report.weight_rel_change > 0).all() and set(edited.report.method) == {"kfac", "svd_rank"}
    assert edited.summary.perplexity.iloc[0] == same.summary.perplexity.iloc[0]
    assert edited.summary.perplexity.iloc[1] != edited.summary.perplexity.iloc[0]
    assert edited.k == 10 and edited.rho == 0.5
    assert set(edited.by_group.columns) >= {"repetitions", "strict_acc", "model"} and len(edited.by_group) == 3 * 2
    assert len(edited.recitation) == 3 * 4
    assert unchanged(model, before)
    with pytest.raises(ValueError, match="ρ must be in"):
        kfac_editing.compare_edits(model, factors, 0.0, recite, held_out, 3, 5)
    with pytest.raises(ValueError, match="no K-FAC factors"):
        kfac_editing.compare_edits(model, {}, 0.5, recite, held_out, 3, 5)


def test_recitation_bars_and_checkpoint_files():
    by_group = pd.DataFrame({"repetitions": [1, 4, 1, 4], "strict_acc": [0.0, 1.0, 0.0, 0.5],
                             "model": ["unedited", "unedited", "K-FAC", "K-FAC"]})
    fig = recitation_bars(by_group, "repetitions", "strict_acc", title="t")
    assert [t.name for t in fig.data] == ["unedited", "K-FAC"] and list(fig.data[1].y) == [0.0, 0.5]
    assert list(fig.data[0].x) == ["1", "4"] and fig.layout.barmode == "group"
    with pytest.raises(ValueError, match="metric must be one of"):
        recitation_bars(by_group, metric="ppl")
    with pytest.raises(ValueError, match=r"lacks columns \['sequence'\]"):
        recitation_bars(by_group, group="sequence")
    model = small()
    files = downloads.checkpoint_files(model)
    assert set(files) == {"config.json", "model.safetensors"} and json.loads(files["config.json"])["d_model"] == 16
    again = load_from_bytes(files["config.json"], files["model.safetensors"])
    assert all(torch.equal(v, again.state_dict()[k]) for k, v in model.state_dict().items())
    assert [s.param for s in linear_sites(again)] == [s.param for s in linear_sites(model)]


def test_the_shipped_canary_checkpoint_is_its_recipe():
    from workbench import load
    from workbench.paths import CHECKPOINTS_DIR
    from workbench.training.run_config import load_run_config

    run = load_run_config(CHECKPOINTS_DIR / "canaries-delta" / "recipe.json")
    assert run.model == load(CHECKPOINTS_DIR / "canaries-delta").cfg and run.task.to_dict()["name"] == "canaries"
    assert kfac_editing.is_canary_task(run.task.to_dict()) and run.train.steps * run.train.batch_size == \
        run.task.n_sequences
