"""The app's Information flow page under Streamlit's AppTest, on the bundled checkpoint: the patching heatmap of a
task pair (MQAR with the key a query reads changed), a cell's per-head breakdown, the other ways to give the two
inputs, attribution patching beside it, and bad input as an error message, never an exception."""

from __future__ import annotations

import json

import pytest
import torch
from streamlit.testing.v1 import AppTest

from workbench.app_support import information_flow
from workbench.app_support.launch import APP_SCRIPT
from workbench.app_support.sequences import TokenSequence

pytestmark = pytest.mark.integration  # each test drives the whole app through AppTest (seconds each)


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()
    at.switch_page("app_pages/information_flow.py").run()
    return at


def clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def all_titles(at: AppTest) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def titles(at: AppTest) -> list[str]:
    """The patching charts' titles (the path-knockout section below them is checked on its own)."""
    return [t for t in all_titles(at) if not t.startswith(KNOCKOUT_TITLES)]


KNOCKOUT_TITLES = ("Path knockout", "layer ")


def test_the_task_pair_heatmap_and_a_cells_heads():
    at = open_page()
    clean(at)
    query = next(s for s in at.selectbox if s.key and s.key.startswith("flow_query"))
    assert query.options[0].startswith("12:")  # the sidebar's MQAR sample (seed 0) has queries at 12, 14, …
    # … and opens on 14: changing the key the query at 12 reads moves its metric by 0.4, the one at 14 by 34
    assert query.value == 14
    assert "Corruption: the key at position 4 (token 20, stored with value 57" in at.caption[1].value
    metrics = {m.label: float(m.value) for m in at.metric if m.label.startswith("Metric")}
    # the bundled model recalls the value on the clean input and loses it when the key is changed
    assert metrics["Metric on the clean input"] > metrics["Metric on the corrupted input"]
    assert at.selectbox(key="flow_site").value == "state_carry"
    assert len(titles(at)) == 2 and titles(at)[0].startswith("state_carry: denoising")
    heat = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert heat["z"]["shape"] == "2, 15"  # layers × positions 0..14 (the clean input ends at the query)
    cell_box = next(s for s in at.selectbox if s.key and s.key.startswith("flow_cell"))
    assert len(cell_box.options) == 2 * 15
    pick = (cell_box.value + 1) % len(cell_box.options)
    cell_box.set_value(pick).run()
    clean(at)
    layer, position = (int(s.split()[1]) for s in cell_box.options[pick].split(", "))
    assert f"at layer {layer}, position {position}" in titles(at)[1]
    assert len(at.dataframe[0].value) == lm_heads(at)
    at.selectbox(key="flow_site").set_value("resid_pre").run()  # no head axis: said, not drawn
    clean(at)
    assert len(titles(at)) == 1 and any("no head axis" in i.value for i in at.info)
    at.checkbox(key="flow_attribution").check().run()
    clean(at)
    assert "attribution patching against activation patching" in titles(at)[1]
    agreement = next(d.value for d in at.dataframe if "site" in d.value.columns)
    assert set(agreement["site"]) == {"resid_pre", "all"}


def lm_heads(at: AppTest) -> int:
    from workbench import load
    from workbench.paths import DEFAULT_CHECKPOINT

    return load(DEFAULT_CHECKPOINT).cfg.n_heads


def test_other_inputs_and_bad_input_give_messages_not_exceptions():
    at = open_page()
    at.sidebar.radio(key="sequence_source").set_value("Type token ids").run()  # a short sequence keeps this quick
    typed = next(t for t in at.sidebar.text_area if t.key and t.key.startswith("typed-"))
    typed.set_value("1 2 3 4 5 6 7 8").run()
    clean(at)
    assert any("no query of a stored association" in i.value for i in at.info)  # typed: no task pairs
    at.radio(key="flow_inputs").set_value("Type both inputs").run()
    at.text_input(key="flow_clean").set_value("1 2 3 4 5").run()
    at.text_input(key="flow_corrupted").set_value("1 2 3 4").run()
    assert not at.exception and any("same number of tokens" in e.value for e in at.error)
    at.text_input(key="flow_corrupted").set_value("1 2 3 4 5").run()
    assert not at.exception and any("identical" in e.value for e in at.error)
    at.text_input(key="flow_corrupted").set_value("1 9 3 4 5").run()
    clean(at)
    assert "1 position(s) differ: [1]" in at.caption[1].value
    answer = next(n for n in at.number_input if n.key.startswith("flow_answer"))
    distractor = next(n for n in at.number_input if n.key.startswith("flow_distractor"))
    answer.set_value(distractor.value).run()
    assert not at.exception and any("same: their logit difference is always 0" in e.value for e in at.error)
    at.radio(key="flow_inputs").set_value("Change one token").run()
    clean(at)
    at.radio(key="flow_direction").set_value("noising").run()
    clean(at)
    assert titles(at)[0].startswith("state_carry: noising")


# ---------------------------------------------------------------------- the page's logic, without Streamlit
def test_a_task_pair_changes_the_key_the_query_reads():
    seq = TokenSequence(tokens=(5, 40, 6, 41, 7, 42, 6, 41), source="toy", scored=(6,), pairs=((0, 1), (2, 3), (4, 5)))
    assert information_flow.queries(seq) == [6]
    pair = information_flow.task_pair(seq, 6, 64)
    assert pair.clean == (5, 40, 6, 41, 7, 42, 6) and pair.changed == [2]
    assert pair.corrupted[2] not in pair.clean and pair.answer == 41 and pair.distractor == 40
    with pytest.raises(ValueError, match="not a query of an association"):
        information_flow.task_pair(seq, 4, 64)


def test_model_choice_picks_the_two_runs_top_tokens():
    from workbench import HookedFastWeightLM, ModelConfig

    model = HookedFastWeightLM(ModelConfig(d_vocab=11, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=16)).eval()
    a, b = information_flow.model_choice(model, [1, 2, 3], [1, 4, 3])
    logits = model(torch.tensor([[1, 2, 3], [1, 4, 3]]))[:, -1]
    assert a == int(logits[0].argmax()) and a != b


def test_path_knockout_heatmap_and_a_pairs_heads():
    at = open_page()
    clean(at)
    knock = [t for t in all_titles(at) if t.startswith(KNOCKOUT_TITLES)]
    assert knock[0].startswith("Path knockout: effect on the metric (layer 0, head 0,1") and len(knock) == 2
    pair_box = next(s for s in at.selectbox if s.key and s.key.startswith("flow_ko_pair"))
    n = 15  # the clean input ends at the query (position 14): every (source, target ≥ source) pair
    assert len(pair_box.options) == n * (n + 1) // 2
    table = at.dataframe[-1].value
    assert list(table["head"]) == list(range(lm_heads(at))) and table["route"].iloc[0] == "attention"
    # the pair opened on is the one whose knockout moves the metric most: the heads' table is that pair's
    source, target = (int(x) for x in pair_box.options[pair_box.value].split(" → "))
    assert f"source {source} → target {target}" in knock[1]
    at.selectbox(key="flow_ko_head").set_value(1).run()
    clean(at)
    assert "head 1" in [t for t in all_titles(at) if t.startswith("Path knockout")][0]
    at.selectbox(key="flow_ko_layer").set_value(1).run()
    clean(at)
