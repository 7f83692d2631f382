"""The Streamlit app under Streamlit's AppTest: every page renders on the bundled checkpoint, its widgets
change what it shows, and bad input gives an error message, never an exception."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from streamlit.proto.Metric_pb2 import Metric
from streamlit.testing.v1 import AppTest

from workbench.app_support.launch import APP_SCRIPT
from workbench.paths import DEFAULT_CHECKPOINT

pytestmark = pytest.mark.integration  # each test drives the whole app through AppTest (seconds each)

ROOT = Path(__file__).resolve().parents[1]
PAGES = ["overview", "attention", "fast_weights", "recall_probe", "editing", "outliers", "kfac"]
CONFIG_TEXT = (DEFAULT_CHECKPOINT / "config.json").read_text()
WEIGHTS = (DEFAULT_CHECKPOINT / "model.safetensors").read_bytes()


def open_app(page: str = "overview") -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=120).run()  # page paths are relative to it
    if page != "overview":
        at.switch_page(f"app_pages/{page}.py").run()
    return at


def open_model():
    from workbench import load

    return load(DEFAULT_CHECKPOINT)


def charts(at: AppTest) -> list[dict]:
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def heat(chart: dict) -> np.ndarray:
    """The z matrix of a chart's first trace (plotly sends numpy arrays base64-encoded)."""
    z = chart["data"][0]["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.asarray(z, dtype=float)


def titles(at: AppTest) -> list[str]:
    return [c["layout"].get("title", {}).get("text", "") for c in charts(at)]


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def unescaped(markdown: str) -> str:
    """An error as the user reads it: the app escapes Markdown's special characters in messages."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at: AppTest) -> str:
    assert not at.exception, [e.value for e in at.exception]
    return " | ".join(unescaped(e.value) for e in at.error)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label.startswith(label))


# ---------------------------------------------------------------------- every page, default settings
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_the_bundled_checkpoint(page):
    at = open_app(page)
    assert_ok(at)
    assert "toy-delta" in at.sidebar.caption[0].value and "48 tokens" in at.sidebar.caption[1].value
    expected_charts = {"overview": 1 + 1, "attention": 2 + 2, "fast_weights": 5, "recall_probe": 1, "editing": 1,
                       "outliers": 4, "kfac": 1}[page]
    assert len(charts(at)) == expected_charts
    if page == "overview":
        assert metric(at, "Recall accuracy on the task's 6 queries (★ rows)") == "100%"
        assert len(at.dataframe[0].value) == 48
    if page == "editing":  # the default edit: recall at the first query answers like the last query
        assert [(m.value, m.delta) for m in at.metric] == [("32", ""), ("33", ""), ("changed", "")]  # ids: no delta
        assert any("the edit reproduces it" in c.value for c in at.main.caption)
    if page == "outliers":
        assert titles(at)[0] == "kurtosis by layer over 4 × 8 mqar sequences of 48 tokens (seed 0)"
    if page == "kfac":  # the default checkpoint memorized nothing: the page says so and points to one that did
        assert "canaries-delta" in at.info[0].value
        # ... and, having measured the unedited model, says it recites nothing before running the comparison
        assert "recites none of 1 typed sequence" in at.warning[0].value and not at.metric
        at.toggle(key="kfac_anyway").set_value(True).run()
        assert_ok(at)
        assert [m.label for m in at.metric][:3] == ["Held-out perplexity", "Strict recitation",
                                                   "Top-10 agreement with the unedited model"]
        # nothing changed at the precision shown (perplexity 1.000, recitation 0 %): no arrow, no colour
        assert all(m.delta == "" for m in at.metric), [(m.label, m.value, m.delta) for m in at.metric]


def test_the_checkouts_app_py_serves_the_installed_app():  # `streamlit run app.py` from the repository root
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    assert_ok(at)
    assert "toy-delta" in at.sidebar.caption[0].value and metric(at, "Recall accuracy") == "100%"
    at.switch_page(str(APP_SCRIPT.parent / "app_pages" / "attention.py")).run()
    assert_ok(at)
    assert len(charts(at)) == 4


# ---------------------------------------------------------------------- widgets change the output
def test_sidebar_seed_and_typed_tokens_change_the_sequence():
    at = open_app()
    first = at.dataframe[0].value["token"].tolist()
    at.sidebar.number_input(key="seed").set_value(3).run()
    assert_ok(at)
    assert at.dataframe[0].value["token"].tolist() != first and "seed 3" in at.sidebar.caption[1].value
    at.sidebar.radio(key="sequence_source").set_value("Type token ids").run()
    typed = next(t for t in at.sidebar.text_area if t.key.startswith("typed-"))
    typed.set_value("5 40 9 41 5").run()
    assert_ok(at)
    assert at.dataframe[0].value["token"].tolist() == [5, 40, 9, 41, 5]
    assert not any(m.label.startswith("Recall accuracy") for m in at.metric)  # nothing is scored in typed text
    at.switch_page("app_pages/recall_probe.py").run()  # no pairs yet: say what to type, not an error
    assert_ok(at)
    assert "type the pairs below as key_pos:value_pos" in at.info[0].value and not at.get("plotly_chart")
    next(t for t in at.text_input if t.key.startswith("pairs-")).set_value("0:1 2:3").run()
    assert_ok(at)
    assert len(charts(at)) == 1


def test_position_slider_layer_and_head_change_the_fast_weight_plots():
    at = open_app("fast_weights")
    before = charts(at)
    assert "pos 12" in titles(at)[0]
    at.slider[0].set_value(30).run()
    assert_ok(at)
    after = charts(at)
    assert "pos 30" in titles(at)[0] and not np.array_equal(heat(after[0]), heat(before[0]))
    _, cache = open_model().run_with_cache(list(at.session_state["selection"][1].tokens))
    assert metric(at, "β_t") == f"{float(cache['blocks.0.attn.hook_beta'][0, 30, 0]):.3f}"
    # the curves along the sequence do not depend on the position; their dashed marker moves with it
    assert [c["data"] for c in after[2:]] == [c["data"] for c in before[2:]]
    assert [[sh["x0"] for sh in c["layout"]["shapes"]] for c in before[2:]] == [[12]] * 3
    assert [[sh["x0"] for sh in c["layout"]["shapes"]] for c in after[2:]] == [[30]] * 3
    assert [t["line"]["width"] for t in after[3]["data"]] == [2.5, 1]  # the chosen head bold, in its own colour
    assert len({t["line"]["color"] for t in after[3]["data"]}) == 2
    assert titles(at)[:2] == ["W_t: layer 0, head 0, pos 30", "W_t − W_(t−1): layer 0, head 0, pos 30"]
    full = charts(at)[0]["data"][0]["zmax"]
    at.toggle(key="clip").set_value(True).run()  # the 99th percentile of |W_t| ends the colour scale
    assert_ok(at)
    z = heat(charts(at)[0])
    zmax = charts(at)[0]["data"][0]["zmax"]
    assert zmax == pytest.approx(float(np.quantile(np.abs(z), 0.99)), rel=1e-3) and zmax < full
    at.toggle(key="clip").set_value(False).run()
    beta = metric(at, "β_t")
    at.selectbox(key="head").set_value(1).run()
    assert "head 1" in titles(at)[0] and metric(at, "β_t") != beta
    at.selectbox(key="layer").set_value(1).run()
    assert_ok(at)
    assert "layer 1" in titles(at)[0]


def test_attention_heads_and_magnitude_toggle():
    at = open_app("attention")
    signed = heat(charts(at)[0])
    assert signed.shape == (48, 48) and signed.min() < 0  # delta-rule effective attention is signed
    # the caption's colours are the scale's: RdBu runs red → blue, reversed it puts positive weights red
    trace = charts(at)[0]["data"][0]
    assert trace["reversescale"] is True and trace["zmid"] == 0
    low, high = trace["colorscale"][0][1], trace["colorscale"][-1][1]  # before the reversal
    red = lambda c: [int(v) for v in c[c.index("(") + 1:-1].split(",")]  # noqa: E731
    assert red(low)[0] > red(low)[2] and red(high)[2] > red(high)[0]  # so after it: zmax red, zmin blue
    assert "red is a positive weight" in at.main.caption[0].value
    assert "blue a negative one (the value is subtracted)" in at.main.caption[0].value
    assert trace["colorbar"]["title"]["text"] == "weight (red +, blue −)"
    assert "previous_token: the mean share" in at.main.caption[1].value  # each score defined where it is shown
    at.toggle(key="magnitude").set_value(True).run()
    assert np.array_equal(heat(charts(at)[0]), np.abs(signed))
    assert charts(at)[0]["data"][0]["colorbar"]["title"]["text"] == "|weight|"
    at.slider(key="attention_window-48").set_value((10, 19)).run()  # zoom to a window of positions
    assert heat(charts(at)[0]).shape == (10, 10) and np.array_equal(heat(charts(at)[0]), np.abs(signed)[10:20, 10:20])
    assert charts(at)[0]["data"][0]["x"][0].startswith("10:")
    at.multiselect(key="heads").set_value([1]).run()
    assert_ok(at)
    assert [t for t in titles(at) if t.startswith("layer")] == ["layer 0, head 1"]
    at.multiselect(key="heads").set_value([]).run()
    assert "No head selected" in at.info[0].value


def recall_margins(tokens, pairs) -> dict:
    """Per layer, the largest (mean fidelity − control fidelity) over heads, for the written pairs (b_i, b_i)."""
    from workbench.analysis import probe_associations

    model, b = open_model(), [v for _, v in pairs]
    out = {}
    for layer in range(model.cfg.n_layers):
        df = probe_associations(model, tokens, layer, [[(v, v) for v in b]]).groupby("head").fidelity.mean()
        ctrl = probe_associations(model, tokens, layer, [list(zip(b, b[1:]))]).groupby("head").fidelity.mean()
        out[layer] = float((df - ctrl).max())
    return out


def test_recall_probe_opens_on_the_layer_where_pairs_beat_their_control():
    at = open_app("recall_probe")
    assert_ok(at)
    seq = at.session_state["selection"][1]
    margins = recall_margins(list(seq.tokens), seq.pairs)
    # layer 1 scores fidelity ≈ 1 on its pairs and on their control alike (case_studies/mqar/README.md); layer 0
    # holds the pairs: the page asks the probe and opens there
    assert max(margins, key=margins.get) == 0 and margins[0] > 0.5 > margins[1]
    assert at.selectbox(key="layer").value == 0
    said = at.main.caption[1].value
    assert "layer 0: fidelity 0.89 (control -0.02; head 0), decodes up to 100% (head 1)" in said
    assert "layer 1: fidelity 1.00 (control 0.99" in said and "opened on layer 0" in said
    dotted = [t for t in charts(at)[0]["data"] if t.get("line", {}).get("dash") == "dot"]
    assert [t["name"] for t in dotted] == ["head 0 control", "head 1 control"]
    at.slider(key="samples").set_value(3).run()  # mean over samples with a ± s.e. band
    assert_ok(at)
    bands = [t for t in charts(at)[0]["data"] if t.get("fill") == "toself"]
    assert len(bands) == 2 and any("standard error" in c.value for c in at.main.caption)
    assert {"fidelity_sem", "n_samples"} <= set(at.dataframe[0].value.columns)


def test_recall_probe_metric_grouping_samples_and_bad_pairs():
    at = open_app("recall_probe")
    assert titles(at) == ["layer 0: fidelity by lag"]
    pairs = next(t for t in at.text_input if t.key.startswith("pairs-"))
    assert pairs.value == "1:1 3:3 5:5 7:7 9:9 11:11"  # the pairs as written: key and value at the value position
    at.radio(key="convention").set_value("task").run()
    assert next(t for t in at.text_input if t.key.startswith("pairs-")).value == "0:1 2:3 4:5 6:7 8:9 10:11"
    at.selectbox(key="metric").set_value("decodes").run()
    at.selectbox(key="by").set_value("n_stored").run()
    assert titles(at) == ["layer 0: decodes by n_stored"]
    one = at.dataframe[0].value
    at.slider(key="samples").set_value(3).run()
    assert_ok(at)
    assert not at.dataframe[0].value.equals(one)  # averaged over three sequences
    at.slider(key="samples").set_value(1).run()
    pairs = next(t for t in at.text_input if t.key.startswith("pairs-"))
    pairs.set_value("0:1 2-x").run()
    assert "'2-x' is not a pair" in errors(at)
    pairs.set_value("0:99").run()
    assert "outside the sequence" in errors(at)
    pairs.set_value("0:1").run()
    assert_ok(at)
    assert len(at.dataframe[0].value) > 0


def test_editing_actions_strength_and_mode():
    at = open_app("editing")
    redirected = metric(at, "Top prediction")
    seq = at.session_state["selection"][1]
    stars = charts(at)[0]["data"][2]  # the scored positions, green where the edited model is right, red where not
    assert stars["x"] == list(seq.scored) and stars["marker"]["symbol"] == "star"
    assert stars["marker"]["color"][0] == "#d62728" and stars["marker"]["color"][1:] == ["#2ca02c"] * 5
    assert charts(at)[0]["layout"]["shapes"][0]["x0"] == 12  # the edited position
    at.slider(key="strength").set_value(0.0).run()
    shown = {m.label: m.value for m in at.metric}
    assert shown["Top prediction"] == "unchanged" and shown["Top prediction at position 12, with the edit"] == "33"
    assert redirected == "32"
    at.radio(key="action").set_value("Wipe the memory (W_t = 0)").run()
    at.radio(key="mode").set_value("readout").run()
    assert_ok(at)
    assert {m.label: m.value for m in at.metric}["Top prediction"] == "changed"
    assert len(at.dataframe[2].value) == 1  # readout: only t changes
    assert all(m.delta == "" for m in at.metric)


def test_outliers_metric_site_dimension_state_and_tokens_change_the_output():
    from workbench.analysis.outliers import outlier_table, trace_outliers
    from workbench.app_support.token_streams import task_stream

    at = open_app("outliers")
    model, task = open_model(), json.loads(at.session_state["selection"][1].task_json)
    stream = task_stream(model.cfg, task, 4, 8, 0)
    expected = outlier_table(trace_outliers(model, stream.tensors(), tuple(at.multiselect(key="outlier_sites").value),
                                            progress=False))
    shown = at.dataframe[0].value
    assert np.allclose(shown["kurtosis"], expected["kurtosis"]) and np.allclose(shown["n_tokens"], 4 * 8 * 48)
    at.selectbox(key="outlier_metric").set_value("signal_propagation").run()
    assert titles(at)[0].startswith("signal_propagation by layer")
    assert charts(at)[0]["layout"]["yaxis"]["type"] == "linear"
    at.selectbox(key="outlier_metric").set_value("kurtosis").run()
    axis = charts(at)[0]["layout"]["yaxis"]
    assert (axis["type"], axis["tickformat"], axis["dtick"]) == ("log", "~g", "D2")  # ticks read 20, 50, not "2 5"
    assert {t["mode"] for t in charts(at)[0]["data"]} == {"markers"}  # two layers: points, no line between them
    at.selectbox(key="outlier_metric").set_value("signal_propagation").run()
    at.selectbox(key="outlier_layer").set_value(1).run()
    at.selectbox(key="outlier_site").set_value("k").run()
    assert titles(at)[1] == "per-neuron RMS of k, layer 1"
    top = titles(at)[2]
    dimension = next(n for n in at.number_input if n.key.startswith("writes_neuron-"))
    dimension.set_value(3).run()
    assert_ok(at)
    assert titles(at)[2] == "direct writes to dimension 3 of resid_post, layer 1" != top
    dimension.set_value(64).run()
    assert "neuron must be an int in [0, 63]" in errors(at)
    dimension.set_value(3).run()
    at.selectbox(key="state_value").set_value("effective_rank").run()
    at.selectbox(key="state_layer").set_value(1).run()
    assert_ok(at)
    assert titles(at)[3].startswith("effective rank over position") and len(charts(at)[3]["data"]) == 2  # two heads
    assert charts(at)[3]["layout"]["yaxis"]["title"]["text"] == "effective rank"  # the selector's name
    at.radio(key="outlier_stream_source").set_value("The sidebar's sequence").run()
    assert_ok(at)
    assert "the mqar sample, seed 0 (48 tokens)" in titles(at)[0] and at.dataframe[0].value["n_tokens"].eq(48).all()
    at.multiselect(key="outlier_sites").set_value([]).run()
    assert "no hook site chosen" in errors(at)


def strict_recitation(at: AppTest) -> list[str]:
    return [m.value for m in at.metric if m.label == "Strict recitation"]


def test_kfac_page_on_the_canary_checkpoint_forgets_what_svd_keeps():
    at = open_app()
    at.sidebar.selectbox(key="checkpoint").set_value("canaries-delta").run()
    # every position of a canary stream is scored: next-token accuracy, not recall, and no key/value markers
    assert_ok(at)
    label = next(m.label for m in at.metric if "accuracy" in m.label)
    assert label.startswith("Next-token accuracy on the ") and label.endswith(" scored positions (★ rows)")
    assert [t["name"] for t in charts(at)[0]["data"]] == ["p(next token)", "scored ★"]
    at.switch_page("app_pages/kfac.py").run()
    assert_ok(at)
    assert not at.info and at.radio(key="kfac_recite").value == "The task's canaries"
    assert titles(at) == ["K-FAC curvature of 4 layer(s), ρ = 0.9", "strict_acc by repetitions"]
    # docs/kfac.md: at ρ = 0.9 the K-FAC edit stops most recitation, SVD truncation keeps all of it
    assert strict_recitation(at) == ["44%", "12%", "44%"]
    recitation = [m for m in at.metric if m.label == "Strict recitation"]
    assert [m.delta for m in recitation] == ["", "-32 pp", ""]  # SVD recites as much as before: no arrow
    assert recitation[1].proto.color == Metric.MetricColor.GREEN  # less recitation: the edit's aim
    at.number_input(key="kfac_rho").set_value(0.8).run()
    assert strict_recitation(at) == ["44%", "0%", "19%"] and "ρ = 0.8" in titles(at)[0]
    svd = at.dataframe[0].value.iloc[2].to_dict()
    at.radio(key="kfac_budget").set_value("rank").run()
    assert at.dataframe[0].value.iloc[2].to_dict() != svd and (at.dataframe[1].value.method == "svd_rank").sum() == 4
    at.selectbox(key="kfac_metric").set_value("mean_norm_distance").run()
    assert titles(at)[1] == "mean_norm_distance by repetitions"
    canaries = at.dataframe[2].value  # the per-sequence table
    assert len(canaries) == 3 * 16
    at.radio(key="kfac_recite").set_value("Sequences you type").run()
    from workbench.tasks import task_from_dict

    most_repeated = task_from_dict(at.session_state["selection"][0].task).canaries()[-1].tolist()
    typed = next(t for t in at.text_area if t.key.startswith("kfac_typed-"))
    typed.set_value(" ".join(map(str, most_repeated)) + "\n" + " ".join(["5"] * 30)).run()
    assert_ok(at)
    assert titles(at)[1] == "mean_norm_distance by sequence" and strict_recitation(at)[0] == "50%"
    assert [b.label for b in at.get("download_button")] == ["config.json", "model.safetensors"]


def test_kfac_bad_choices_show_an_error_and_the_page_recovers():
    at = open_app("kfac")
    for widget, bad, message in [("kfac_rho", 0.0, "ρ must be in (0, 1]"), ("kfac_rho", 1.5, "ρ must be in (0, 1]"),
                                 ("kfac_layers", [], "no layer chosen"),
                                 ("kfac_kinds", [], "no kind of linear layer chosen"),
                                 ("kfac_kinds", ["mlp_gate"], "has no ['MLP W_gate'] in layer(s) [0, 1]")]:
        element = at.number_input(key=widget) if widget == "kfac_rho" else at.multiselect(key=widget)
        good = element.value
        element.set_value(bad).run()
        assert message in errors(at), widget
        assert not at.get("plotly_chart") or widget == "kfac_rho"
        element.set_value(good).run()
        assert_ok(at)
    at.radio(key="kfac_recite").set_value("Sequences you type").run()
    typed = next(t for t in at.text_area if t.key.startswith("kfac_typed-"))
    typed.set_value("  \n").run()
    assert "no sequences to recite" in errors(at)
    typed.set_value("1 2 3\n4 x").run()
    assert "line 2: entry 1 ('x') is not a token id" in errors(at)
    typed.set_value("1 2 3 4 5 6").run()
    assert_ok(at)
    prefix = next(n for n in at.number_input if n.key.startswith("kfac_prefix-"))
    prefix.set_value(6).run()
    assert "prefix + suffix = 10 tokens, but the sequences to recite have 6" in errors(at)


# ---------------------------------------------------------------------- bad input: a message, never a traceback
@pytest.mark.parametrize("text, message", [
    ("", "the sequence is empty"),
    ("1 x 3", "is not a token id"),
    (" ".join(["1"] * 49), "longer than the model's n_ctx = 48"),
    ("1 64 2", "token id 64 is outside the vocabulary [0, 63]"),
])
def test_bad_typed_sequences_show_an_error_and_the_app_recovers(text, message):
    at = open_app("fast_weights")
    at.sidebar.radio(key="sequence_source").set_value("Type token ids").run()
    typed = next(t for t in at.sidebar.text_area if t.key.startswith("typed-"))
    typed.set_value(text).run()
    assert message in errors(at)
    assert not at.get("plotly_chart") and "no usable model and sequence" in at.warning[0].value
    typed.set_value("1 40 2 41 1").run()  # fixed: the page works again
    assert_ok(at)
    assert len(charts(at)) == 5


def test_bad_task_settings_show_an_error():
    at = open_app()
    task = next(t for t in at.sidebar.text_area if t.key.startswith("task-"))
    task.set_value('{"name": "mqar", "seq_len": 47}').run()
    assert "seq_len must be even" in errors(at)
    task.set_value("{not json").run()
    assert "not valid JSON" in errors(at)
    task.set_value('{"name": "mqar", "num_kv_pair": 3}').run()  # the known fields are listed
    assert ("unknown MQAR keys ['num_kv_pair']; known keys are ['num_kv_pairs', 'power_a', 'random_non_queries', "
            "'seq_len', 'vocab_size']") in errors(at)
    # Markdown would read the underscores and brackets (MQAR.__init__() showed as MQAR.**init**()): escaped
    assert "\\['num\\_kv\\_pair'\\]" in at.error[0].value


def test_uploads_good_and_bad():
    at = open_app()
    at.sidebar.radio(key="model_source").set_value("Upload a checkpoint").run()
    assert "upload both files" in errors(at)
    at.sidebar.file_uploader(key="upload_config").set_value(("config.json", b"hello", "application/json"))
    at.sidebar.file_uploader(key="upload_weights").set_value(("model.safetensors", b"not weights", "application/octet-stream"))
    at.run()
    assert "config.json: not valid JSON" in errors(at)
    wrong = json.dumps({**json.loads(CONFIG_TEXT), "n_layer": 2}).encode()
    at.sidebar.file_uploader(key="upload_config").set_value(("config.json", wrong, "application/json")).run()
    assert "unknown ModelConfig keys ['n_layer']" in errors(at)
    at.sidebar.file_uploader(key="upload_config").set_value(("config.json", CONFIG_TEXT.encode(), "application/json")).run()
    assert "model.safetensors is not a readable safetensors file" in errors(at)
    at.sidebar.file_uploader(key="upload_weights").set_value(("model.safetensors", WEIGHTS, "application/octet-stream")).run()
    assert_ok(at)
    assert "upload: config.json + model.safetensors" in at.sidebar.caption[0].value
    assert metric(at, "Recall accuracy") == "100%"  # the same weights as the shipped checkpoint
    at.switch_page("app_pages/fast_weights.py").run()
    assert_ok(at)
    assert len(charts(at)) == 5


def test_fresh_configs_good_and_bad():
    at = open_app()
    at.sidebar.radio(key="model_source").set_value("Fresh model (random init)").run()
    assert_ok(at)
    assert "fresh Gated DeltaNet model" in at.sidebar.caption[0].value
    for page in PAGES[1:]:  # a model with no recipe: the sidebar samples an MQAR sized to it
        at.switch_page(f"app_pages/{page}.py").run()
        assert_ok(at)
    cfg = json.loads(at.sidebar.text_area(key="fresh_config").value)
    at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**cfg, "n_layer": 3})).run()
    assert "unknown ModelConfig keys ['n_layer']" in errors(at) and "n\\_layer" in at.error[0].value
    at.sidebar.text_area(key="fresh_config").set_value("{not json").run()
    assert errors(at).startswith("the model config is not valid JSON: ") and "not valid: not valid" not in errors(at)
    at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**cfg, "d_mlp": 10**6})).run()
    assert "the app builds models up to" in errors(at)
    at.switch_page("app_pages/editing.py").run()
    at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**cfg, "mixer": "softmax"})).run()
    assert_ok(at)
    assert "keep no fast-weight matrix" in at.info[0].value  # the fast-weight page explains, does not fail
    at.switch_page("app_pages/outliers.py").run()
    assert_ok(at)
    assert "keep no fast-weight state" in at.info[0].value and len(charts(at)) == 3
    at.switch_page("app_pages/kfac.py").run()
    assert_ok(at)
    assert "no record of its training" in at.info[0].value
    at.multiselect(key="kfac_kinds").set_value(["beta"]).run()  # softmax attention has no β
    assert "has no ['W_beta (β)']" in errors(at)
    at.switch_page("app_pages/attention.py").run()
    assert_ok(at)


# ---------------------------------------------------------------------- sessions never see each other's edits
def test_the_shared_model_is_never_changed_by_a_session():
    from workbench.app_support import caching, sources

    alice, bob = open_app("editing"), open_app("overview")
    table = bob.dataframe[0].value
    alice.radio(key="action").set_value("Wipe the memory (W_t = 0)").run()
    alice.selectbox(key="head").set_value(None).run()
    alice.radio(key="mode").set_value("carry").run()
    assert_ok(alice)
    bob.run()
    assert bob.dataframe[0].value.equals(table)
    lm = caching.shipped_model("toy-delta", sources.checkpoint_stamp("toy-delta"))
    fresh = open_model()
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in lm.model.state_dict().items())
    assert all(not hp._forward_hooks for hp in lm.model.hook_dict.values())
    assert all(block.attn.state_request is None for block in lm.model.blocks)


def test_a_kfac_edit_lives_only_in_its_own_session():
    from workbench.app_support import caching, sources

    alice, bob = open_app("kfac"), open_app("kfac")
    for at in (alice, bob):
        at.toggle(key="kfac_anyway").set_value(True).run()
    perplexities = [m.value for m in bob.metric if m.label == "Held-out perplexity"]
    alice.number_input(key="kfac_rho").set_value(0.5).run()
    assert_ok(alice)
    bob.run()
    assert [m.value for m in bob.metric if m.label == "Held-out perplexity"] == perplexities
    rhos = lambda at: sorted(key[2] for key in at.session_state["per_session:kfac_edits"])  # noqa: E731
    assert rhos(alice) == [0.5, 0.9] and rhos(bob) == [0.9]  # Bob's session never holds Alice's edit
    lm = caching.shipped_model("toy-delta", sources.checkpoint_stamp("toy-delta"))
    fresh = open_model()
    assert all(torch.equal(v, fresh.state_dict()[k]) for k, v in lm.model.state_dict().items())
    assert all(not hp._forward_hooks for hp in lm.model.hook_dict.values())
    _, edited = next(v for k, v in alice.session_state["per_session:kfac_edits"].items() if k[2] == 0.5)
    assert edited["K-FAC"] is not lm.model
    assert not torch.equal(edited["K-FAC"].blocks[0].mlp.W_in, lm.model.blocks[0].mlp.W_in)
