"""python -m case_studies.capacity [--quick] [--out DIR] [--no-png] [--only NAME ...] [--threads N] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) by the paper's protocol,
evaluates and probes each model, then writes ``results.json``, ``tables.md`` and the figures (HTML + PNG).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench import atomic

from .. import _cli, _report
from . import figures, paper
from .config import FULL, QUICK, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.capacity"


def write_figures(results: dict, out: Path, png: bool) -> list[str]:
    runs = results["runs"]
    figs = {"loss_vs_S": figures.loss_vs_keys(runs, paper.FINAL_LOSS),
            "learning_curves": figures.learning_curves(runs)}
    if any(r["probe"] for r in runs):
        figs["probe_vs_accuracy"] = figures.probe_vs_accuracy(runs)
    _report.write_figures(figs, out, png=png)
    return list(figs)


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = _cli.run_each(
        study.runs, lambda run: execute(run, study, progress=progress),
        lambda run, e: (f"{run.name}: final eval loss {e['final_eval_loss']:.4f}, acc {e['final_eval_acc']:.3f} "
                        f"({e['stop']} at step {e['steps']}, {e['train_seconds']:.0f} s)"),
        progress, out=out, context={k: v for k, v in study.to_dict().items() if k != "runs"})
    results = {"quick": quick, "study": study.to_dict(), "paper_source": paper.SOURCE,
               "train_cpu_seconds": round(time.process_time() - cpu_start, 1), "runs": entries}
    results["figures"] = write_figures(results, out, png)
    atomic.write_text(out / "tables.md", tables(results))
    _report.write_results(out, results, command, time.perf_counter() - start)
    shutil.rmtree(out / _cli.PROGRESS_DIR, ignore_errors=True)
    return results


def main(argv=None) -> None:
    ap = _cli.study_parser("capacity", __doc__, quick_help="tiny S and step caps, seconds",
                           only_example="s1-S40-elu1-sum")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "capacity")
    if args.replot:
        _cli.redraw(ap, out, write_figures, tables, png=not args.no_png)
        print(f"redrew the figures and tables.md in {out}")
        return
    study = _cli.select_runs(ap, QUICK if args.quick else FULL, args.only)
    _cli.set_threads(ap, args.threads)
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and {len(results['figures'])} figures")


if __name__ == "__main__":
    main()
