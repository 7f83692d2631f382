"""python -m case_studies.language_modelling [--quick] [--out DIR] [--no-png] [--only NAME ...] [--part I/N]
                                          [--threads N] [--replot]

Trains every run of the study (``config.FULL``: 15 models × seeds 0, 1, 2, or the seconds-long
``config.QUICK``) on the same token budget, scores each on the held-out documents, then writes
``results.json``, ``tables.md`` and the figures (HTML + PNG) to ``--out``. After each run the runs so far
are written to ``<out>/partial/results.json``. ``--part I/N`` runs every N-th run starting at the I-th
(1-based), so N parts run separately (e.g. in two shells, each with its own ``--out``);
``python -m case_studies.language_modelling.merge OUT SRC ...`` joins them. ``--replot`` only redraws the
figures and ``tables.md`` from the ``results.json`` already in ``--out``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .. import _cli, _report
from . import figures
from .config import FULL, QUICK, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.language_modelling"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    runs = [r for r in results["runs"]]
    figs = {"perplexity_by_model": figures.perplexity_figure(runs),
            "ours_vs_paper": figures.paper_figure(runs),
            "learning_curves": figures.learning_curves(runs)}
    return _report.write_figures(figs, out, png=png)


def _summary(run, entry: dict) -> str:
    return (f"{run.name}: val ppl {entry['val_ppl']:.3f}, {entry['val_bpb']:.4f} bits/byte "
            f"({entry['train_seconds']:.0f} s training)")


def select_part(ap, study: Study, part: str | None) -> Study:
    """``--part I/N``: every N-th run of ``study`` from the I-th (1-based); a parser error for a bad value."""
    if part is None:
        return study
    try:
        i, n = (int(x) for x in part.split("/"))
    except ValueError:
        ap.error(f"--part must look like 1/2, got {part!r}")
    if not 1 <= i <= n:
        ap.error(f"--part I/N needs 1 ≤ I ≤ N, got {part!r}")
    return dataclasses.replace(study, runs=study.runs[i - 1::n])


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    done: list[dict] = []

    def one(run) -> dict:
        entry = execute(run, study.protocol)
        done.append(entry)
        partial = _report.prepare_output(out / "partial")
        _report.write_results(partial, {"quick": quick, "study": study.to_dict(), "runs": done}, command,
                              time.perf_counter() - start, compact_arrays=True)
        return entry

    entries = _cli.run_each(study.runs, one, _summary, progress, out=out, context=study.protocol.to_dict())
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    return _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png)


def main(argv=None) -> None:
    ap = _cli.study_parser("language_modelling", __doc__, quick_help="tiny models, a few steps, seconds",
                           only_example="delta-dpfp2-s0 softmax-s1")
    ap.add_argument("--part", default=None, metavar="I/N", help="run every N-th run from the I-th (1-based)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "language_modelling")
    if args.replot:
        print(tables(_cli.redraw(ap, out, write_figures, tables, png=not args.no_png)))
        return
    study = select_part(ap, _cli.select_runs(ap, QUICK if args.quick else FULL, args.only), args.part)
    _cli.set_threads(ap, args.threads)
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and the figures")


if __name__ == "__main__":
    main()
