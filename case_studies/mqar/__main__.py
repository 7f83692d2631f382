"""python -m case_studies.mqar [--part main|sweep|conv2x2|pairs|vocab|seeds|long|vocab_long] [--quick] [--out DIR] [--checkpoints DIR] [--no-png] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``), scores, probes and
saves each model, then writes ``results.json``, ``tables.md`` and the figures (HTML + PNG) to ``--out``.
``--replot`` only redraws the figures and ``tables.md`` from the ``results.json`` already in ``--out``.
``--part NAME`` runs one of the parts of :mod:`case_studies.mqar.parts` instead (issue 18: learning-rate
sweep to convergence, the short-convolution 2 × 2, training with up to 64 pairs, Zoology's vocabulary, seeds 1
and 2 of the headline cells, softmax and linear attention trained longer, softmax and DeltaNet trained longer at
vocabulary 8192), into
``results/NAME/`` (``runs/mqar-NAME-quick`` with ``--quick``); each part resumes after an interruption.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

from .. import _cli, _report
from . import figures, part_figures
from .config import FULL, QUICK, Study
from .part_run import execute_part
from .part_seeds import load_sources, seed0_cells, seed0_entries
from .part_tables import part_tables
from .parts import PARTS, PartStudy
from .run import execute
from .tables import tables

MODULE = "case_studies.mqar"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    runs = results["runs"]
    trained_kv = max(s["num_kv_pairs"] for s in results["study"]["protocol"]["train_settings"])
    figs = {"accuracy": figures.accuracy_figure(runs), "capacity_sweep": figures.sweep_figure(runs, trained_kv),
            "readout_by_lag": figures.readout_figure(runs)}
    if any(r.get("probe") for r in runs):
        for by in ("n_stored", "lag"):
            for metric in ("fidelity", "retrieval_error", "decodes"):
                figs[f"probe_{metric}_by_{by}"] = figures.probe_grid(runs, by, metric)
        figs["pairs_fidelity_at_write"] = figures.pair_grid(runs, "fidelity", trained_kv, at="write")
        figs["pairs_decodes_at_end"] = figures.pair_grid(runs, "decodes", trained_kv, at="end")
        if any(r["probe"].get("beta_by_pair") for r in runs if r.get("probe")):
            figs["pairs_write_strength"] = figures.pair_grid(runs, "beta", trained_kv)
    return _report.write_figures(figs, out, png=png)


def _summary(run, entry: dict) -> str:
    acc = ", ".join(f"{a['accuracy']:.3f}" for a in entry["accuracy"])
    return f"{run.name}: accuracy {acc} ({entry['train_seconds']:.0f} s training)"


def run_study(study: Study, out: Path, checkpoints: Path, command: str, quick: bool, png: bool = True,
              progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    entries = _cli.run_each(
        study.runs, lambda run: execute(run, study.protocol, checkpoints, command, progress=progress),
        _summary, progress, out=out, context=study.protocol.to_dict())
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    return _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png)


def write_part_figures(results: dict, out: Path, png: bool) -> list[Path]:
    return _report.write_figures(part_figures.figures(results), out, png=png)


def _part_summary(run, entry: dict) -> str:
    acc = ", ".join(f"{a['accuracy']:.3f}" for a in entry["accuracy"])
    return (f"{run.name}: accuracy {acc} ({entry['stop']} at step {entry['steps']}, "
            f"{entry['train_seconds']:.0f} s training)")


def run_part(study: PartStudy, part: str, out: Path, command: str, quick: bool, png: bool = True,
             progress: bool = True, full: Optional[PartStudy] = None) -> dict:
    """Run ``study`` (``full``'s runs, or those ``--only`` chose) into ``out``; with ``--only``, the other runs of
    ``full`` already in ``out/results.json`` are kept (:func:`case_studies._cli.keep_earlier_runs`)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    # seed 0 of cells this study does not run itself, from the committed parts (checked before any training)
    reused = seed0_entries(study, load_sources(part)) if seed0_cells(study) else []
    out = _report.prepare_output(out)
    entries = _cli.run_each(study.runs, lambda run: execute_part(run, study, progress=progress), _part_summary,
                            progress, out=out, context={k: v for k, v in study.to_dict().items() if k != "runs"})
    study, entries, earlier = _cli.keep_earlier_runs(out, full or study, study, entries, quick)
    results = {"quick": quick, "part": part, "study": study.to_dict(), "runs": entries}
    if earlier:
        results["earlier"] = earlier
    if reused:
        results["reused"] = reused
    return _cli.finish(out, results, command, start, cpu_start, write_part_figures, part_tables, png)


def main(argv=None) -> None:
    ap = _cli.study_parser("mqar", __doc__, quick_help="tiny models and tasks, seconds", only_example="mqar-delta-d64")
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="where to save each model as <dir>/mqar-<mixer>-d<d_model> (default: <out>/checkpoints)")
    ap.add_argument("--part", choices=["main", *PARTS], default="main",
                    help="main: the study (results/); sweep, conv2x2, pairs, vocab, seeds, long, vocab_long: the parts of issue 18 "
                         "(results/<part>/; see case_studies/mqar/parts.py)")
    args = ap.parse_args(argv)
    out = _cli.output_dir(args, "mqar", args.part)
    if args.part != "main":
        if args.checkpoints is not None:
            ap.error("--checkpoints is for the main study; the parts save no models")
        if args.replot:
            _cli.redraw(ap, out, write_part_figures, part_tables, png=not args.no_png)
            print(f"redrew the figures and tables.md in {out}")
            return
        full, quick = PARTS[args.part]
        study = _cli.select_runs(ap, quick if args.quick else full, args.only)
        _cli.set_threads(ap, args.threads)
        results = run_part(study, args.part, out, _report.command_line(MODULE, argv), args.quick,
                           png=not args.no_png, full=quick if args.quick else full)
        print(part_tables(results))
        print(f"wrote {out}/results.json, tables.md and the figures")
        return
    if args.replot:
        print(tables(_cli.redraw(ap, out, write_figures, tables, png=not args.no_png)))
        return
    study = _cli.select_runs(ap, QUICK if args.quick else FULL, args.only)
    _cli.set_threads(ap, args.threads)
    checkpoints = args.checkpoints or out / "checkpoints"
    command = _report.command_line(MODULE, argv)
    results = run_study(study, out, checkpoints, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json, figures and checkpoints in {checkpoints}")


if __name__ == "__main__":
    main()
