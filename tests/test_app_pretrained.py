"""The app opens a local model directory of another library (``workbench.from_pretrained``), encodes typed text
with the checkpoint's tokenizer and shows its token strings on the axes; a bad directory gives a message, never
an exception. The directory is a tiny random transformers Qwen3.5 (tests/hf_reference.py) with a word-level
tokenizer.json."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from test_app import assert_ok, charts, open_app

pytestmark = pytest.mark.integration


def unescaped(markdown: str) -> str:
    """An error as the user reads it: the app escapes Markdown's special characters in messages."""
    return re.sub(r"\\(.)", r"\1", markdown)


def errors(at) -> str:
    return " | ".join(unescaped(e.value) for e in at.error)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    transformers = pytest.importorskip("transformers")
    if not hasattr(transformers, "Qwen3_5TextConfig"):
        pytest.skip("this transformers version lacks Qwen3.5")
    from hf_reference import build
    from test_pretrained_hf import _write_tokenizer

    d = tmp_path_factory.mktemp("qwen") / "tiny-qwen3_5"
    build("qwen3_5_text").save_pretrained(d, safe_serialization=True)
    _write_tokenizer(d / "tokenizer.json")  # "the", " cat", " sat" are tokens 1, 2, 3
    return d


def open_directory(path: str):
    at = open_app()
    at.sidebar.radio(key="model_source").set_value("Local model directory").run()
    at.sidebar.text_input(key="model_dir").input(path).run()
    return at


def test_a_model_directory_opens_and_typed_text_labels_the_axes(model_dir):
    at = open_directory(str(model_dir))
    assert_ok(at)
    assert at.sidebar.radio(key="sequence_source_text").value == "Type text"
    text = next(t for t in at.sidebar.text_area if t.key.startswith("text-"))
    text.set_value("the cat sat sat cat").run()
    assert_ok(at)
    assert "typed text: 5 tokens" in at.sidebar.caption[1].value
    table = at.dataframe[0].value
    assert list(table["token_str"]) == ["the", " cat", " sat", " sat", " cat"]
    at.switch_page("app_pages/attention.py").run()
    assert_ok(at)
    assert list(charts(at)[0]["data"][0]["x"]) == ["0:the", "1: cat", "2: sat", "3: sat", "4: cat"]
    for page in ("fast_weights", "recall_probe", "editing"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])


def test_bad_directories_give_messages(model_dir, tmp_path):
    at = open_app()
    at.sidebar.radio(key="model_source").set_value("Local model directory").run()
    assert "type the path of a local model directory" in errors(at)
    at.sidebar.text_input(key="model_dir").input(str(tmp_path / "nowhere")).run()
    assert "does not exist" in errors(at)
    (tmp_path / "file.txt").write_text("x")
    at.sidebar.text_input(key="model_dir").input(str(tmp_path / "file.txt")).run()
    assert "is a file, not a directory" in errors(at)
    at.sidebar.text_input(key="model_dir").input(str(tmp_path)).run()
    assert "has no config.json" in errors(at)
    odd = tmp_path / "odd"
    shutil.copytree(model_dir, odd)
    (odd / "config.json").write_text(json.dumps({**json.loads((odd / "config.json").read_text()),
                                                 "model_type": "lfm2"}))
    at.sidebar.text_input(key="model_dir").input(str(odd)).run()
    assert "model_type 'lfm2'" in errors(at) and not at.exception


def test_a_directory_without_a_tokenizer_takes_token_ids(model_dir, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(model_dir, bare)
    (bare / "tokenizer.json").unlink()
    at = open_directory(str(bare))
    assert "no tokenizer.json" in at.sidebar.caption[0].value
    assert "Type text" not in at.sidebar.radio(key="sequence_source").options
    at.sidebar.radio(key="sequence_source").set_value("Type token ids").run()
    assert_ok(at)


def test_every_page_runs_on_one_branch_blocks(tmp_path):
    """A tiny Nemotron-H (Mamba-2, MLP-only, attention and expert blocks): every page opens; the layer pickers offer
    only the layers that have what the page shows."""
    pytest.importorskip("transformers")
    from hf_reference import CASES, build
    from test_pretrained_hf import _write_tokenizer

    d = tmp_path / "tiny-nemotron_h"
    build("nemotron_h", seed=list(CASES).index("nemotron_h")).save_pretrained(d, safe_serialization=True)
    _write_tokenizer(d / "tokenizer.json")
    at = open_directory(str(d))
    assert_ok(at)
    text = next(t for t in at.sidebar.text_area if t.key.startswith("text-"))
    text.set_value("the cat sat sat cat the cat").run()
    for page in ("overview", "attention", "fast_weights", "recall_probe", "editing", "outliers", "kfac"):
        at.switch_page(f"app_pages/{page}.py").run()
        assert not at.exception, (page, [e.value for e in at.exception])
        if page in ("attention", "fast_weights"):
            want = [0, 2, 4] if page == "attention" else [0, 4]  # mixer layers; fast-weight layers
            assert at.selectbox(key="layer").options == [f"layer {i}: {n}" for i, n in zip(want, (
                ["Mamba-2", "softmax attention", "Mamba-2"] if page == "attention" else ["Mamba-2", "Mamba-2"]))]


def test_the_dictionaries_page_trains_a_write_sae_on_the_imported_gated_deltanet_layers(model_dir):
    """Qwen3.5 mixes Gated DeltaNet and full-attention layers: the WriteSAE layer picker offers only the former
    (asked of each mixer) and names why the others are left out; a WriteSAE trains there and its substitution runs."""
    at = open_directory(str(model_dir))
    at.session_state["dict_steps"] = 20
    at.session_state["dict_firings"] = 4
    at.switch_page("app_pages/dictionaries.py").run()
    assert_ok(at)
    layers = at.selectbox(key="dict_layer").options
    assert layers and all("Gated DeltaNet" in name for name in layers)
    assert any("Not offered" in c.value for c in at.caption)
    at.toggle(key="dict_substitution").set_value(True).run()
    assert_ok(at)
    assert len(charts(at)) == 3
