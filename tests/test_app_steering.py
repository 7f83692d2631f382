"""The Steering page under Streamlit's AppTest (on the bundled checkpoint and a fresh softmax model) and its logic
(workbench.app_support.steering) without Streamlit: residual and state steering side by side, the strength sweep,
both direction sources, and bad input as a message, never an exception."""

from __future__ import annotations

import pytest
import torch
from streamlit.testing.v1 import AppTest

from workbench import HookedFastWeightLM, ModelConfig
from workbench.analysis import caa_vector, residual_steering
from workbench.app_support import steering
from workbench.app_support.launch import APP_SCRIPT

MQAR = {"name": "mqar", "vocab_size": 20, "seq_len": 12, "num_kv_pairs": 2}


def open_steering() -> AppTest:
    at = AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()
    at.switch_page("app_pages/steering.py").run()
    return at


def assert_ok(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def tops(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_contrastive_prompts_and_directions_without_streamlit():
    model = HookedFastWeightLM(ModelConfig(d_vocab=20, d_model=16, n_heads=2, d_head=8, d_mlp=16, n_ctx=24,
                                           mixer="delta", init_std=0.3)).eval()
    pos, neg = steering.contrastive_prompts(model.cfg, MQAR, 5, 3, 7, 9)
    assert pos.shape == neg.shape == (5, 12) and (pos[:, -1] == 7).all() and (neg[:, -1] == 9).all()
    assert torch.equal(pos[:, :-1], neg[:, :-1])
    dirs = steering.directions(model, 1, steering.SOURCES[0], MQAR, 5, 3, 7, 9)
    assert torch.allclose(dirs.residual, caa_vector(model, pos, neg, 1)) and dirs.state.shape == (2, 8, 8)
    seq = pos[0].tolist()
    table = steering.next_token_table(model, seq, 1, dirs, [11], 0.0, "readout")
    assert list(table.columns) == ["token", "clean", "residual", "state"]
    assert (table.clean == table.residual).all() and (table.clean == table.state).all()
    table = steering.next_token_table(model, seq, 1, dirs, [11], 6.0, "carry")
    with residual_steering(model, 1, dirs.residual, 6.0, positions=[11]):
        p = model(torch.tensor([seq]))[0, -1].double().softmax(-1)
    assert table.residual.tolist() == pytest.approx([float(p[t].detach()) for t in table.token], rel=1e-9)
    for bad, message in (((7, 7), "the same"), ((7, 20), "token B must be")):
        with pytest.raises(ValueError, match=message):
            steering.contrastive_prompts(model.cfg, MQAR, 5, 3, *bad)
    unemb = steering.directions(model, 1, steering.SOURCES[1], None, token_a=4)
    assert unemb.state is None and "residual stream" in unemb.state_note


@pytest.mark.integration
def test_the_steering_page_shows_residual_and_state_side_by_side_and_sweeps():
    at = open_steering()
    assert_ok(at)
    assert list(tops(at)) == ["Top next token (clean)", "Top next token (residual)", "Top next token (state)"]
    assert len(at.get("plotly_chart")) == 1 and "16 task prompts ending in" in at.caption[0].value
    at.slider(key="steer_strength").set_value(0.0).run()
    assert_ok(at)
    shown = tops(at)
    assert len(set(shown.values())) == 1  # strength 0: every run predicts what the clean run does
    table = at.dataframe[0].value
    assert (table["clean"] == table["residual"]).all() and (table["clean"] == table["state"]).all()
    at.slider(key="steer_strength").set_value(8.0).run()
    at.radio(key="steer_mode").set_value("carry").run()
    at.toggle(key="steer_sweep").set_value(True).run()
    assert_ok(at)
    assert len(at.get("plotly_chart")) == 2
    sweep = at.dataframe[1].value
    assert sweep["steering"].tolist() == ["residual"] * 5 + ["state"] * 5
    assert sweep["strength"].tolist()[:5] == [-8.0, -4.0, 0.0, 4.0, 8.0]
    assert (sweep[sweep.strength == 0]["effect"] == 0).all()
    at.radio(key="steer_source").set_value(steering.SOURCES[1]).run()
    assert_ok(at)
    assert "State steering does not apply here" in at.info[0].value and len(tops(at)) == 2


@pytest.mark.integration
def test_bad_choices_show_a_message_and_a_model_without_fast_weights_steers_the_residual_only():
    at = open_steering()
    at.number_input(key="steer_token_b").set_value(int(at.number_input(key="steer_token_a").value)).run()
    assert not at.exception and "the same" in at.error[0].value
    at.number_input(key="steer_token_b").set_value(0).run()
    at.multiselect(key="steer_positions").set_value([]).run()
    assert not at.exception and "at least one position" in at.info[0].value
    at.radio(key="model_source").set_value("Fresh model (random init)").run()
    at.selectbox(key="fresh_mixer").set_value("softmax").run()
    at.switch_page("app_pages/steering.py").run()
    at.multiselect(key="steer_positions").set_value([3]).run()  # the empty choice above stays until changed
    assert_ok(at)
    assert "softmax" in at.sidebar.caption[0].value
    assert "layer 0 (softmax attention) keeps no fast-weight state to steer" in at.info[0].value
    assert list(tops(at)) == ["Top next token (clean)", "Top next token (residual)"]
