"""python -m case_studies.capacity [--part main|favor|uncapped] [--quick] [--out DIR] [--no-png] [--only NAME ...] [--threads N] [--replot] [--partial]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) by the paper's protocol,
evaluates and probes each model, then writes ``results.json``, ``tables.md`` and the figures (HTML + PNG).
``--part favor``: the FAVOR+ 2 × 2 with seeds instead (``config.FAVOR_PART``), into ``results/favor/``.
``--part uncapped``: setting 1 near each capacity to the paper's stopping rule, with seeds (``config.UNCAPPED_PART``),
into ``results/uncapped/``. Every part keeps each finished run in ``DIR/.progress`` until the whole part is done:
the same command, interrupted, continues from there; ``--partial`` writes results.json, tables.md and the figures
from the runs finished so far without training (the progress stays).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench import atomic

from .. import _cli, _report
from . import favor_part, figures, paper, uncapped_part
from .config import PARTS, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.capacity"


def write_figures(results: dict, out: Path, png: bool) -> list[str]:
    runs = results["runs"]
    if results.get("part", "main") == "uncapped":
        figs = {"uncapped_loss_vs_S": uncapped_part.figure(results)}
        _report.write_figures(figs, out, png=png)
        return list(figs)
    if results.get("part", "main") == "favor":
        figs = {"favor_loss_vs_S": favor_part.figure(runs)}
        _report.write_figures(figs, out, png=png)
        return list(figs)
    figs = {"loss_vs_S": figures.loss_vs_keys(runs, paper.FINAL_LOSS),
            "learning_curves": figures.learning_curves(runs)}
    if any(r["probe"] for r in runs):
        figs["probe_vs_accuracy"] = figures.probe_vs_accuracy(runs)
    _report.write_figures(figs, out, png=png)
    return list(figs)


def write_tables(results: dict) -> str:
    return {"favor": favor_part.tables, "uncapped": uncapped_part.tables}.get(results.get("part", "main"), tables)(results)


def _context(study: Study) -> dict:
    """What a finished run's saved entry must have been made under (all of the study but its runs)."""
    return {k: v for k, v in study.to_dict().items() if k != "runs"}


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True,
              part: str = "main") -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = _cli.run_each(
        study.runs, lambda run: execute(run, study, progress=progress),
        lambda run, e: (f"{run.name}: final eval loss {e['final_eval_loss']:.4f}, acc {e['final_eval_acc']:.3f} "
                        f"({e['stop']} at step {e['steps']}, {e['train_seconds']:.0f} s)"),
        progress, out=out, context=_context(study))
    results = {"quick": quick, "part": part, "study": study.to_dict(), "paper_source": paper.SOURCE,
               "train_cpu_seconds": round(time.process_time() - cpu_start, 1), "runs": entries}
    results["figures"] = write_figures(results, out, png)
    atomic.write_text(out / "tables.md", write_tables(results))
    _report.write_results(out, results, command, time.perf_counter() - start)
    shutil.rmtree(out / _cli.PROGRESS_DIR, ignore_errors=True)
    return results


def write_partial(study: Study, out: Path, command: str, quick: bool, png: bool = True, part: str = "main") -> dict:
    """results.json (``partial``: true, ``pending``: the runs not finished), tables.md and the figures from the
    runs of ``study`` finished so far in ``out/.progress``; trains nothing and keeps the progress."""
    start = time.perf_counter()
    entries = _cli.finished_entries(study.runs, out, _context(study))
    done = {e["name"] for e in entries}
    results = {"quick": quick, "part": part, "partial": True, "study": study.to_dict(), "paper_source": paper.SOURCE,
               "train_cpu_seconds": round(sum(e.get("train_cpu_seconds", 0.0) for e in entries), 1),
               "pending": [r.name for r in study.runs if r.name not in done], "runs": entries}
    results["figures"] = write_figures(results, out, png)
    atomic.write_text(out / "tables.md", write_tables(results))
    _report.write_results(out, results, command, time.perf_counter() - start)
    return results


def main(argv=None) -> None:
    ap = _cli.study_parser("capacity", __doc__, quick_help="tiny S and step caps, seconds",
                           only_example="s1-S40-elu1-sum")
    ap.add_argument("--part", choices=sorted(PARTS), default="main",
                    help="main: the paper's grid (results/); favor: the FAVOR+ 2 × 2 with seeds (results/favor/); "
                         "uncapped: setting 1 near each capacity to the paper's stopping rule (results/uncapped/)")
    ap.add_argument("--partial", action="store_true",
                    help="write results.json, tables.md and figures from the runs finished so far in --out/.progress "
                         "(no training; rerun without --partial to continue)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "capacity", args.part)
    if args.replot:
        _cli.redraw(ap, out, write_figures, write_tables, png=not args.no_png)
        print(f"redrew the figures and tables.md in {out}")
        return
    full, quick = PARTS[args.part]
    study = _cli.select_runs(ap, quick if args.quick else full, args.only)
    _cli.set_threads(ap, args.threads)
    command = _report.command_line(MODULE, argv)
    if args.partial:
        if not (out / _cli.PROGRESS_DIR).is_dir():
            ap.error(f"--partial needs the finished runs in {out / _cli.PROGRESS_DIR}; run the part first")
        results = write_partial(study, out, command, args.quick, png=not args.no_png, part=args.part)
        print(write_tables(results))
        print(f"wrote {out}/results.json (partial: {len(results['runs'])} of {len(study.runs)} runs), tables.md "
              f"and {len(results['figures'])} figures; the progress in {out / _cli.PROGRESS_DIR} stays")
        return
    results = run_study(study, out, command, args.quick, png=not args.no_png, part=args.part)
    print(write_tables(results))
    print(f"wrote {out}/results.json, tables.md and {len(results['figures'])} figures")


if __name__ == "__main__":
    main()
