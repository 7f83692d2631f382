"""python -m case_studies.transfer [--quick] [--out DIR] [--no-png] [--only RUN ...] [--threads N] [--replot]

Trains each run's 4-layer text model (python-topics plus synthetic mood and quirky lines), then: logit vs tuned
lens perplexity by layer; CAA steering on the residual stream and on the fast-weight state; a truth probe trained
on Alice's items and read on Bob's. Every run is resumable (a killed study continues where it stopped). Writes
``results.json``, ``tables.md`` and the figures to ``--out``.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import _cli, _report
from .config import FULL, QUICK
from .figures import figures
from .run import execute, input_baseline
from .tables import headline, tables

MODULE = "case_studies.transfer"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    return _report.write_figures(figures(results), out, png=png)


def _summary(run, entry: dict) -> str:
    top = entry["lens"][-2] if len(entry["lens"]) > 1 else entry["lens"][-1]
    return (f"{run.name}: val ppl {entry['val_ppl']:.2f}, layer {top['layer']} logit/tuned ppl "
            f"{top['logit_ppl']:.1f}/{top['tuned_ppl']:.1f}, marker acc {entry['steering']['marker_accuracy']:.2f}, "
            f"{entry['seconds']}")


def main(argv=None) -> None:
    ap = _cli.study_parser("transfer", __doc__, quick_help="two tiny models for a few steps, under a minute",
                           only_example="delta-s0 softmax-s1")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "transfer")
    if args.replot:
        _cli.redraw(ap, out, write_figures, tables, png=not args.no_png)
        return
    study = _cli.select_runs(ap, QUICK if args.quick else FULL, args.only)
    _cli.set_threads(ap, args.threads)
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    corpus_root = out / ".corpus"
    entries = _cli.run_each(study.runs, lambda run: execute(run, study.protocol, corpus_root, progress=True),
                            _summary, out=out, context=study.protocol.to_dict())
    baselines = {str(s): input_baseline(study.protocol, s) for s in sorted({r.seed for r in study.runs})}
    results = {"quick": args.quick, "study": study.to_dict(), "runs": entries, "input_baseline": baselines}
    command = _report.command_line(MODULE, argv)
    written = _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png=not args.no_png)
    print(headline(written))
    print(f"\n{command}  ({written['wall_seconds']} s wall)")


if __name__ == "__main__":
    main()
