"""python -m case_studies.write_sae [--quick] [--out DIR] [--no-png] [--threads N] [--replot]

Trains a WriteSAE on the state writes of each studied head of a bundled checkpoint, runs the substitution test
(the firing atom installed in place of the native write vs the write removed / a silent atom at the same norm),
the sparsity sweep, and an ordinary SAE on a hook; writes ``results.json``, ``tables.md``, the dictionaries
(safetensors) and the figures to ``--out``, and prints the headline table.
"""

from __future__ import annotations

import time
from pathlib import Path

from .. import _cli, _report
from .config import FULL, QUICK
from .figures import figures
from .run import execute
from .tables import headline, tables

MODULE = "case_studies.write_sae"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    return _report.write_figures(figures(results), out, png=png)


def main(argv=None) -> None:
    ap = _cli.study_parser("write_sae", __doc__, quick_help="the toy checkpoint, tiny dictionaries, seconds",
                           only_example="(no runs to select)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "write_sae")
    if args.replot:
        _cli.redraw(ap, out, write_figures, tables, png=not args.no_png)
        return
    if args.only:
        ap.error("--only does not apply: the study is one run")
    _cli.set_threads(ap, args.threads)
    study = QUICK if args.quick else FULL
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    results = {"quick": args.quick, "study": study.to_dict(), **execute(study, out, progress=True)}
    command = _report.command_line(MODULE, argv)
    written = _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png=not args.no_png)
    print(headline(written))
    print(f"\n{command}  ({written['wall_seconds']} s wall)")


if __name__ == "__main__":
    main()
