"""python -m case_studies.capacity [--quick] [--out DIR] [--no-png] [--only NAME ...] [--threads N] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) by the paper's protocol,
evaluates and probes each model, then writes ``results.json``, ``tables.md`` and the figures (HTML + PNG).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import _report
from . import figures, paper
from .config import FULL, QUICK, Study
from .run import execute
from .tables import tables

MODULE = "case_studies.capacity"


@contextmanager
def _png_server(png: bool):
    """Keep one Chromium open for all PNGs (kaleido's sync server) instead of one per figure; if it cannot
    start, figures fall back to kaleido's default (whose errors _report explains)."""
    started = False
    if png:
        try:
            import kaleido

            kaleido.start_sync_server(silence_warnings=True)
            started = True
        except Exception:
            pass
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="The kopts argument is ignored")
            yield
    finally:
        if started:
            kaleido.stop_sync_server(silence_warnings=True)


def write_figures(results: dict, out: Path, png: bool) -> list[str]:
    runs = results["runs"]
    figs = {"loss_vs_S": figures.loss_vs_keys(runs, paper.FINAL_LOSS),
            "learning_curves": figures.learning_curves(runs)}
    if any(r["probe"] for r in runs):
        figs["probe_vs_accuracy"] = figures.probe_vs_accuracy(runs)
    with _png_server(png):
        for name, fig in figs.items():
            _report.write_figure(fig, out, name, png=png)
    return list(figs)


def run_study(study: Study, out: Path, command: str, quick: bool, png: bool = True, progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = []
    for run in tqdm(study.runs, desc="runs", disable=not progress):
        entries.append(execute(run, study, progress=progress))
        e = entries[-1]
        if progress:
            tqdm.write(f"{run.name}: final eval loss {e['final_eval_loss']:.4f}, acc {e['final_eval_acc']:.3f} "
                       f"({e['stop']} at step {e['steps']}, {e['train_seconds']:.0f} s)")
    results = {"quick": quick, "study": study.to_dict(), "paper_source": paper.SOURCE,
               "train_cpu_seconds": round(time.process_time() - cpu_start, 1), "runs": entries}
    results["figures"] = write_figures(results, out, png)
    (out / "tables.md").write_text(tables(results))
    _report.write_results(out, results, command, time.perf_counter() - start)
    return results


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog=f"python -m {MODULE}", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny S and step caps, seconds (the tests run this)")
    ap.add_argument("--out", type=Path, default=None,
                    help="output directory (default: case_studies/capacity/results, or runs/capacity-quick with --quick)")
    ap.add_argument("--no-png", action="store_true", help="write the figures as HTML only (no kaleido/Chromium)")
    ap.add_argument("--only", nargs="+", default=None, metavar="NAME", help="run only these runs (e.g. s1-S40-elu1-sum)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--replot", action="store_true",
                    help="only redraw the figures and tables.md from the results.json already in --out (no training)")
    args = ap.parse_args(argv)
    out = args.out or Path("runs/capacity-quick" if args.quick else "case_studies/capacity/results")
    if args.replot:
        path = out / "results.json"
        if not path.is_file():
            ap.error(f"--replot needs {path}; run the study first or point --out at its folder")
        results = json.loads(path.read_text())
        names = write_figures(results, out, png=not args.no_png)
        (out / "tables.md").write_text(tables(results))
        print(f"redrew {', '.join(names)} and tables.md in {out}")
        return
    study = QUICK if args.quick else FULL
    if args.only:
        names = [r.name for r in study.runs]
        unknown = sorted(set(args.only) - set(names))
        if unknown:
            ap.error(f"unknown run(s) {unknown}; known: {names}")
        study = Study(tuple(r for r in study.runs if r.name in args.only), study.train, study.probe_sequences,
                      study.seed)
    if args.threads < 1:
        ap.error("--threads must be ≥ 1")
    torch.set_num_threads(args.threads)
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, tables.md and {len(results['figures'])} figures")


if __name__ == "__main__":
    main()
