"""scripts/srwm_sweep.py: each setting changes one thing from the toy-srwm recipe, and a tiny sweep writes its rows."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("srwm_sweep", ROOT / "scripts" / "srwm_sweep.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_base_setting_is_the_bundled_recipe_and_a_tiny_sweep_writes_its_rows(tmp_path, monkeypatch):
    from workbench.training.recipes import RECIPES

    script = load_script()
    runs = []
    real = script.train_run
    monkeypatch.setattr(script, "train_run", lambda run, *a, **k: (runs.append(run), real(run, *a, **k))[1])
    out = tmp_path / "sweep.json"
    script.main(["--out", str(out), "--steps", "2", "--only", "base", "2 × 32"])
    rows = json.loads(out.read_text())["rows"]
    assert [r["setting"] for r in rows] == ["base", "2 × 32"] and all(0 <= r["eval_acc"] <= 1 for r in rows)
    bundled = RECIPES["toy-srwm"].model
    assert runs[0].model.to_dict() == bundled.to_dict()  # the base is toy-srwm's model, only shorter training
    assert (runs[1].model.n_heads, runs[1].model.d_head) == (2, 32)


def test_the_readme_shows_the_committed_sweep_with_its_command():
    results = json.loads((ROOT / "docs" / "srwm_sweep_results.json").read_text())
    readme = (ROOT / "README.md").read_text()
    assert load_script().markdown(results["rows"]) in readme
    assert results["command"] in readme and f"{results['wall_seconds'] / 60:.1f} min wall" in readme
    assert [r["setting"] for r in results["rows"]] == list(load_script().SETTINGS)  # the whole sweep, in order
