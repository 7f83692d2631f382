"""The bundled checkpoints of the five fast-weight memories (toy-rec-delta, toy-delta-rnn, toy-delta-lstm,
toy-fwm, toy-srwm): each is the run directory its recipe writes, and each has learned MQAR recall — it
answers the queries of fresh sequences it never saw (a seed neither training nor its eval used) far above
chance (1/32) and close to the accuracy its recipe.json records; one that recorded recall (≥ 0.9) recalls
as well on fresh sequences.

With DeltaNet's short convolution and per-head output norm (the recipes' ``EXTRAS``) a memory learns recall
within its CPU budget; without them (the authors' models, where a checkpoint has not been retrained yet) they
learned it only partly (see each recipe.json ``final`` and history.json), so the floor there is relative to
what each recorded, with an absolute floor far above chance."""

from __future__ import annotations

import json

import pytest
import torch

from workbench import load
from workbench.app_support.sources import list_checkpoints
from workbench.paths import CHECKPOINTS_DIR
from workbench.training.recipes import RECIPES
from workbench.training.run_config import load_run_config
from workbench.training.trainer import evaluate

NEW = {"toy-rec-delta": "rec_delta", "toy-delta-rnn": "delta_rnn", "toy-delta-lstm": "delta_lstm",
       "toy-fwm": "fwm", "toy-srwm": "srwm"}
MIN_ACCURACY = 0.2  # chance is 1/32 (one of the 32 value tokens)
RELATIVE = 0.75  # of the accuracy the recipe recorded on its own eval batches
RECALLED = 0.9  # a checkpoint that recorded this much must reach it on fresh sequences too
FRESH_SEED = 20261130  # training draws from seed 0, its eval batches from seed 1_000_003


def test_every_new_memory_has_a_recipe_and_a_bundled_checkpoint():
    assert set(NEW) <= set(RECIPES) and set(NEW) <= set(list_checkpoints())
    assert {RECIPES[name].model.mixer.kind for name in NEW} == set(NEW.values())


@pytest.mark.parametrize("name", sorted(NEW))
def test_the_checkpoint_is_its_recipe(name):
    directory = CHECKPOINTS_DIR / name
    run = load_run_config(directory / "recipe.json")
    recipe = RECIPES[name]
    assert run == recipe  # model, task, training and any curriculum
    assert load(directory).cfg == recipe.model
    record = json.loads((directory / "recipe.json").read_text())
    assert record["recipe"] == name and f"recipes {name} --out" in record["command"]
    history = json.loads((directory / "history.json").read_text())
    assert len(history) == recipe.train.steps and history[-1]["eval_acc"] == record["final"]["eval_acc"]
    assert (directory / "model.safetensors").stat().st_size < 1_000_000  # small enough to ship in the package


@pytest.mark.parametrize("name", sorted(NEW))
def test_the_checkpoint_recalls_on_fresh_sequences(name):
    torch.manual_seed(0)
    model = load(CHECKPOINTS_DIR / name)
    task = RECIPES[name].task
    untrained = evaluate(type(model)(model.cfg), [task.sample(64, torch.Generator().manual_seed(FRESH_SEED))])
    scores = evaluate(model, [task.sample(64, torch.Generator().manual_seed(FRESH_SEED))])
    recorded = json.loads((CHECKPOINTS_DIR / name / "recipe.json").read_text())["final"]["eval_acc"]
    assert scores["eval_acc"] >= max(MIN_ACCURACY, RELATIVE * recorded), (name, scores, recorded)
    if recorded >= RECALLED:
        assert scores["eval_acc"] >= RECALLED, (name, scores, recorded)
    assert untrained["eval_acc"] < 0.2, (name, untrained)  # the task is not solved by chance
