"""python -m case_studies.outliers [--part main|search|search2|search3|control|seeds] [--quick] [--out DIR] [--checkpoints DIR] [--no-png] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) with checkpoints,
traces the outlier statistics of every checkpoint, quantises each final model to W8A8 and writes
``results.json``, ``tables.md`` and the figures (HTML + PNG) to ``--out``. ``--replot`` only redraws the
figures and ``tables.md`` from the ``results.json`` already in ``--out``.
``--part search``: the declared search for a positive control (``config.SEARCH``, into ``results/search/``);
``--part search2``: the second declared search (``config.SEARCH2``, into ``results/search2/``);
``--part search3``: the third, on 18 times more text (``config.SEARCH3``, into ``results/search3/``);
``--part control``: {pre-norm, OP} × {AdamW, SOAP} with an lr sweep and seeds at the configuration the
search chose (``config.CONTROL``, into ``results/control/``); ``--part seeds``: the main grid at seeds 1 and 2
(``config.SEEDS``; seed 0 read from ``results/results.json``, into ``results/seeds/``); all resumable (run the
same command again).
"""

from __future__ import annotations

import time
from pathlib import Path


from .. import _cli, _report
from . import parts
from .config import PARTS, Study
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
    ap.add_argument("--part", choices=sorted(PARTS), default="main",
                    help="main: the 8-run study (results/); search: the search for a positive control "
                         "(results/search/); search2, search3: the second and third declared searches (results/search2/, results/search3/); control: OP "
                         "and SOAP against the chosen configuration, lr sweep and seeds (results/control/); seeds: "
                         "the main grid at seeds 1 and 2, seed 0 from results/results.json (results/seeds/)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "outliers", args.part)
    if args.replot:
        figs, tabs = (write_figures, tables) if args.part == "main" else (parts.write_figures, parts.write_tables)
        print(tabs(_cli.redraw(ap, out, figs, tabs, png=not args.no_png)))
        return
    full, quick = PARTS[args.part]
    if full is None and not args.quick:
        ap.error(f"--part {args.part}: config.CONTROL_CANDIDATE is not set; run --part search first and set it "
                 "to the candidate it chose")
    study = _cli.select_runs(ap, quick if args.quick else full, args.only)
    _cli.set_threads(ap, args.threads)
    if args.part == "main":
        checkpoints = args.checkpoints or (out / "checkpoints" if args.quick else Path("runs/outliers-checkpoints"))
    else:
        checkpoints = args.checkpoints or parts.checkpoints_for(args.part, out, args.quick)
    command = _report.command_line(MODULE, argv)
    if args.part == "main":
        results = run_study(study, out, checkpoints, command, args.quick, png=not args.no_png)
        print(tables(results))
    else:
        results = parts.run_part(args.part, study, out, checkpoints, command, args.quick, png=not args.no_png)
        print(parts.write_tables(results))
    print(f"wrote {out}/results.json, tables.md and figures; checkpoints in {checkpoints}")


if __name__ == "__main__":
    main()
