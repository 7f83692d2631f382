"""Running the parts "search", "search2", "search3", "control" and "seeds" (issue 18): resumable, with ``results.json`` and ``tables.md``
rewritten after every finished run (``left`` lists what has not run), so a stopped part still reports what
it has; the same command again continues (``_cli.run_each`` keeps each finished run in ``out/.progress``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from workbench import atomic

from .. import _cli, _report
from . import control_part, search_part, seeds_part
from .config import control_stage2


def _summary(run, e: dict) -> str:
    q = e["w8a8"]["per_tensor"]
    matmul = (f", matmul inputs {max(e['final_matmul_kurtosis'].values()):.2f}" if "final_matmul_kurtosis" in e
              else f", mlp hidden {e['final_kurtosis']['mlp_hidden']:.2f}")
    return (f"{e['name']}: ppl {e['val_ppl']:.2f} → W8A8 {q['ppl_w8a8']:.2f} (×{q['ppl_ratio']:.3f}); Kurt resid "
            f"{e['final_kurtosis']['resid_post']:.2f}{matmul} ({e['run_seconds'] / 60:.1f} min)")


MODULES = {"search": search_part, "search2": search_part, "search3": search_part, "control": control_part, "seeds": seeds_part}  # part → its figure and tables


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    module = MODULES[results["part"]]
    return _report.write_figures({f"{results['part']}_figure": module.figure(results["runs"])}, out, png=png)


def write_tables(results: dict) -> str:
    return MODULES[results["part"]].tables(results)


def _partial(out: Path, results: dict, command: str, start: float, cpu_start: float) -> None:
    results["cpu_seconds"] = round(time.process_time() - cpu_start, 1)
    _report.write_results(out, results, command, time.perf_counter() - start, compact_arrays=True)
    atomic.write_text(out / "tables.md", write_tables(results))


def run_search(study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
               progress: bool = True, part: str = "search") -> dict:
    """The candidates in order, stopping after the first that meets the rule (``part``: "search", "search2" or "search3")."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    context = study.protocol.to_dict()
    results: dict[str, Any] = {"quick": quick, "part": part, "study": study.to_dict(), "runs": []}
    for i, cand in enumerate(study.runs):
        results["left"] = [c.name for c in study.runs[i:]]
        entry, = _cli.run_each([cand], lambda c: search_part.execute(c, study.protocol, checkpoints, progress),
                               _summary, progress, out=out, context=context)
        results["runs"].append(entry)
        results["left"] = [c.name for c in study.runs[i + 1:]]
        if search_part.meets_rule(entry):
            results["left"] = []
            results["stopped_early"] = [c.name for c in study.runs[i + 1:]]
            break
        _partial(out, results, command, start, cpu_start)
    results["chosen"], results["chosen_why"] = (lambda c, w: (c.to_dict() if c else None, w))(
        *search_part.select(results["runs"]))
    return _cli.finish(out, results, command, start, cpu_start, write_figures, write_tables, png)


def _stage(runs: list, execute: Callable[[Any], dict], results: dict, later: Callable[[], list[str]], out: Path,
           context: dict, command: str, start: float, cpu_start: float, progress: bool) -> None:
    """Run ``runs`` in order (each resumable), appending each entry to ``results["runs"]`` and rewriting
    ``results.json`` and ``tables.md`` after each; ``results["left"]``: the runs not yet finished + ``later()``."""
    for i, run in enumerate(runs):
        results["left"] = [r.name for r in runs[i:]] + later()
        entry, = _cli.run_each([run], execute, _summary, progress, out=out, context=context)
        results["runs"].append(entry)
        results["left"] = [r.name for r in runs[i + 1:]] + later()
        _partial(out, results, command, start, cpu_start)


def run_control(study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
                progress: bool = True) -> dict:
    """Stage 1 (the study's runs), then stage 2 from stage 1's chosen learning rates."""
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    context = study.protocol.to_dict()
    results: dict[str, Any] = {"quick": quick, "part": "control", "study": study.to_dict(), "runs": []}

    def execute(r):
        return control_part.execute(r, study.protocol, checkpoints, progress)

    n_arms = len({r.arm.name for r in study.runs})
    _stage(list(study.runs), execute, results, lambda: [f"stage 2: {len(study.seeds)} seeds × {n_arms} arms"],
           out, context, command, start, cpu_start, progress)
    second = control_stage2(control_part.chosen_lrs(results["runs"]), seeds=study.seeds)
    results["stage2"] = [r.to_dict() for r in second]
    _stage(list(second), execute, results, lambda: [], out, context, command, start, cpu_start, progress)
    results["left"] = []
    return _cli.finish(out, results, command, start, cpu_start, write_figures, write_tables, png)


def run_seeds(study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
              progress: bool = True) -> dict:
    """Seed 0 read (and checked) from ``study.seed0``, then the study's runs at the fresh seeds, in order."""
    start, cpu_start = time.perf_counter(), time.process_time()
    seed0 = seeds_part.load_seed0(study)  # before anything is written: a wrong seed 0 stops the part here
    out = _report.prepare_output(out)
    results: dict[str, Any] = {"quick": quick, "part": "seeds", "study": study.to_dict(), "runs": seed0}
    _stage(list(study.runs), lambda r: seeds_part.execute(r, study.protocol, checkpoints, progress), results,
           lambda: [], out, study.protocol.to_dict(), command, start, cpu_start, progress)
    results["left"] = []
    return _cli.finish(out, results, command, start, cpu_start, write_figures, write_tables, png)


def checkpoints_for(part: str, out: Path, quick: bool) -> Path:
    return out / "checkpoints" if quick else Path(f"runs/outliers-{part}-checkpoints")


def run_part(part: str, study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
             progress: bool = True) -> dict:
    if MODULES[part] is search_part:
        return run_search(study, out, checkpoints, command, quick, png, progress, part=part)
    if part == "seeds":
        return run_seeds(study, out, checkpoints, command, quick, png, progress)
    return run_control(study, out, checkpoints, command, quick, png, progress)


__all__ = ["run_part", "run_search", "run_control", "run_seeds", "write_figures", "write_tables", "checkpoints_for"]
