"""The Overview page's Lenses expander (AppTest): the logit lens by layer along the sidebar's sequence, then a tuned
lens trained on the task's batches beside it, with the numbers of workbench.analysis.lenses."""

from __future__ import annotations

import pytest
import torch

from test_app import assert_ok, charts, open_app, open_model
from workbench.analysis.lenses import lens_table

pytestmark = pytest.mark.integration


def lens_chart(at) -> dict:
    return next(c for c in charts(at) if "by layer" in c["layout"]["title"]["text"])


def test_the_logit_lens_by_layer_then_a_tuned_lens_beside_it():
    at = open_app()
    assert_ok(at)
    chart = lens_chart(at)
    assert [t["name"] for t in chart["data"]] == ["logit lens"]
    table = at.dataframe[1].value
    tokens = torch.tensor([at.session_state["selection"][1].tokens])
    expected = lens_table(open_model(), tokens)
    assert table.layer.tolist() == [0, 1, 2] and table.logit_kl.iloc[-1] == 0
    assert table.logit_kl.tolist() == pytest.approx(expected.logit_kl.tolist(), rel=1e-6)
    assert chart["data"][0]["y"] == pytest.approx(table.logit_kl.tolist())

    at.toggle(key="lens_tuned").set_value(True).run()
    at.number_input(key="lens_steps").set_value(30).run()
    assert_ok(at)
    assert [t["name"] for t in lens_chart(at)["data"]] == ["logit lens", "tuned lens"]
    table = at.dataframe[1].value
    assert table.tuned_kl.iloc[0] < table.logit_kl.iloc[0] and table.tuned_kl.iloc[-1] == 0
    at.radio(key="lens_metric").set_value("ppl").run()
    assert lens_chart(at)["layout"]["yaxis"]["type"] == "log"


def test_the_sidebar_sequence_as_the_training_stream():
    at = open_app()
    at.toggle(key="lens_tuned").set_value(True).run()
    at.radio(key="lens_stream_source").set_value("The sidebar's sequence").run()
    at.number_input(key="lens_steps").set_value(5).run()
    assert_ok(at)
    assert "tuned_kl" in at.dataframe[1].value.columns


def test_one_typed_token_gets_a_note_not_an_error():
    at = open_app()
    at.sidebar.radio(key="sequence_source").set_value("Type token ids").run()
    next(t for t in at.sidebar.text_area if t.key.startswith("typed-")).set_value("5").run()
    assert_ok(at)
    assert any("at least two tokens" in i.value for i in at.info)
