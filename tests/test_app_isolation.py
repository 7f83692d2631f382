"""Sessions of the app never see each other, and the server's caches stay bounded however many models are opened.

Two AppTest sessions run the installed app in this process, as two browser tabs share one server: one changes
every page's controls, uploads another checkpoint and edits with K-FAC; the other's pages show exactly what they
showed before, and its state holds nothing of the first. Then one session opens more fresh models and uploads
than the caches hold, and the models left alive are counted.
"""

from __future__ import annotations

import ast
import gc
import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.app_support import caching, sources
from workbench.app_support.launch import APP_SCRIPT
from workbench.model import HookedFastWeightLM
from workbench.paths import CHECKPOINTS_DIR, DEFAULT_CHECKPOINT, PACKAGE_DIR

PAGES = ["overview", "attention", "fast_weights", "recall_probe", "editing", "outliers", "kfac", "dictionaries"]
APP_DIRS = [PACKAGE_DIR / "app_support", PACKAGE_DIR / "streamlit_app"]
OTHER = CHECKPOINTS_DIR / "toy-fwm"  # what the other session uploads


def open_app() -> AppTest:
    return AppTest.from_file(str(APP_SCRIPT), default_timeout=300).run()


def visit(at: AppTest, page: str) -> AppTest:
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> dict:
    """Everything a page shows that depends on the model and the controls."""
    return {"charts": [el.proto.spec for el in at.get("plotly_chart")],
            "tables": [df.value.to_json() for df in at.dataframe],
            "metrics": [(m.label, m.value, m.delta) for m in at.metric],
            "text": [e.value for kind in ("caption", "markdown", "info", "warning", "error") for e in at.get(kind)],
            "sidebar": [c.value for c in at.sidebar.caption]}


def upload(at: AppTest, checkpoint: Path, config: bytes = b"") -> AppTest:
    at.sidebar.radio(key="model_source").set_value("Upload a checkpoint").run()
    at.sidebar.file_uploader(key="upload_config").set_value(
        ("config.json", config or (checkpoint / "config.json").read_bytes(), "application/json"))
    at.sidebar.file_uploader(key="upload_weights").set_value(
        ("model.safetensors", (checkpoint / "model.safetensors").read_bytes(), "application/octet-stream"))
    return at.run()


CHANGES = {  # page: one change of each of its controls that alters what it shows (widget kind, key, value)
    "overview": [("number_input", "seed", 7)],
    "attention": [("toggle", "magnitude", True)],
    "fast_weights": [("selectbox", "head", 1), ("slider", "position-48", 30), ("toggle", "clip", True)],
    "recall_probe": [("selectbox", "metric", "retrieval_error"), ("selectbox", "by", "n_stored")],
    "editing": [("radio", "action", "Wipe the memory (W_t = 0)"), ("radio", "mode", "readout")],
    "outliers": [("selectbox", "outlier_metric", "max_median_ratio"), ("radio", "writes_value", "mean_abs")],
    "kfac": [("toggle", "kfac_anyway", True)],  # compares the K-FAC and SVD edits: edited models, in her session
    "dictionaries": [("number_input", "dict_steps", 20), ("selectbox", "dict_head", 1)],  # her own dictionaries
}


@pytest.mark.integration
def test_no_page_shows_one_sessions_choices_edits_or_uploads_to_another():
    alice, bob = open_app(), open_app()
    before = {page: shown(visit(bob, page)) for page in PAGES}
    assert "toy-delta" in before["overview"]["sidebar"][0]

    for page in PAGES:  # Alice changes every control listed on every page, each change visible to her
        visit(alice, page)
        for kind, key, value in CHANGES[page]:
            start = shown(alice)
            getattr(alice, kind)(key=key).set_value(value).run()
            assert not alice.exception and not alice.error, (page, key, [e.value for e in alice.error])
            assert shown(alice) != start, f"changing {key} on {page} changed nothing: the check would be empty"
    kfac_edits = dict(alice.session_state["per_session:kfac_edits"])
    assert kfac_edits  # Alice holds a K-FAC-edited model
    her_dictionaries = dict(alice.session_state["per_session:dictionaries"])
    assert len(her_dictionaries) == 3  # the default one, then 20 steps, then head 1
    visit(alice, "overview")
    upload(alice, OTHER)
    assert "upload: config.json" in alice.sidebar.caption[0].value and not alice.error
    for page in PAGES[:5]:  # her pages on her upload (not the K-FAC collection: edits are checked above)
        visit(alice, page)

    for page in PAGES:  # Bob's pages show what they showed before Alice did anything
        assert shown(visit(bob, page)) == before[page], page
    # ... and his session holds nothing of hers: not her model, her edits, her uploaded files or her choices
    bob_state = {k: bob.session_state[k] for k in bob.session_state}
    lm, _ = bob_state["selection"]
    assert lm.key.startswith("shipped:toy-delta") and bob_state.get("seed", 0) == 0
    assert not any(key[0].startswith("upload:") for key in bob_state.get("per_session:kfac_edits", {}))
    assert all(not (isinstance(v, sources.LoadedModel) and v.key.startswith("upload:")) for v in bob_state.values())
    for edited in kfac_edits.values():
        assert all(edited is not v for v in bob_state.values())
    bob_dictionaries = bob_state["per_session:dictionaries"]
    assert [(key[2].head, key[3].steps) for key in bob_dictionaries] == [(0, 200)]  # only his default one
    assert len(set(her_dictionaries) - set(bob_dictionaries)) == 2
    assert all(d is not mine for d in her_dictionaries.values() for mine in bob_dictionaries.values())
    assert "upload_config" not in bob_state or bob_state["upload_config"] is None


@pytest.mark.integration
def test_opening_many_models_and_uploads_keeps_a_bounded_number_alive():
    at = open_app()  # on the shipped checkpoint: counted as there before
    gc.collect()
    before = {id(m) for m in gc.get_objects() if issubclass(type(m), HookedFastWeightLM)}
    at.sidebar.radio(key="model_source").set_value("Fresh model (random init)").run()
    config = json.loads(at.sidebar.text_area(key="fresh_config").value)
    opened = set()
    for seed in range(10):  # ten distinct fresh models...
        at.sidebar.text_area(key="fresh_config").set_value(json.dumps({**config, "seed": seed})).run()
        assert not at.error, [e.value for e in at.error]
        opened.add(at.session_state["selection"][0].key)
    text = (DEFAULT_CHECKPOINT / "config.json").read_text()
    for n in range(8):  # ... and eight distinct uploads (the same weights, configs that differ in their bytes)
        upload(at, DEFAULT_CHECKPOINT, (text + " " * n).encode())
        assert not at.error, [e.value for e in at.error]
        opened.add(at.session_state["selection"][0].key)
    assert len(opened) == 18
    gc.collect()
    alive = [m for m in gc.get_objects() if issubclass(type(m), HookedFastWeightLM) and id(m) not in before]
    # the fresh and upload caches hold 4 each (max_entries); the session holds its current model among them
    assert 4 <= len(alive) <= 8, f"{len(alive)} of the 18 models opened are still alive"
    assert caching.MODEL_TTL <= 3600


def module_level_containers(path: Path) -> list[tuple[str, int]]:
    """Names bound at module level to a dict, list or set (a literal, a comprehension or a call of the type)."""
    out = []
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            value = node.value
            container = isinstance(value, (ast.Dict, ast.List, ast.Set, ast.DictComp, ast.ListComp, ast.SetComp)) or (
                isinstance(value, ast.Call) and isinstance(value.func, ast.Name)
                and value.func.id in ("dict", "list", "set", "OrderedDict", "defaultdict"))
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [(t.id, node.lineno) for t in targets if container and isinstance(t, ast.Name)]
    return out


def test_every_app_cache_is_bounded_and_no_module_state_grows():
    """The audit, kept: every st.cache_data / st.cache_resource in the app has max_entries, every lru_cache a
    maxsize; a module-level dict, list or set of workbench.app_support is a constant (an UPPER_CASE name nothing
    mutates)."""
    files = [f for d in APP_DIRS for f in d.rglob("*.py")]
    caches = 0
    for f in files:
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                name = node.func.attr
                keywords = {k.arg for k in node.keywords}
                if name in ("cache_data", "cache_resource"):
                    caches += 1
                    assert "max_entries" in keywords, f"{f.name}:{node.lineno}: st.{name} without max_entries"
                if name == "lru_cache":
                    assert "maxsize" in keywords or node.args, f"{f.name}:{node.lineno}: lru_cache without maxsize"
            if isinstance(node, ast.Attribute) and node.attr == "cache" and isinstance(node.value, ast.Name) \
                    and node.value.id == "functools":
                pytest.fail(f"{f.name}:{node.lineno}: functools.cache is unbounded")
        if PACKAGE_DIR / "streamlit_app" in f.parents:
            continue  # page scripts: Streamlit runs each afresh, in a new namespace, on every run of the page
        for name, line in module_level_containers(f):
            assert name.isupper() or name.lstrip("_").isupper(), f"{f.name}:{line}: module-level {name} is mutable state"
            for other in files:  # nothing assigns into it or calls a mutating method on it
                for node in ast.walk(ast.parse(other.read_text())):
                    mutated = (isinstance(node, (ast.Assign, ast.AugAssign, ast.Delete)) and any(
                        isinstance(t, ast.Subscript) and isinstance(t.value, ast.Name) and t.value.id == name
                        for t in (node.targets if not isinstance(node, ast.AugAssign) else [node.target]))) or (
                        isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                        and isinstance(node.func.value, ast.Name) and node.func.value.id == name
                        and node.func.attr in ("append", "add", "update", "setdefault", "pop", "extend", "insert",
                                               "clear", "popitem", "remove", "discard"))
                    assert not mutated, f"{other.name}:{node.lineno} mutates the module-level {name} of {f.name}"
    assert caches >= 15  # the audit saw the caches (caching.py holds them)


@pytest.mark.integration
def test_an_upload_over_the_limit_is_refused_in_the_sidebar(monkeypatch):
    """Where Streamlit's server.maxUploadSize is not set (AppTest, a plain `streamlit run`), the app's own check
    refuses the file with a message; the sidebar then takes a file that fits."""
    weights = (DEFAULT_CHECKPOINT / "model.safetensors").stat().st_size
    monkeypatch.setitem(sources.MAX_UPLOAD_BYTES, "model.safetensors", weights - 1)
    at = upload(open_app(), DEFAULT_CHECKPOINT)
    assert not at.exception
    assert any("the uploaded model.safetensors ('model.safetensors') is 0.3 MB; the app reads at most" in e.value
               .replace("\\", "") for e in at.sidebar.error), [e.value for e in at.sidebar.error]
    assert at.session_state["selection"] is None
    monkeypatch.setitem(sources.MAX_UPLOAD_BYTES, "model.safetensors", weights)
    at.run()
    assert not at.error and at.session_state["selection"][0].key.startswith("upload:")
