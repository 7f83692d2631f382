"""Outlier statistics across training: the same token batches traced through every saved checkpoint."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence, Union

import pandas as pd
import torch
from tqdm.auto import tqdm

from ...run_dir import run_checkpoints as all_checkpoints
from .trace import DEFAULT_SITES, outlier_table, trace_outliers

PathLike = Union[str, Path]


def run_checkpoints(run_dir: PathLike) -> dict[int, Path]:
    """``{step: directory}`` of a training run's checkpoints: its ``step_{N}/`` ones and its final model
    (:func:`workbench.run_dir.run_checkpoints`)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory; pass a training run's output directory")
    found = all_checkpoints(run_dir)
    if not found:
        raise ValueError(f"{run_dir} holds no step_N/ checkpoints (train with save_every > 0) and no final model "
                         "with recipe.json")
    return found


def trace_over_training(checkpoints: Union[PathLike, Mapping[int, PathLike]], batches: Sequence[torch.Tensor],
                        sites: Sequence[str] = DEFAULT_SITES, top_k: int = 8, progress: bool = True) -> pd.DataFrame:
    """:func:`~.trace.outlier_table` of each checkpoint on the same ``batches``, with a ``step`` column.

    ``checkpoints`` is a run directory (see :func:`run_checkpoints`) or ``{step: checkpoint directory}``.
    """
    from ...checkpoint import load

    items = run_checkpoints(checkpoints) if isinstance(checkpoints, (str, Path)) else dict(sorted(checkpoints.items()))
    if not items:
        raise ValueError("no checkpoints given")
    batches = list(batches)
    frames = []
    for step, path in tqdm(items.items(), desc="checkpoints", disable=not progress):
        stats = trace_outliers(load(path), batches, sites=sites, top_k=top_k, progress=False)
        frames.append(outlier_table(stats).assign(step=step))
    return pd.concat(frames, ignore_index=True)
