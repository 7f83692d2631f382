"""Training state on disk, so that a run killed at any point continues where it stopped.

A state file holds everything the next step depends on — the weights, the optimizer's state (AdamW's
moments, SOAP's preconditioners and eigenbases), the step (which fixes the learning rate), the data
generator's and torch's global RNG states, the history and the elapsed seconds — saved with
``torch.save`` and read back with ``torch.load(weights_only=True)`` (no pickle), written atomically
(:mod:`workbench.atomic`). Its name carries a hash of the run (model config, initial weights, task, train
config), so a state is only ever resumed by the same run:

    <dir>/train_state-<key>.pt

:func:`train` keeps it in its ``resume_dir``, in the staging directory of its ``writer``, or in the
directory of an enclosing :func:`resuming` block (how the case studies give each run its own).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
from pathlib import Path
from typing import Any, Iterator, Optional, Union

import torch

from .. import atomic
from ..run_dir import STATE_PREFIX

_SCOPE: contextvars.ContextVar[Optional[Path]] = contextvars.ContextVar("workbench_resume_dir", default=None)


@contextlib.contextmanager
def resuming(directory: Union[str, Path, None]) -> Iterator[Optional[Path]]:
    """Within the block, :func:`train` calls without their own ``resume_dir`` or ``writer`` keep their
    state in ``directory`` (None: no state kept) and resume from it."""
    directory = None if directory is None else Path(directory)
    token = _SCOPE.set(directory)
    try:
        yield directory
    finally:
        _SCOPE.reset(token)


def scoped_dir() -> Optional[Path]:
    """The directory of the innermost :func:`resuming` block, or None."""
    return _SCOPE.get()


def run_key(record: dict[str, Any], model: torch.nn.Module) -> str:
    """A short hash of the run ``record`` (JSON) and ``model``'s initial weights."""
    h = hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def state_path(directory: Path, key: str) -> Path:
    return Path(directory) / f"{STATE_PREFIX}{key}.pt"


def save_state(path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, step: int,
               data_gen: torch.Generator, history: list, seconds: float,
               extra: Optional[dict[str, Any]] = None) -> None:
    """Write the state after ``step`` updates atomically to ``path``; ``extra``: whatever else the loop needs
    (tensors and plain values), read back as ``state["extra"]``."""
    state = {"step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "data_rng": data_gen.get_state(), "torch_rng": torch.get_rng_state(),
             "history": history, "seconds": seconds, "extra": extra or {}}
    with atomic.replacing(path) as tmp:
        torch.save(state, tmp)


def load_state(path: Path) -> dict[str, Any]:
    """A state written by :func:`save_state` (tensors and plain values only: ``weights_only=True``)."""
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except Exception as e:
        raise ValueError(f"cannot resume from {path} ({type(e).__name__}: {e}); delete it to start the run afresh") from e


def open_state(directory: Optional[Path], record: dict[str, Any], model: torch.nn.Module
               ) -> tuple[Optional[Path], Optional[dict[str, Any]]]:
    """The state file of the run (``record`` and ``model``'s initial weights) in ``directory`` — every other
    run's state there is removed, so it is never resumed — and the state saved in it, or None when there is none
    yet. ``(None, None)`` without a directory (no resuming)."""
    if directory is None:
        return None, None
    path = state_path(directory, run_key(record, model))
    clear_states(directory, keep=path)
    return path, (load_state(path) if path.is_file() else None)


def restore(state: dict[str, Any], model: torch.nn.Module, opt: torch.optim.Optimizer,
            data_gen: torch.Generator) -> tuple[int, list, float]:
    """Load a state of :func:`save_state` into ``model``, ``opt`` and ``data_gen``; returns (steps done,
    history, seconds spent). The loop restores anything else it saved itself (``state["torch_rng"]``,
    ``state["extra"]``)."""
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    data_gen.set_state(state["data_rng"])
    return int(state["step"]), list(state["history"]), float(state["seconds"])


def clear_states(directory: Optional[Path], keep: Optional[Path] = None) -> None:
    """Remove the state files in ``directory`` other than ``keep``."""
    if directory is None or not Path(directory).is_dir():
        return
    for p in Path(directory).glob(f"{STATE_PREFIX}*.pt"):
        if p != keep:
            p.unlink(missing_ok=True)
