"""python -m case_studies.memorization [--quick] [--out DIR] [--no-png] [--threads N] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) on real text with
canaries, probes recitation (by repetition, prefix length, prefix offset, prompt position), edits each
model with K-FAC and SVD over the ρ sweep, then writes ``results.json``, ``tables.md`` and the figures
(HTML + PNG) to ``--out``. ``--replot`` only redraws the figures and ``tables.md`` from the
``results.json`` already in ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path


from .. import _cli, _report
from . import figures
from .config import FULL, QUICK, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.memorization"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    runs = results["runs"]
    figs = {"tradeoff": figures.tradeoff_figure(runs, results["study"]["protocol"]["ppl_budget"]),
            "offsets": figures.offset_figure(runs), "seeds": figures.seed_figure(runs)}
    return _report.write_figures(figs, out, png=png)


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    done: list[dict] = []

    def one(run) -> dict:  # after each run, the runs so far in <out>/partial/results.json
        entry = execute(run, study.protocol, progress=progress)
        done.append(entry)
        partial = _report.prepare_output(out / "partial")
        _report.write_results(partial, {"quick": quick, "study": study.to_dict(), "runs": done}, command,
                              time.perf_counter() - start, compact_arrays=True)
        return entry

    entries = _cli.run_each(
        study.runs, one,
        lambda run, e: (f"{run.name}: val ppl {e['val_ppl']:.2f}, {len(e['memorized'])} canaries recited "
                        f"({e['train_seconds']:.0f} s training, {e['probe_edit_seconds']:.0f} s probes and edits)"),
        progress, out=out, context=study.protocol.to_dict())
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    return _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png)


def main(argv=None) -> None:
    ap = _cli.study_parser("memorization", __doc__, quick_help="tiny models and data, seconds",
                           only_example="mem-delta-s1")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "memorization")
    if args.replot:
        print(tables(_cli.redraw(ap, out, write_figures, tables, png=not args.no_png)))
        return
    study = _cli.select_runs(ap, QUICK if args.quick else FULL, args.only)
    _cli.set_threads(ap, args.threads)
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and the figures")


if __name__ == "__main__":
    main()
