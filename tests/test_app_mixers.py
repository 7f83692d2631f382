"""Every registered mixer in the app: a fresh model of each kind opens on every page with a clear message
where a view does not apply (never an exception or an error box), and the Fast weights page draws any
state, a third-order one slice by slice."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from workbench.app_support.launch import APP_SCRIPT
from workbench.mixers import names

PAGES = ["overview", "attention", "fast_weights", "recall_probe", "editing", "outliers", "information_flow",
         "dictionaries"]


def fresh(kind: str) -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=180).run()
    at.sidebar.radio(key="model_source").set_value("Fresh model (random init)").run()
    at.sidebar.selectbox(key="fresh_mixer").set_value(kind).run()
    cfg = json.loads(at.sidebar.text_area(key="fresh_config").value)  # a shorter model keeps the test quick
    at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**cfg, "n_ctx": 32, "d_model": 32})).run()
    return at


@pytest.mark.integration
@pytest.mark.parametrize("kind", names())
def test_every_page_opens_on_a_fresh_model_of_every_mixer(kind):
    at = fresh(kind)
    for page in PAGES:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (kind, page, [e.value for e in at.exception])
        assert not at.error, (kind, page, [e.value for e in at.error])


@pytest.mark.integration
def test_a_third_order_state_is_drawn_slice_by_slice():
    kinds = [k for k in names(fast_weights=True) if k == "fwm"]
    if not kinds:
        pytest.skip("no mixer with a third-order state is registered")
    at = fresh(kinds[0])
    at.switch_page("app_pages/fast_weights.py").run()
    assert not at.exception and not at.error
    axis = at.selectbox(key="slice_axis")
    assert axis.options == ["d_s", "d_r", "d_t"]
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert spec["layout"]["xaxis"]["title"]["text"] == "d_t" and spec["layout"]["yaxis"]["title"]["text"] == "d_r"
    axis.set_value(2).run()  # fix d_t: the matrices are d_s × d_r
    spec = json.loads(at.get("plotly_chart")[0].proto.spec)
    assert not at.exception and spec["layout"]["xaxis"]["title"]["text"] == "d_r"


NEW_MEMORIES = ["toy-rec-delta", "toy-delta-rnn", "toy-delta-lstm", "toy-fwm", "toy-srwm"]  # bundled, trained


@pytest.mark.integration
@pytest.mark.parametrize("name", NEW_MEMORIES)
def test_every_page_opens_on_the_bundled_checkpoint_of_each_new_memory(name):
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=180).run()
    at.sidebar.selectbox(key="checkpoint").set_value(name).run()
    assert name in at.sidebar.caption[0].value and "48 tokens" in at.sidebar.caption[1].value
    assert any(m.label.startswith("Recall accuracy") for m in at.metric)  # the task is known from recipe.json
    for page in PAGES[1:]:
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (name, page, [e.value for e in at.exception])
        assert not at.error, (name, page, [e.value for e in at.error])
