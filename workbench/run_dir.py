"""A run directory: a trained model with the run that made it. One writer, :class:`RunWriter`, for every
entry point (``workbench train``, ``workbench train-recipe``, ``train(..., TrainConfig(out_dir=...))``, the
text trainer, the case studies).

    runs/mine/
        config.json, model.safetensors   the final model (a checkpoint: :func:`workbench.checkpoint.load`)
        recipe.json                      {"recipe"?: name, "model": …, "task": …, "train": …, "final": …, "command": …}
        history.json                     the training records (step, train_loss, lr, eval_loss, …)
        step_{N}/                        intermediate checkpoints (``TrainConfig.save_every``)
        evaluation.json, …               files the entry point adds (``files=``)

The ``model``, ``task`` and ``train`` sections of ``recipe.json`` make it a run config
(``workbench train runs/mine/recipe.json`` retrains the same weights). The bundled checkpoints in
``workbench/checkpoints/`` have this layout.

Writing is atomic: everything goes into a hidden directory beside the target, ``.<name>.partial``, which
replaces the target in one rename when the run is complete; every file in it is itself written atomically
(:mod:`workbench.atomic`). An error on the way leaves the target as it was. The partial directory holds the
training state (:mod:`workbench.training.resume`) while the run trains; a run that is killed or fails
keeps it, and the same command run again continues from it (a different run starts afresh there); a
partial directory without a training state is removed.

    with RunWriter("runs/mine") as run:
        result = train(cfg, task, train_cfg, writer=run)      # step_N/ checkpoints go to run.path
        run.write(result.model, run_record(cfg, task, train_cfg), result.history, command="...")
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, Union

from . import atomic
from .checkpoint import CONFIG_FILE, WEIGHTS_FILE, save

RECIPE_FILE = "recipe.json"
HISTORY_FILE = "history.json"
STEP_PREFIX = "step_"
RUN_FILES = (CONFIG_FILE, WEIGHTS_FILE, RECIPE_FILE, HISTORY_FILE)

PathLike = Union[str, Path]


class RunDirError(ValueError):
    """A run directory could not be written where asked; the message says why and what to pass instead."""


def step_checkpoints(directory: PathLike) -> dict[int, Path]:
    """``{step: directory}`` of the intermediate checkpoints ``step_{N}/`` of a run, by step."""
    found = {int(d.name[len(STEP_PREFIX):]): d for d in Path(directory).glob(f"{STEP_PREFIX}*")
             if d.name[len(STEP_PREFIX):].isdigit() and d.is_dir()}
    return dict(sorted(found.items()))


def run_checkpoints(directory: PathLike) -> dict[int, Path]:
    """Every checkpoint of a run by step: the ``step_{N}/`` ones plus the final model at the run's last step
    (``final.step`` or ``train.steps`` of ``recipe.json``) unless a ``step_{N}/`` already holds it. Runs
    written before this layout (the final model in ``final/``, the steps in ``train_config.json``) are read
    too."""
    directory = Path(directory)
    found = step_checkpoints(directory)
    recipe, legacy = directory / RECIPE_FILE, directory / "train_config.json"
    if (directory / CONFIG_FILE).is_file() and recipe.is_file():
        data = json.loads(recipe.read_text())
        last = (data.get("final") or {}).get("step") or (data.get("train") or {}).get("steps")
        if last is not None:
            found.setdefault(int(last), directory)
    elif (directory / "final").is_dir() and legacy.is_file():
        found.setdefault(int(json.loads(legacy.read_text())["steps"]), directory / "final")
    return dict(sorted(found.items()))


def _is_run_dir(directory: Path) -> bool:
    names = {p.name for p in directory.iterdir()}
    return not names or bool(names & set(RUN_FILES)) or any(n.startswith(STEP_PREFIX) for n in names)


STATE_PREFIX = "train_state-"  # workbench.training.resume.STATE_PREFIX (that module sits above this one)


def _resumable(staging: Path) -> bool:
    return any(staging.glob(f"{STATE_PREFIX}*.pt"))


class RunWriter:
    """Stage a run directory beside ``out`` and put it in place when the ``with`` block ends without error.

    ``path``: the staging directory (intermediate checkpoints can be read back from it before the end);
    :meth:`save_step` writes ``step_{N}/``; :meth:`write` the final model, ``recipe.json``,
    ``history.json`` and any further files, once. An existing ``out`` is replaced only if it is a run
    directory (or empty): a directory holding other files raises :class:`RunDirError`.
    """

    def __init__(self, out: PathLike):
        self.out = Path(out)
        if self.out.exists() and not self.out.is_dir():
            raise RunDirError(f"{self.out} is a file; pass a directory to write the run to")
        if self.out.is_dir() and not _is_run_dir(self.out):
            raise RunDirError(f"{self.out} exists and holds files that are not a run's "
                              f"({', '.join(sorted(p.name for p in self.out.iterdir())[:5])}); pass a new directory")
        self.path: Optional[Path] = None
        self.recipe: Optional[dict[str, Any]] = None

    def __enter__(self) -> "RunWriter":
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.path = self.out.parent / f".{self.out.name}.partial"
        if self.path.is_dir() and not _resumable(self.path):
            shutil.rmtree(self.path)
        self.path.mkdir(exist_ok=True)
        return self

    def save_step(self, model, step: int) -> Path:
        """Write the intermediate checkpoint ``step_{step}/``."""
        return save(model, self._staging() / f"{STEP_PREFIX}{step}")

    def write(self, model, run: Mapping[str, Any], history: Sequence[Mapping[str, Any]], *,
              name: Optional[str] = None, command: str = "", files: Optional[Mapping[str, Any]] = None
              ) -> dict[str, Any]:
        """Write the final model, ``recipe.json`` (``name`` as ``"recipe"``, the ``run`` sections, the last
        record of ``history`` as ``"final"``, ``command``) and ``history.json``; ``files`` maps further
        file names to their text (a ``str``) or to JSON data. Returns the recipe."""
        staging = self._staging()
        if self.recipe is not None:
            raise RunDirError(f"the run for {self.out} was already written; a RunWriter writes one run")
        for fname in files or {}:
            if Path(fname).name != fname or fname in RUN_FILES or fname.startswith((STEP_PREFIX, ".")):
                raise RunDirError(f"extra file name {fname!r} must be a plain name other than {list(RUN_FILES)}")
        recipe = {**({"recipe": name} if name else {}), **run, "final": history[-1] if history else None,
                  "command": command}
        save(model, staging)
        atomic.write_json(staging / RECIPE_FILE, recipe, indent=2)
        atomic.write_json(staging / HISTORY_FILE, list(history))
        for fname, content in (files or {}).items():
            if isinstance(content, str):
                atomic.write_text(staging / fname, content)
            else:
                atomic.write_json(staging / fname, content, indent=2)
        self.recipe = recipe
        return recipe

    def __exit__(self, exc_type, exc, tb) -> None:
        staging, self.path = self._staging(), None
        if exc_type is not None or self.recipe is None:
            if not _resumable(staging):  # a training state stays for the same command to continue from
                shutil.rmtree(staging, ignore_errors=True)
            if exc_type is None:
                raise RunDirError(f"nothing was written for {self.out}: call write(model, run, history) in the block")
            return
        for state in staging.glob(f"{STATE_PREFIX}*"):
            state.unlink()
        old = self.out.parent / f".{self.out.name}.old-{uuid.uuid4().hex[:8]}"
        if self.out.exists():
            os.replace(self.out, old)
        try:
            os.replace(staging, self.out)
        except BaseException:
            if old.exists():
                os.replace(old, self.out)
            shutil.rmtree(staging, ignore_errors=True)
            raise
        shutil.rmtree(old, ignore_errors=True)

    def _staging(self) -> Path:
        if self.path is None:
            raise RunDirError("use a RunWriter in a with block: with RunWriter(out) as run: ...")
        return self.path


def write_run(out: PathLike, model, run: Mapping[str, Any], history: Sequence[Mapping[str, Any]], *,
              name: Optional[str] = None, command: str = "", files: Optional[Mapping[str, Any]] = None
              ) -> dict[str, Any]:
    """A run without intermediate checkpoints, written atomically to ``out`` (see :meth:`RunWriter.write`)."""
    with RunWriter(out) as writer:
        return writer.write(model, run, history, name=name, command=command, files=files)
