"""scripts/recall_without_elimination.py: each memory is its bundled recipe on a task without the elimination
shortcut, the copying baseline is exact, a tiny run writes its rows, and the README shows the committed run."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


def load_script():
    spec = importlib.util.spec_from_file_location("recall_without_elimination",
                                                  ROOT / "scripts" / "recall_without_elimination.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_memory_is_its_bundled_recipe_on_the_new_task():
    from workbench.training.recipes import RECIPES

    script = load_script()
    for name in script.MEMORIES:
        run, base = script.recipe(name, 7), RECIPES[name]
        assert run.task == script.TASK and run.train.steps == 7
        assert run.model.mixer == base.model.mixer and run.model.d_vocab == script.TASK.d_vocab
        same = {k: v for k, v in run.model.to_dict().items() if k not in ("n_ctx", "d_vocab")}
        assert same == {k: v for k, v in base.model.to_dict().items() if k not in ("n_ctx", "d_vocab")}
        assert (run.train.lr, run.train.batch_size, run.train.seed) == (base.train.lr, base.train.batch_size,
                                                                        base.train.seed)


def test_the_copying_baseline_is_what_copying_scores():
    script = load_script()
    g = torch.Generator().manual_seed(0)
    batch = script.TASK.sample(4000, g).tokens
    n, ctx = script.TASK.num_pairs, 2 * script.TASK.num_pairs
    stored, answers = batch[:, 1:ctx:2], batch[:, ctx + 1::2]
    measured = float((stored[:, None, :] == answers[:, :, None]).sum(-1).double().div(n).mean())
    assert measured == pytest.approx(script.copy_baseline(), abs=0.004)  # 24 000 queries: s.e. ≈ 0.001
    assert script.copy_baseline() == pytest.approx((1 + 5 / 32) / 6)


def test_a_tiny_run_writes_its_rows(tmp_path):
    out = tmp_path / "r.json"
    load_script().main(["--out", str(out), "--steps", "2", "--only", "toy-srwm", "toy-delta"])
    result = json.loads(out.read_text())
    assert [r["recipe"] for r in result["rows"]] == ["toy-srwm", "toy-delta"]
    assert [r["mixer"] for r in result["rows"]] == ["srwm", "delta"]
    assert all(0 <= r["eval_acc"] <= 1 for r in result["rows"]) and "--steps 2" in result["command"]
    assert [(r["lr"], r["seed"]) for r in result["rows"]] == [(3e-3, 0), (3e-3, 0)]  # the recipes'


def test_lr_and_seed_replace_the_recipes_and_bad_values_are_refused(tmp_path):
    script = load_script()
    run = script.recipe("toy-fwm", 7, lr=1e-2, seed=3)
    assert (run.train.lr, run.train.seed, run.model.seed) == (1e-2, 3, 3)
    out = tmp_path / "r.json"
    script.main(["--out", str(out), "--steps", "2", "--only", "toy-srwm", "--lr", "0.01", "--seed", "2"])
    row, = json.loads(out.read_text())["rows"]
    assert (row["lr"], row["seed"]) == (0.01, 2)
    assert "| srwm | `toy-srwm` | 0.01 | 2 | 2 |" in script.markdown([row], 0.2)
    for bad in (["--lr", "0"], ["--seed", "-1"]):
        with pytest.raises(SystemExit):
            script.main(["--out", str(out), "--steps", "2", *bad])


COMMITTED = sorted((ROOT / "docs").glob("recall_without_elimination*.json"))


@pytest.mark.parametrize("path", COMMITTED, ids=[p.stem for p in COMMITTED])
def test_the_readme_shows_the_committed_run_with_its_command(path):
    results = json.loads(path.read_text())
    readme = (ROOT / "README.md").read_text()
    assert load_script().markdown(results["rows"], results["copy_baseline"]) in readme
    assert results["command"] in readme and f"{results['wall_seconds'] / 60:.1f} min wall" in readme
