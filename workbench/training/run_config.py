"""Train a model from one JSON file that holds the whole run as data.

    {"model": {...ModelConfig...}, "task": {"name": "mqar", ...}, "train": {...TrainConfig...}}

    run = load_run_config("run.json")              # RunConfigError (a ValueError) names the file and the fix
    summary = train_run(run, Path("runs/mine"))    # the run directory (workbench.run_dir) runs/mine

``workbench train run.json --out runs/mine`` does both. The ``recipe.json`` a bundled checkpoint keeps
is a valid run file too (its descriptive keys — recipe, final, command, config — are ignored).

An optional ``"curriculum"``, a list of ``{"task": {...}, "train": {...}}`` stages, trains the model on each
stage's task in order before the run's own ``task`` and ``train`` start from the weights it ends with (each
stage a fresh optimiser and schedule). The run directory's ``history.json`` and ``"final"`` are the run's own
training; each stage's history is kept in ``curriculum_history.json``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

from ..config import ModelConfig
from ..run_dir import RunWriter
from ..tasks import TASKS, Task, task_from_dict
from .trainer import TrainConfig, run_record, stage_record, train

SECTIONS = ("model", "task", "train")
OPTIONAL_SECTIONS = ("curriculum",)
STAGE_SECTIONS = ("task", "train")
CURRICULUM_HISTORY = "curriculum_history.json"
DESCRIPTIVE_KEYS = ("recipe", "final", "command", "config")  # written into recipe.json; ignored on reading
EXAMPLE = '{"model": {"d_vocab": 64, "mixer": "delta"}, "task": {"name": "mqar"}, "train": {"steps": 200}}'


class RunConfigError(ValueError):
    """A run file could not be used; the message names the file, the section and the fix."""


@dataclass(frozen=True)
class Stage:
    """One stage of a curriculum: the model is trained on ``task`` with ``train`` (its own optimiser, schedule,
    seed and step count) before the next stage or the run's own training."""

    task: Task
    train: TrainConfig

    def to_dict(self) -> dict[str, Any]:
        return stage_record(self.task, self.train)


@dataclass(frozen=True)
class RunConfig:
    model: ModelConfig
    task: Task
    train: TrainConfig
    curriculum: tuple[Stage, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        record = run_record(self.model, self.task, self.train)
        if self.curriculum:
            record["curriculum"] = [stage.to_dict() for stage in self.curriculum]
        return record


def load_run_config(path: Union[str, Path]) -> RunConfig:
    """Read and check a run file; every problem raises :class:`RunConfigError`."""
    path = Path(path)
    if not path.exists():
        raise RunConfigError(f"run config {path} does not exist")
    if not path.is_file():
        raise RunConfigError(f"{path} is a directory; pass a JSON file such as {EXAMPLE}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise RunConfigError(f"{path} is not UTF-8 text; a run config is JSON such as {EXAMPLE}") from None
    except json.JSONDecodeError as e:
        raise RunConfigError(f"{path} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    return run_config_from_dict(data, str(path))


def run_config_from_dict(data: Any, where: str = "run config") -> RunConfig:
    """Build a :class:`RunConfig` from ``{"model": …, "task": …, "train": …}``; ``where`` names the source."""
    if not isinstance(data, dict):
        raise RunConfigError(f"{where} must be a JSON object with keys {list(SECTIONS)}, got {type(data).__name__}; "
                             f"for example {EXAMPLE}")
    missing = [k for k in SECTIONS if k not in data]
    unknown = sorted(set(data) - set(SECTIONS) - set(OPTIONAL_SECTIONS) - set(DESCRIPTIVE_KEYS))
    if missing or unknown:
        parts = ([f"is missing {missing}"] if missing else []) + ([f"has unknown keys {unknown}"] if unknown else [])
        raise RunConfigError(f"{where} {' and '.join(parts)}; a run config holds exactly {list(SECTIONS)} "
                             f"(and optionally {list(OPTIONAL_SECTIONS)}), for example {EXAMPLE}")
    if not isinstance(data["model"], dict):  # task and train: _task_and_train
        raise RunConfigError(f"{where}: 'model' must be a JSON object, got {type(data['model']).__name__}")
    model = _section(where, "model", lambda: ModelConfig.from_dict(dict(data["model"])))
    task, train_cfg = _task_and_train(data, where)
    check_fits(model, task, where)
    stages = data.get("curriculum", [])
    if not isinstance(stages, list):
        raise RunConfigError(f"{where}: 'curriculum' must be a list of {{\"task\": ..., \"train\": ...}} stages, got "
                             f"{type(stages).__name__}")
    curriculum = []
    for i, stage in enumerate(stages):
        here = f"{where}: curriculum[{i}]"
        if not isinstance(stage, dict) or set(stage) != set(STAGE_SECTIONS):
            got = sorted(stage) if isinstance(stage, dict) else type(stage).__name__
            raise RunConfigError(f"{here} must be an object with exactly {list(STAGE_SECTIONS)}, got {got}")
        stage_task, stage_train = _task_and_train(stage, here)
        check_fits(model, stage_task, here)
        curriculum.append(Stage(stage_task, stage_train))
    return RunConfig(model, task, train_cfg, tuple(curriculum))


def _task_and_train(data: dict, where: str) -> tuple[Task, TrainConfig]:
    for key in STAGE_SECTIONS:
        if not isinstance(data[key], dict):
            raise RunConfigError(f"{where}: {key!r} must be a JSON object, got {type(data[key]).__name__}")
    task = _section(where, "task", lambda: _task(data["task"]))
    train_dict = dict(data["train"])
    if train_dict.pop("out_dir", None) is not None:
        raise RunConfigError(f"{where}: remove 'out_dir' from 'train'; the output directory is given by --out")
    return task, _section(where, "train", lambda: TrainConfig.from_dict(train_dict))


def check_fits(model: ModelConfig, task: Task, where: str = "run config") -> None:
    """The model can read the task: every token id below ``d_vocab`` and, with learned positions, every
    sequence within ``n_ctx``; else :class:`RunConfigError` naming ``where`` and the fix."""
    if task.d_vocab > model.d_vocab:
        raise RunConfigError(f"{where}: the task uses {task.d_vocab} token ids but model.d_vocab is {model.d_vocab}; "
                             f"set model.d_vocab to at least {task.d_vocab}")
    if model.positional == "learned" and task.seq_len > model.n_ctx:
        raise RunConfigError(f"{where}: the task's sequences have {task.seq_len} tokens but model.n_ctx is "
                             f"{model.n_ctx}; set model.n_ctx to at least {task.seq_len}")


def _section(where: str, key: str, build):
    try:
        return build()
    except (ValueError, TypeError) as e:
        raise RunConfigError(f"{where}: {key}: {e}") from None


def _task(data: dict) -> Task:
    name = data.get("name")
    if name not in TASKS:
        raise ValueError(f"'name' must be one of {sorted(TASKS)}, got {name!r}")
    known = {f.name for f in dataclasses.fields(TASKS[name])}
    unknown = sorted(set(data) - known - {"name"})
    if unknown:
        raise ValueError(f"unknown keys {unknown} for task {name!r}; known keys are {sorted(known)}")
    return task_from_dict(data)


def train_run(run: RunConfig, out: Union[str, Path], command: str = "", progress: bool = True,
              name: Optional[str] = None) -> dict[str, Any]:
    """Train ``run`` and write its run directory to ``out`` (:mod:`workbench.run_dir`: the checkpoint,
    ``recipe.json`` with the run, its final metrics, ``name`` and ``command``, ``history.json``, and with
    ``train.save_every`` the intermediate checkpoints ``step_N/``). With a curriculum, its stages are trained
    first (their histories in ``curriculum_history.json``; a run killed after its first stage and started
    again redoes the stages from the start). Returns the recipe dict."""
    with RunWriter(out) as writer:
        model, stage_histories = run.model, []
        for stage in run.curriculum:  # each stage starts from the weights the one before ended with
            done = train(model, stage.task, dataclasses.replace(stage.train, out_dir=None), progress=progress,
                         resume_dir=writer.path)
            model = done.model
            stage_histories.append(done.history)
        result = train(model, run.task, dataclasses.replace(run.train, out_dir=None), progress=progress,
                       writer=writer)
        files = {CURRICULUM_HISTORY: stage_histories} if run.curriculum else None
        return writer.write(result.model, run.to_dict(), result.history, name=name, command=command, files=files)
