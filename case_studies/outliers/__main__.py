"""python -m case_studies.outliers [--quick] [--out DIR] [--checkpoints DIR] [--no-png] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) with checkpoints,
traces the outlier statistics of every checkpoint, quantises each final model to W8A8 and writes
``results.json``, ``tables.md`` and the figures (HTML + PNG) to ``--out``. ``--replot`` only redraws the
figures and ``tables.md`` from the ``results.json`` already in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import _report
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
    entries = []
    for run in tqdm(study.runs, desc="runs", disable=not progress):
        entries.append(execute(run, study.protocol, checkpoints, progress=progress))
        if progress:
            e = entries[-1]
            tqdm.write(f"{run.name}: ppl {e['val_ppl']:.2f} → W8A8 {e['w8a8']['per_tensor']['ppl_w8a8']:.2f}, "
                       f"Kurt resid {e['final_kurtosis']['resid_post']:.2f} ({e['train_seconds']:.0f} s training)")
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    write_figures(results, out, png)
    (out / "tables.md").write_text(tables(results))
    results["cpu_seconds"] = round(time.process_time() - cpu_start, 1)  # this process only, not kaleido's browser
    _report.write_results(out, results, command, time.perf_counter() - start, compact_arrays=True)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny models, seconds (the tests run this)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory (default: case_studies/outliers/results, or runs/outliers-quick with --quick)")
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="where each run keeps its step_N/ checkpoints (default: runs/outliers-checkpoints, "
                         "or <out>/checkpoints with --quick)")
    ap.add_argument("--no-png", action="store_true", help="write the figures as HTML only (no kaleido/Chromium)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these runs (e.g. delta-op-soap)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--replot", action="store_true", help="redraw figures and tables.md from --out/results.json")
    args = ap.parse_args(argv)
    study = QUICK if args.quick else FULL
    out = args.out or Path("runs/outliers-quick" if args.quick else "case_studies/outliers/results")
    if args.replot:
        path = out / "results.json"
        if not path.is_file():
            ap.error(f"--replot needs {path}: run the study into --out {out} first")
        results = json.loads(path.read_text())
        write_figures(results, out, png=not args.no_png)
        (out / "tables.md").write_text(tables(results))
        print(tables(results))
        return
    if args.only:
        names = [r.name for r in study.runs]
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            ap.error(f"unknown run(s) {unknown}; known: {names}")
        study = Study(study.protocol, tuple(r for r in study.runs if r.name in args.only))
    if args.threads < 1:
        ap.error("--threads must be ≥ 1")
    torch.set_num_threads(args.threads)
    checkpoints = args.checkpoints or (out / "checkpoints" if args.quick else Path("runs/outliers-checkpoints"))
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, checkpoints, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and figures; checkpoints in {checkpoints}")


if __name__ == "__main__":
    main()
