"""The one writer of a run directory: its layout, atomic replacement, and what a failure leaves behind."""

from __future__ import annotations

import json

import pytest
import torch

from workbench import HookedFastWeightLM, ModelConfig, load
from workbench.run_dir import RunDirError, RunWriter, run_checkpoints, step_checkpoints, write_run
from workbench.paths import CHECKPOINTS_DIR

CFG = ModelConfig(d_vocab=8, d_model=8, n_layers=1, n_heads=1, d_head=8, d_mlp=16, n_ctx=8)
RUN = {"model": CFG.to_dict(), "task": {"name": "mqar"}, "train": {"steps": 2}}
HISTORY = [{"step": 1, "train_loss": 2.0}, {"step": 2, "train_loss": 1.0}]


def test_layout_is_the_bundled_checkpoints_layout(tmp_path):
    model = HookedFastWeightLM(CFG)
    recipe = write_run(tmp_path / "run", model, RUN, HISTORY, name="mine", command="cmd",
                       files={"evaluation.json": {"a": 1}, "notes.txt": "text"})
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert names == {"config.json", "model.safetensors", "recipe.json", "history.json", "evaluation.json", "notes.txt"}
    assert list(recipe) == ["recipe", "model", "task", "train", "final", "command"]
    assert json.loads((tmp_path / "run" / "recipe.json").read_text()) == recipe and recipe["final"] == HISTORY[-1]
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == HISTORY
    assert (tmp_path / "run" / "notes.txt").read_text() == "text"
    loaded = load(tmp_path / "run").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in model.state_dict().items())
    assert [p.name for p in tmp_path.iterdir()] == ["run"]  # no staging directory left
    bundled = CHECKPOINTS_DIR / "mqar-delta-d64"
    assert set(json.loads((bundled / "recipe.json").read_text())) == set(recipe)
    assert {p.name for p in bundled.iterdir()} == names - {"notes.txt"}


def test_steps_and_replacing_an_earlier_run(tmp_path):
    out = tmp_path / "run"
    write_run(out, HookedFastWeightLM(CFG), RUN, HISTORY, files={"stale.json": {}})
    with RunWriter(out) as run:
        for step in (1, 2):
            run.save_step(HookedFastWeightLM(CFG), step)
        assert sorted(step_checkpoints(run.path)) == [1, 2] and not (out / "step_1").exists()  # staged, not yet there
        run.write(HookedFastWeightLM(CFG), RUN, HISTORY)
    assert not (out / "stale.json").exists() and sorted(step_checkpoints(out)) == [1, 2]
    assert run_checkpoints(out) == {1: out / "step_1", 2: out / "step_2"}  # the final model is step 2's twin


class Boom(Exception):
    pass


@pytest.mark.parametrize("existing", [False, True])
def test_a_failure_mid_write_leaves_no_half_written_run(tmp_path, existing):
    out = tmp_path / "run"
    if existing:
        write_run(out, HookedFastWeightLM(CFG), RUN, HISTORY)
        before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(Boom):
        with RunWriter(out) as run:
            run.save_step(HookedFastWeightLM(CFG), 1)
            raise Boom  # e.g. training diverged, or an evaluation failed
    with pytest.raises(TypeError):  # not JSON: fails after the checkpoint and recipe.json were written
        write_run(out, HookedFastWeightLM(CFG), RUN, HISTORY, files={"evaluation.json": {"x": object()}})
    if existing:
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before
        assert [p.name for p in tmp_path.iterdir()] == ["run"]
    else:
        assert list(tmp_path.iterdir()) == []


def test_refusals(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunDirError, match="is a file"):
        RunWriter(tmp_path / "file")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("x")
    with pytest.raises(RunDirError, match="not a run's"):
        write_run(tmp_path / "home", HookedFastWeightLM(CFG), RUN, HISTORY)
    with pytest.raises(RunDirError, match="nothing was written"):
        with RunWriter(tmp_path / "empty"):
            pass
    with pytest.raises(RunDirError, match="plain name"):
        write_run(tmp_path / "x", HookedFastWeightLM(CFG), RUN, HISTORY, files={"recipe.json": {}})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "home"]


def test_run_checkpoints_reads_runs_written_before_this_layout(tmp_path):
    from workbench import save

    save(HookedFastWeightLM(CFG), tmp_path / "step_3")
    save(HookedFastWeightLM(CFG), tmp_path / "final")
    (tmp_path / "train_config.json").write_text(json.dumps({"steps": 5}))
    assert run_checkpoints(tmp_path) == {3: tmp_path / "step_3", 5: tmp_path / "final"}
