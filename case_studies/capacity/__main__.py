"""python -m case_studies.capacity [--part main|favor] [--quick] [--out DIR] [--no-png] [--only NAME ...] [--threads N] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) by the paper's protocol,
evaluates and probes each model, then writes ``results.json``, ``tables.md`` and the figures (HTML + PNG).
``--part favor``: the FAVOR+ 2 × 2 with seeds instead (``config.FAVOR_PART``), into ``results/favor/``.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench import atomic

from .. import _cli, _report
from . import favor_part, figures, paper
from .config import PARTS, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.capacity"


def write_figures(results: dict, out: Path, png: bool) -> list[str]:
    runs = results["runs"]
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
    return (favor_part.tables if results.get("part", "main") == "favor" else tables)(results)


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True,
              part: str = "main") -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = _cli.run_each(
        study.runs, lambda run: execute(run, study, progress=progress),
        lambda run, e: (f"{run.name}: final eval loss {e['final_eval_loss']:.4f}, acc {e['final_eval_acc']:.3f} "
                        f"({e['stop']} at step {e['steps']}, {e['train_seconds']:.0f} s)"),
        progress, out=out, context={k: v for k, v in study.to_dict().items() if k != "runs"})
    results = {"quick": quick, "part": part, "study": study.to_dict(), "paper_source": paper.SOURCE,
               "train_cpu_seconds": round(time.process_time() - cpu_start, 1), "runs": entries}
    results["figures"] = write_figures(results, out, png)
    atomic.write_text(out / "tables.md", write_tables(results))
    _report.write_results(out, results, command, time.perf_counter() - start)
    shutil.rmtree(out / _cli.PROGRESS_DIR, ignore_errors=True)
    return results


def main(argv=None) -> None:
    ap = _cli.study_parser("capacity", __doc__, quick_help="tiny S and step caps, seconds",
                           only_example="s1-S40-elu1-sum")
    ap.add_argument("--part", choices=sorted(PARTS), default="main",
                    help="main: the paper's grid (results/); favor: the FAVOR+ 2 × 2 with seeds (results/favor/)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "capacity")
    if args.part != "main" and args.out is None:
        out = Path(f"runs/capacity-{args.part}-quick") if args.quick else out / args.part
    if args.replot:
        _cli.redraw(ap, out, write_figures, write_tables, png=not args.no_png)
        print(f"redrew the figures and tables.md in {out}")
        return
    full, quick = PARTS[args.part]
    study = _cli.select_runs(ap, quick if args.quick else full, args.only)
    _cli.set_threads(ap, args.threads)
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, command, args.quick, png=not args.no_png, part=args.part)
    print(write_tables(results))
    print(f"wrote {out}/results.json, tables.md and {len(results['figures'])} figures")


if __name__ == "__main__":
    main()
