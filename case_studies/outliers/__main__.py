"""python -m case_studies.outliers [--quick] [--out DIR] [--checkpoints DIR] [--no-png] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) with checkpoints,
traces the outlier statistics of every checkpoint, quantises each final model to W8A8 and writes
``results.json``, ``tables.md`` and the figures (HTML + PNG) to ``--out``. ``--replot`` only redraws the
figures and ``tables.md`` from the ``results.json`` already in ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path


from .. import _cli, _report
from .config import FULL, QUICK, Study
from .figures import all_figures
from .run import execute
from .tables import tables

MODULE = "case_studies.outliers"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    return _report.write_figures(all_figures(results["runs"]), out, png=png)


def run_study(study: Study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
              progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = _cli.run_each(
        study.runs, lambda run: execute(run, study.protocol, checkpoints, progress=progress),
        lambda run, e: (f"{run.name}: ppl {e['val_ppl']:.2f} → W8A8 {e['w8a8']['per_tensor']['ppl_w8a8']:.2f}, "
                        f"Kurt resid {e['final_kurtosis']['resid_post']:.2f} ({e['train_seconds']:.0f} s training)"),
        progress, out=out, context=study.protocol.to_dict())
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    return _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png)


def main(argv=None) -> None:
    ap = _cli.study_parser("outliers", __doc__, quick_help="tiny models, seconds", only_example="delta-op-soap")
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="where each run keeps its step_N/ checkpoints (default: runs/outliers-checkpoints, "
                         "or <out>/checkpoints with --quick)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "outliers")
    if args.replot:
        print(tables(_cli.redraw(ap, out, write_figures, tables, png=not args.no_png)))
        return
    study = _cli.select_runs(ap, QUICK if args.quick else FULL, args.only)
    _cli.set_threads(ap, args.threads)
    checkpoints = args.checkpoints or (out / "checkpoints" if args.quick else Path("runs/outliers-checkpoints"))
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, checkpoints, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and figures; checkpoints in {checkpoints}")


if __name__ == "__main__":
    main()
