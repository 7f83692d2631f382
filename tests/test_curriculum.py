"""A run config's curriculum: stages trained in order before the run's own training, each from the weights the
one before ended with — the same weights as training the stages by hand; the run files round-trip; every bad
curriculum is refused with a message that names the stage."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from workbench import load
from workbench.training import TrainConfig, train
from workbench.training.run_config import (CURRICULUM_HISTORY, RunConfigError, Stage, load_run_config,
                                           run_config_from_dict, train_run)

TINY = {
    "model": {"d_vocab": 16, "d_model": 16, "n_layers": 1, "n_heads": 2, "d_head": 8, "d_mlp": 16, "n_ctx": 12,
              "chunk_size": 4},
    "task": {"name": "mqar", "vocab_size": 16, "seq_len": 8, "num_kv_pairs": 2},
    "train": {"steps": 3, "batch_size": 4, "warmup_steps": 1, "eval_every": 3, "eval_batches": 1, "seed": 5},
}
STAGE = {"task": {"name": "associative_recall", "num_pairs": 2, "num_keys": 8, "num_values": 8, "num_queries": 4},
         "train": {"steps": 4, "batch_size": 4, "warmup_steps": 1, "eval_every": 2, "eval_batches": 1, "seed": 9}}


def test_the_stages_train_first_and_the_run_continues_from_their_weights(tmp_path):
    run = run_config_from_dict({**TINY, "curriculum": [STAGE, STAGE]})
    assert len(run.curriculum) == 2 and isinstance(run.curriculum[0], Stage)
    recipe = train_run(run, tmp_path / "run", progress=False)
    # by hand: stage, stage, then the run's own training, each from the last one's model
    model = run.model
    for stage in run.curriculum:
        model = train(model, stage.task, stage.train, progress=False).model
    by_hand = train(model, run.task, run.train, progress=False)
    trained = load(tmp_path / "run")
    for name, t in by_hand.model.state_dict().items():
        assert torch.equal(trained.state_dict()[name], t), name
    untouched = train(run.model, run.task, run.train, progress=False).model.state_dict()  # without the stages
    assert any(not torch.equal(t, untouched[name]) for name, t in trained.state_dict().items())
    stages = json.loads((tmp_path / "run" / CURRICULUM_HISTORY).read_text())
    assert [[h["step"] for h in s] for s in stages] == [[1, 2, 3, 4]] * 2
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert len(history) == run.train.steps and recipe["final"] == history[-1]
    assert load_run_config(tmp_path / "run" / "recipe.json") == run  # the run directory's recipe is the run


def test_a_run_without_a_curriculum_is_written_as_before(tmp_path):
    run = run_config_from_dict(copy.deepcopy(TINY))
    assert run.curriculum == () and "curriculum" not in run.to_dict()
    train_run(run, tmp_path / "run", progress=False)
    assert not (tmp_path / "run" / CURRICULUM_HISTORY).exists()
    assert "curriculum" not in json.loads((tmp_path / "run" / "recipe.json").read_text())


@pytest.mark.parametrize("curriculum, match", [
    ({"task": STAGE["task"]}, r"'curriculum' must be a list"),
    ([{"task": STAGE["task"]}], r"curriculum\[0\] must be an object with exactly \['task', 'train'\]"),
    ([STAGE, {**STAGE, "model": TINY["model"]}], r"curriculum\[1\] must be an object"),
    ([STAGE, 3], r"curriculum\[1\] must be an object with exactly \['task', 'train'\], got int"),
    ([{**STAGE, "task": {"name": "no_such_task"}}], r"curriculum\[0\]: task: 'name' must be one of"),
    ([{**STAGE, "train": {"steps": 0}}], r"curriculum\[0\]: train:"),
    ([{**STAGE, "train": {**STAGE["train"], "out_dir": "x"}}], r"curriculum\[0\]: remove 'out_dir'"),
    ([{**STAGE, "task": {**STAGE["task"], "num_keys": 40, "num_values": 40}}],
     r"curriculum\[0\]: the task uses 80 token ids but model.d_vocab is 16"),
    ([{**STAGE, "task": {**STAGE["task"], "num_queries": 8}}], r"curriculum\[0\]: the task's sequences have 20"),
])
def test_a_bad_curriculum_is_refused_naming_the_stage(curriculum, match):
    with pytest.raises(RunConfigError, match=match):
        run_config_from_dict({**TINY, "curriculum": curriculum}, "run.json")
