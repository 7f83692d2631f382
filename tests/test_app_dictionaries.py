"""The Dictionaries page: its logic (workbench.app_support.dictionaries) against the analysis functions it wires
together, and the page under Streamlit's AppTest on the bundled checkpoint: training with small settings, the
substitution figure, the SAE on a hook, a download uploaded back, and every bad input as a message (a bad or
mismatched upload, too few tokens, bad sizes, a model without rank-one writes), never a traceback."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch
from streamlit.testing.v1 import AppTest

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis.dictionaries import (SAEConfig, SparseAutoencoder, WriteSAE, WriteSAEConfig,
                                             state_writes, substitution_test)
from workbench.app_support import dictionaries as D
from workbench.app_support import token_streams
from workbench.app_support.launch import APP_SCRIPT
from workbench.plots import dictionary_training_curve, substitution_comparison

MQAR = {"name": "mqar", "vocab_size": 20, "seq_len": 12, "num_kv_pairs": 2}
PAGE = "app_pages/dictionaries.py"


def tiny(mixer: str = "delta", **kw) -> HookedFastWeightLM:
    torch.manual_seed(0)
    return HookedFastWeightLM(ModelConfig(d_vocab=20, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=24,
                                          mixer=mixer, init_std=0.3, **kw)).eval()


@pytest.fixture(scope="module")
def setup():
    model = tiny()
    stream = token_streams.task_stream(model.cfg, MQAR, 2, 8, 0)  # 16 sequences × 12 positions = 192 rows
    site = D.Site("WriteSAE", layer=1, head=1)
    report = D.train(model, stream, site, D.dictionary_config("WriteSAE", 16, "topk", 2, 1e-3, 40, 0))
    return model, stream, site, report


# --------------------------------------------------------------------------------------------- without Streamlit
def test_write_layers_ask_the_mixer_and_the_message_gives_its_reason():
    assert D.write_layers(tiny()) == ([0, 1], {})
    layers, why = D.write_layers(tiny("fwm"))
    assert layers == [] and set(why) == {0, 1} and "third-order" in why[0]
    message = D.no_writes_message(tiny("fwm"), why)
    assert "WriteSAE does not apply" in message and "Layer 1:" in message and "SAE" in message
    layers, why = D.write_layers(tiny("softmax"))
    assert layers == [] and "keeps no fast-weight matrix" in why[0]


def test_top_positions_are_the_rows_where_the_atom_codes_most(setup):
    model, stream, site, report = setup
    atom = int(report.usage.fires.idxmax())
    table = D.top_positions(model, report, stream, atom)
    assert 0 < len(table) <= D.TOP_ROWS and (table.code.diff().dropna() <= 0).all()
    keys, values = state_writes(model, stream.stacked(), site.layer)  # independently: the write at each position
    for row in table.itertuples():
        with torch.no_grad():
            code = report.module.encode(keys[row.sequence, row.position, site.head],
                                        values[row.sequence, row.position, site.head])[atom]
        assert float(code) == pytest.approx(row.code, rel=1e-5)
        assert f"[{row.token}]" in row.context and row.token == str(int(stream.stacked()[row.sequence, row.position]))
    assert report.usage.fires.sum() == pytest.approx(report.metrics["l0"] * stream.n_tokens)
    with pytest.raises(ValueError, match="the atom must be an integer in"):
        D.top_positions(model, report, stream, 16)


def test_too_few_tokens_bad_sizes_and_a_mismatched_dictionary_are_value_errors(setup):
    model, stream, site, report = setup
    one = token_streams.TokenStream((tuple(stream.batches[0][:2]),), "two sequences")
    with pytest.raises(ValueError, match="too few tokens: two sequences gives 24 positions"):
        D.collect(model, one, site)
    with pytest.raises(ValueError, match=r"WriteSAEConfig.k must be an int in \[1, 16\]"):
        D.dictionary_config("WriteSAE", 16, "topk", 17, 1e-3, 10, 0)
    with pytest.raises(ValueError, match="training steps must be an integer in 1"):
        D.dictionary_config("SAE", 16, "topk", 2, 1e-3, D.MAX_STEPS + 1, 0)
    rows = D.collect(model, stream, D.Site("SAE", hook="blocks.0.attn.hook_beta"))
    sae = SparseAutoencoder(SAEConfig(n_latents=8, k=2), d_in=16)
    with pytest.raises(ValueError, match="the SAE reads vectors of 16 numbers, but blocks.0.attn.hook_beta gives 2"):
        D.measure(sae, D.Site("SAE", hook="blocks.0.attn.hook_beta"), rows)
    with pytest.raises(ValueError, match="the dictionary is a WriteSAE, but the page is set up for a SAE"):
        D.measure(report.module, D.Site("SAE", hook="blocks.0.attn.hook_beta"), rows)
    wide = WriteSAE(WriteSAEConfig(n_atoms=8, k=2), d_k=4, d_v=8)
    with pytest.raises(ValueError, match=r"reads writes \[d_k, d_v\] = \[4, 8\]"):
        D.measure(wide, site, D.collect(model, stream, site))


def test_a_saved_dictionary_reads_back_and_a_bad_file_says_why(setup, tmp_path, monkeypatch):
    model, stream, site, report = setup
    data = D.dictionary_bytes(report.module)
    back = D.read_dictionary(data, "mine.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(back.state_dict().values(), report.module.state_dict().values()))
    again = D.evaluate(model, stream, site, back)
    assert again.metrics == report.metrics and again.history is None
    with pytest.raises(ValueError, match="'junk.safetensors' is not a dictionary saved by"):
        D.read_dictionary(b"not a safetensors file", "junk.safetensors")
    from safetensors.torch import save_file
    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"kind": "model"})
    with pytest.raises(ValueError, match="'other.safetensors' is not a dictionary this app can read: .*kind 'model'"):
        D.read_dictionary((tmp_path / "other.safetensors").read_bytes(), "other.safetensors")
    monkeypatch.setattr(D, "MAX_DICTIONARY_BYTES", len(data) - 1)
    with pytest.raises(ValueError, match="the app reads at most"):
        D.read_dictionary(data, "mine.safetensors")


def test_substitution_in_chunks_equals_one_run_of_the_analysis(setup):
    model, stream, site, report = setup
    results = D.substitution(model, report, stream, 12, seed=3, chunk=5)
    assert len(results) == 12
    mask = torch.cat(stream.masks(), 0)
    whole = substitution_test(model, report.module, stream.stacked(), site.layer, site.head, loss_mask=mask,
                              firings=results[["sequence", "position", "atom"]], progress=False)
    for col in ("loss_native", "loss_atom", "loss_ablate", "kl_atom", "kl_ablate", "write_norm"):
        assert results[col].tolist() == pytest.approx(whole[col].tolist(), rel=1e-9, abs=1e-12), col
    rates = D.win_rates(results)
    assert list(zip(rates.baseline, rates.metric)) == [("ablate", "loss"), ("random", "loss"), ("ablate", "kl"),
                                                       ("random", "kl")]
    assert rates.wins[0] == int((results.loss_atom < results.loss_ablate).sum())
    fig = substitution_comparison(results, rates)
    assert [t.type for t in fig.data] == ["scatter", "scatter", "scatter", "bar"]
    assert list(fig.data[3].y) == pytest.approx(rates.fraction[:2].tolist())
    with pytest.raises(ValueError, match="needs a WriteSAE"):
        D.substitution(model, D.DictionaryReport(report.module, D.Site("SAE", hook="x"), *[None] * 5), stream, 4)
    with pytest.raises(ValueError, match="results lack the columns"):
        substitution_comparison(results.drop(columns="loss_random"), rates)


def test_training_curve_and_sae_on_a_hook(setup):
    model, stream, _, _ = setup
    hooks = D.firing_hooks(model)
    assert "blocks.0.attn.hook_state" not in hooks and D.default_hook(hooks) == "blocks.1.hook_resid_post"
    site = D.Site("SAE", hook=D.default_hook(hooks))
    report = D.train(model, stream, site, D.dictionary_config("SAE", 16, "relu_l1", 1, 1e-3, 30, 0))
    assert set(report.metrics) == {"mse", "explained_variance", "l0", "dead"} and len(report.history) == 2
    fig = dictionary_training_curve(report.history)
    assert list(fig.data[0].x) == report.history.step.tolist() and fig.layout.yaxis.type == "log"
    with pytest.raises(ValueError, match="lacks the columns"):
        dictionary_training_curve(pd.DataFrame({"step": [0]}))
    assert site.file_name == "sae-blocks-1-hook_resid_post.safetensors"


# ---------------------------------------------------------------------------------------------------- the page
def open_page(steps: int = 30, **state) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()
    for key, value in {"dict_steps": steps, **state}.items():  # small settings before the page first trains
        at.session_state[key] = value
    return at.switch_page(PAGE).run()


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def metrics(at: AppTest) -> dict:
    return {m.label: m.value for m in at.metric}


@pytest.mark.integration
def test_the_page_trains_a_write_sae_shows_where_atoms_fire_and_runs_the_substitution_test():
    at = open_page()
    assert_ok(at)
    shown = metrics(at)
    assert list(shown) == ["Explained variance", "Relative error", "Active atoms per row (L0)", "Dead atoms"]
    assert 0 < float(shown["Active atoms per row (L0)"]) <= 4 and shown["Dead atoms"].endswith("of 64")
    assert len(at.get("plotly_chart")) == 2 and at.get("download_button")
    (report,) = at.session_state["per_session:dictionaries"].values()
    assert len(report.history) == 2 and report.site == D.Site("WriteSAE", layer=0, head=0)
    top = at.dataframe[0].value
    assert list(top.columns) == ["sequence", "position", "token", "code", "context"] and len(top) > 0
    at.session_state["dict_firings"] = 8  # a small test: the input appears with the toggle
    at.toggle(key="dict_substitution").set_value(True).run()
    assert_ok(at)
    assert len(at.get("plotly_chart")) == 3
    rates = at.dataframe[1].value
    assert rates["n"].tolist()[:1] == [8]
    assert ((rates.ci_low <= rates.fraction) & (rates.fraction <= rates.ci_high)).all()


@pytest.mark.integration
def test_a_downloaded_dictionary_uploads_back_and_an_sae_trains_on_a_hook():
    at = open_page()
    assert_ok(at)
    trained = metrics(at)
    data = next(iter(at.session_state["per_session:dictionary_files"].values()))
    at.radio(key="dict_source").set_value("Upload a saved dictionary").run()
    assert_ok(at)
    assert "Upload a dictionary saved with" in at.info[0].value
    at.file_uploader(key="dict_upload").set_value(("write_sae.safetensors", data, "application/octet-stream")).run()
    assert_ok(at)
    assert metrics(at) == trained  # the same dictionary measured on the same tokens
    assert "without its training history" in at.info[0].value and len(at.get("plotly_chart")) == 1
    at.radio(key="dict_source").set_value("Train one here").run()
    at.radio(key="dict_kind").set_value("SAE").run()
    assert_ok(at)
    assert "Mean squared error" in metrics(at) and at.selectbox(key="dict_hook").value == "blocks.1.hook_resid_post"


@pytest.mark.integration
def test_bad_uploads_too_few_tokens_and_bad_sizes_are_messages():
    at = open_page()
    at.number_input(key="dict_k").set_value(65).run()
    assert not at.exception and "WriteSAEConfig.k must be an int in [1, 64]" in at.error[0].value.replace("\\", "")
    at.number_input(key="dict_k").set_value(4).run()
    at.radio(key="dict_stream_source").set_value("The sidebar's sequence").run()
    assert not at.exception and "too few tokens: the mqar sample, seed 0 (48 tokens) gives 48 positions" in \
        at.error[0].value.replace("\\", "")
    at.radio(key="dict_stream_source").set_value("Batches of the model's task").run()
    assert_ok(at)
    at.radio(key="dict_source").set_value("Upload a saved dictionary").run()
    at.file_uploader(key="dict_upload").set_value(("junk.safetensors", b"\x00" * 100, "application/octet-stream")).run()
    assert not at.exception and "'junk.safetensors' is not a dictionary saved by" in at.error[0].value.replace("\\", "")
    sae = SparseAutoencoder(SAEConfig(n_latents=8, k=2), d_in=3)
    data = D.dictionary_bytes(sae)
    at.file_uploader(key="dict_upload").set_value(("sae.safetensors", data, "application/octet-stream")).run()
    assert not at.exception and "the SAE reads vectors of 3 numbers" in at.error[0].value


@pytest.mark.integration
@pytest.mark.parametrize("checkpoint, reason", [("toy-fwm", "third-order tensor"), ("toy-delta-rnn", "rank-two")])
def test_a_model_without_rank_one_writes_is_explained_and_still_trains_an_sae(checkpoint, reason):
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()
    at.sidebar.selectbox(key="checkpoint").set_value(checkpoint).run()
    at.session_state["dict_steps"] = 20
    at.switch_page(PAGE).run()
    assert_ok(at)
    assert "WriteSAE does not apply to this model" in at.info[0].value and reason in at.info[0].value
    assert not at.metric and not at.get("plotly_chart")
    at.radio(key="dict_kind").set_value("SAE").run()
    assert_ok(at)
    assert "Explained variance" in metrics(at)


@pytest.mark.integration
def test_a_softmax_model_has_no_fast_weights_to_decompose():
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()
    at.sidebar.radio(key="model_source").set_value("Fresh model (random init)").run()
    at.sidebar.selectbox(key="fresh_mixer").set_value("softmax").run()
    cfg = json.loads(at.sidebar.text_area(key="fresh_config").value)
    at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**cfg, "n_ctx": 32, "d_model": 32})).run()
    at.switch_page(PAGE).run()
    assert_ok(at)
    assert "keeps no fast-weight matrix" in at.info[0].value.replace("\\", "")
