"""The command line every case study shares.

    python -m case_studies.<name> [--quick] [--out DIR] [--no-png] [--only NAME ...] [--threads N] [--replot]

A study's ``__main__`` builds the parser with :func:`study_parser` (and adds its own options), then
calls :func:`output_dir`, :func:`replot_results` for ``--replot``, :func:`select_runs` for ``--only`` and
:func:`set_threads`; :func:`redraw` does all of ``--replot`` and :func:`run_each` runs the study's runs
under a progress bar. Every mistake on the command line ends in ``argparse``'s one-line error (exit 2).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, TypeVar

import torch
from tqdm.auto import tqdm

from workbench import atomic
from workbench.training import resuming

from . import _report

S = TypeVar("S")


def study_parser(name: str, doc: Optional[str], quick_help: str, only_example: str) -> argparse.ArgumentParser:
    """The options every study has; ``name`` is the folder under ``case_studies/``."""
    ap = argparse.ArgumentParser(prog=f"python -m case_studies.{name}", description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"{quick_help} (the tests run this)")
    ap.add_argument("--out", type=Path, default=None,
                    help=f"output directory (default: case_studies/{name}/results, or runs/{name}-quick with --quick)")
    ap.add_argument("--no-png", action="store_true", help="write the figures as HTML only (no kaleido/Chromium)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME",
                    help=f"run only these runs (e.g. {only_example})")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the figures and tables.md from the results.json already in --out (no training)")
    return ap


def output_dir(args: argparse.Namespace, name: str, part: str = "main") -> Path:
    """``--out``, or the study's default folder for a full or a quick run; a part other than ``main`` (a study's
    ``--part``) has its own: ``results/<part>/``, or ``runs/<name>-<part>-quick``."""
    if args.out:
        return args.out
    if part != "main":
        return Path(f"runs/{name}-{part}-quick" if args.quick else f"case_studies/{name}/results/{part}")
    return Path(f"runs/{name}-quick" if args.quick else f"case_studies/{name}/results")


def replot_results(ap: argparse.ArgumentParser, out: Path) -> dict[str, Any]:
    """The ``results.json`` in ``out`` for ``--replot``; a parser error if there is none."""
    path = Path(out) / "results.json"
    if not path.is_file():
        ap.error(f"--replot needs {path}; run the study first or point --out at its folder")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        ap.error(f"{path} is not valid JSON ({e}); rerun the study")


def select_runs(ap: argparse.ArgumentParser, study: S, only: Optional[Sequence[str]]) -> S:
    """``study`` (a dataclass with a ``runs`` tuple of named runs) keeping only the runs named in ``only``
    (all when ``only`` is None); a parser error names the unknown ones and lists the known."""
    if not only:
        return study
    names = [r.name for r in study.runs]
    unknown = sorted(set(only) - set(names))
    if unknown:
        ap.error(f"unknown run(s) {unknown}; known: {names}")
    return dataclasses.replace(study, runs=tuple(r for r in study.runs if r.name in only))


def keep_earlier_runs(out: Path, full: S, study: S, entries: list[dict], quick: bool
                      ) -> tuple[S, list[dict], list[dict]]:
    """``--only`` ran some of ``full``'s runs (``study``, whose ``entries`` these are). The others that
    ``out/results.json`` already holds, from a run of the same study (the same settings but for the runs, and
    quick or full alike), are kept beside them instead of being lost when ``results.json`` is rewritten.

    Returns the study with those runs added back (in ``full``'s order), the entries in that order, and where the
    kept entries came from: one record per earlier command (``command``, ``wall_seconds``, ``cpu_seconds``,
    ``written`` and the names of the ``runs`` it made that are kept), carried over from run to run. Nothing is
    kept when every run was selected, when there is no readable ``results.json``, or when its settings differ."""
    chosen = {r.name for r in study.runs}
    path = Path(out) / "results.json"
    if chosen == {r.name for r in full.runs} or not path.is_file():
        return study, entries, []
    try:
        earlier = json.loads(path.read_text())
    except json.JSONDecodeError:
        return study, entries, []

    def settings(d: Any) -> Any:
        return {k: v for k, v in d.items() if k != "runs"} if isinstance(d, dict) else None

    if (earlier.get("quick") != quick
            or settings(earlier.get("study")) != settings(json.loads(json.dumps(full.to_dict())))):
        return study, entries, []
    others = {r.name for r in full.runs} - chosen
    old = {e["name"]: e for e in earlier.get("runs", []) if isinstance(e, dict) and e.get("name") in others}
    if not old:
        return study, entries, []
    fresh = {e["name"]: e for e in entries}
    runs = tuple(r for r in full.runs if r.name in chosen or r.name in old)
    merged = [fresh[r.name] if r.name in chosen else old[r.name] for r in runs]
    records, carried = [], set()
    for record in earlier.get("earlier", []):
        kept = [name for name in record.get("runs", []) if name in old]
        carried.update(record.get("runs", []))
        if kept:
            records.append({**record, "runs": kept})
    own = sorted(set(old) - carried)
    if own:
        records.append({"command": earlier.get("command"), "wall_seconds": earlier.get("wall_seconds"),
                        "cpu_seconds": earlier.get("cpu_seconds"), "written": earlier.get("written"), "runs": own})
    return dataclasses.replace(study, runs=runs), merged, records


def set_threads(ap: argparse.ArgumentParser, threads: int) -> None:
    if threads < 1:
        ap.error("--threads must be ≥ 1")
    torch.set_num_threads(threads)


def redraw(ap: argparse.ArgumentParser, out: Path, write_figures: Callable[[dict, Path, bool], Any],
           tables: Callable[[dict], str], png: bool) -> dict[str, Any]:
    """``--replot``: the figures and ``tables.md`` again from the ``results.json`` in ``out``; returns it."""
    results = replot_results(ap, out)
    write_figures(results, out, png)
    atomic.write_text(Path(out) / "tables.md", tables(results))
    return results


PROGRESS_DIR = ".progress"  # in --out: each finished run's entry, and the training state of the current one


def _run_key(run: Any, context: Any) -> str:
    data = run.to_dict() if hasattr(run, "to_dict") else dataclasses.asdict(run)
    text = json.dumps({"run": data, "context": context}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_each(runs: Sequence[Any], execute: Callable[[Any], dict], summary: Callable[[Any, dict], str],
             progress: bool = True, out: Optional[Path] = None, context: Any = None) -> list[dict]:
    """``execute(run)`` for every run under a progress bar, printing ``summary(run, entry)`` after each.

    With ``out`` the study survives interruption: each finished run's entry is saved (atomically) in
    ``out/.progress/<run name>.json`` together with torch's global RNG state, and the training inside
    ``execute`` keeps its state in ``out/.progress/<run name>/`` (:func:`workbench.training.resuming`).
    The same command run again takes the finished runs' entries from there (restoring the RNG state as
    it was after each), continues the interrupted run's training from its last saved step, and so ends
    with the results of a run never interrupted. An entry is used only for the same run under the same
    ``context`` (JSON data, e.g. the study's protocol). :func:`finish` removes the folder."""
    entries = []
    store = None if out is None else Path(out) / PROGRESS_DIR
    for run in tqdm(runs, desc="runs", disable=not progress):
        if store is None:
            entries.append(execute(run))
        else:
            entries.append(_resumable_run(store, run, execute, context, progress))
        if progress:
            tqdm.write(summary(run, entries[-1]))
    return entries


def finished_entries(runs: Sequence[Any], out: Path, context: Any = None) -> list[dict]:
    """The entries :func:`run_each` saved in ``out/.progress`` for those of ``runs`` that finished under the same
    ``context``, in the order of ``runs`` (nothing is run, nothing removed: the same study can still resume)."""
    store, entries = Path(out) / PROGRESS_DIR, []
    for run in runs:
        done = store / f"{run.name}.json"
        if not done.is_file():
            continue
        try:
            saved = json.loads(done.read_text())
        except json.JSONDecodeError:
            continue
        if saved.get("key") == _run_key(run, context):
            entries.append(saved["entry"])
    return entries


def _resumable_run(store: Path, run: Any, execute: Callable[[Any], dict], context: Any, progress: bool) -> dict:
    key, done = _run_key(run, context), store / f"{run.name}.json"
    if done.is_file():
        try:
            saved = json.loads(done.read_text())
        except json.JSONDecodeError:
            saved = {}
        if saved.get("key") == key:
            torch.set_rng_state(torch.tensor(saved["torch_rng"], dtype=torch.uint8))
            if progress:
                tqdm.write(f"{run.name}: finished before; taken from {done}")
            return saved["entry"]
    with resuming(store / run.name):
        entry = execute(run)
    entry = json.loads(json.dumps(entry))  # as results.json will hold it, whether resumed or not
    atomic.write_json(done, {"key": key, "torch_rng": torch.get_rng_state().tolist(), "entry": entry})
    shutil.rmtree(store / run.name, ignore_errors=True)
    return entry


def finish(out: Path, results: dict[str, Any], command: str, start: float, cpu_start: float,
           write_figures: Callable[[dict, Path, bool], Any], tables: Callable[[dict], str], png: bool) -> dict:
    """Write ``results.json`` (with this process's CPU seconds since ``cpu_start`` and the wall time since
    ``start``), then the figures and ``tables.md`` from what was written; returns the written results."""
    results["cpu_seconds"] = round(time.process_time() - cpu_start, 1)  # this process only, not kaleido's browser
    _report.write_results(out, results, command, time.perf_counter() - start, compact_arrays=True)
    written = json.loads((Path(out) / "results.json").read_text())
    write_figures(written, out, png)
    atomic.write_text(Path(out) / "tables.md", tables(written))
    shutil.rmtree(Path(out) / PROGRESS_DIR, ignore_errors=True)
    return written
