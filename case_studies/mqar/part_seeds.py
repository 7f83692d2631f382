"""Seed 0 of a part's cells read from other parts' results instead of rerun (the ``seeds`` part: its seeds 1 and
2 join the seed-0 runs of ``sweep`` and ``conv2x2``). A seed-0 entry is taken only from a full run of the same
protocol (train config with the convergence rule, settings, evaluation) whose run is the same :class:`PartRun`
with the same resolved mixer configuration; anything else is a clear error, never a silent mix."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from .parts import SEED0_FROM, PartRun, PartStudy

RESULTS = Path(__file__).resolve().parent / "results"


def seed0_cells(study: PartStudy) -> list[PartRun]:
    """The seed-0 runs of ``study``'s cells (its runs with seed 0) that ``study`` does not run itself, in order."""
    cells = []
    for run in study.runs:
        cell = dataclasses.replace(run, seed=0)
        if cell not in study.runs and cell not in cells:
            cells.append(cell)
    return cells


def _protocol_mismatch(study: PartStudy, source: dict[str, Any]) -> list[str]:
    """Why ``source`` (a part's results.json) cannot give seed-0 runs to ``study`` (empty when it can)."""
    if source.get("quick", True):
        return ["it is a --quick run"]
    theirs = PartStudy.from_dict(source["study"])
    why = []
    if theirs.capacity_sweep != study.capacity_sweep:
        why.append(f"capacity_sweep {theirs.capacity_sweep} != {study.capacity_sweep}")
    mine, other = study.protocol.to_dict(), theirs.protocol.to_dict()
    why += [f"protocol.{k}: {other.get(k)!r} != {mine.get(k)!r}" for k in sorted(set(mine) | set(other))
            if mine.get(k) != other.get(k)]
    return why


def seed0_entries(study: PartStudy, sources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The results entries of :func:`seed0_cells` taken from ``sources`` (part name -> its results.json), each
    with ``reused_from`` (the part). Raises ValueError when a cell is in none of the sources, or when the source
    holding it ran another protocol or another mixer configuration than ``study`` would."""
    entries = []
    for cell in seed0_cells(study):
        found = [(part, e) for part, src in sources.items() for e in src["runs"] if PartRun.from_dict(e["run"]) == cell]
        if not found:
            raise ValueError(f"seed 0 of {cell.name} is in none of the results of {sorted(sources)}; run it or "
                             "give the part that ran it")
        part, entry = found[0]
        why = _protocol_mismatch(study, sources[part])
        if why:
            raise ValueError(f"seed 0 of {cell.name} cannot come from the {part!r} results: " + "; ".join(why))
        mixer = cell.model_config(study.protocol).to_dict()["mixer"]
        if entry["mixer_config"] != mixer:
            raise ValueError(f"seed 0 of {cell.name}: the {part!r} results trained the mixer {entry['mixer_config']}, "
                             f"this code builds {mixer}")
        entries.append({**entry, "reused_from": part})
    return entries


def load_sources(part: str, results_dir: Path = RESULTS) -> dict[str, dict[str, Any]]:
    """The committed results.json of the parts ``part`` takes seed 0 from (``SEED0_FROM``; none: {})."""
    sources = {}
    for name in SEED0_FROM.get(part, ()):
        path = Path(results_dir) / name / "results.json"
        if not path.is_file():
            raise ValueError(f"the {part!r} part takes seed 0 from {path}, which does not exist; run --part {name}")
        sources[name] = json.loads(path.read_text())
    return sources
