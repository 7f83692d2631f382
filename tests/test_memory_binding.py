"""scripts/memory_binding.py: each model setting is its recipe's model with one change, the bare SRWM layer feeds
its inputs as said, a tiny run writes its rows, and the README shows every committed run with its command."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    sys.path.insert(0, str(ROOT / "scripts"))
    spec = importlib.util.spec_from_file_location("memory_binding", ROOT / "scripts" / "memory_binding.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_bare_srwm_reads_the_previous_token_only_through_its_input_map():
    script = load_script()
    tokens = script.TASK.sample(2, torch.Generator().manual_seed(0)).tokens
    for inputs in ("pair", "conv"):
        model = script.BareSRWM(inputs)
        out = model(tokens)
        assert out.shape == (*tokens.shape, script.TASK.d_vocab)
        changed = tokens.clone()
        changed[:, 5] = (changed[:, 5] + 1) % script.TASK.d_vocab
        diff = (model(changed) - out).abs().amax(dim=(0, 2))
        assert float(diff[:5].max()) == 0 and float(diff[5]) > 0  # causal, and position 5 reads its own token
        assert float(diff[6]) > 0  # position 6 reads it as its previous token (and through the memory)


def test_a_tiny_run_writes_its_rows(tmp_path):
    out = tmp_path / "b.json"
    only = ["fwm: no skip, 2 hops", "bare srwm: [prev; cur]"]
    load_script().main(["--out", str(out), "--steps", "2", "--only", *only])
    result = json.loads(out.read_text())
    assert [r["setting"] for r in result["rows"]] == only
    assert all(0 <= r["eval_acc"] <= 1 for r in result["rows"]) and '"fwm: no skip, 2 hops"' in result["command"]
    with pytest.raises(SystemExit):
        load_script().main(["--out", str(out), "--steps", "0"])


def test_the_new_fwm_setting_is_the_bundled_recipes_mixer():
    from workbench.training.recipes import RECIPES

    script = load_script()
    assert "the new toy-fwm" in script.SETTINGS["fwm: no skip, 2 hops"][0]
    assert RECIPES["toy-fwm"].model.mixer.n_reads == 2 and RECIPES["toy-fwm"].model.mixer.residual is False


COMMITTED = sorted((ROOT / "docs").glob("memory_binding*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_the_readme_shows_the_committed_run_with_its_command(path):
    results = json.loads(path.read_text())
    readme = (ROOT / "README.md").read_text()
    assert load_script().markdown(results["rows"], results["copy_baseline"]) in readme
    assert results["command"] in readme
