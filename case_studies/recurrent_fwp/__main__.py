"""python -m case_studies.recurrent_fwp [--quick | --long] [--out DIR] [--checkpoints DIR] [--no-png] [--only NAME ...] [--replot]

Trains every run of the study (``config.FULL``, or the seconds-long ``config.QUICK``) — Linear Transformer,
Delta Net, Recurrent Delta Net, Delta LSTM and softmax Transformer on code execution and on sequential
ListOps — tests and probes each, saves each model, then writes ``results.json``, ``tables.md`` and the
figures (HTML + PNG) to ``--out``. ``--replot`` only redraws the figures and ``tables.md``; ``--rescore`` recomputes the test accuracy (with its
per-kind breakdown) from the saved checkpoints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from workbench import atomic, load

from .. import _cli, _report
from . import figures
from .config import FULL, LONG, QUICK, TASKS, RunConfig, Study
from .evaluation import test_accuracy
from .run import execute
from .tables import tables

MODULE = "case_studies.recurrent_fwp"


def write_figures(results: dict, out: Path, png: bool) -> list[Path]:
    runs = results["runs"]
    figs = {"accuracy_sequence": figures.accuracy_figure(runs, "sequence"),
            "accuracy_answer": figures.accuracy_figure(runs, "answer"),
            "training": figures.training_figure(runs)}
    for task in TASKS:
        if any(r["run"]["task"] == task for r in runs):
            figs[f"decoding_{task}"] = figures.decoding_figure(runs, task)
    if any(r["keys"] for r in runs):
        figs["key_recurrent_share"] = figures.key_share_figure(runs)
    return _report.write_figures(figs, out, png=png)


def _summary(run, entry: dict) -> str:
    t = entry["test"]
    return (f"{run.name}: answer acc {t['answer_accuracy']:.3f}, sequence acc {t['sequence_accuracy']:.3f} "
            f"({entry['train_seconds']:.0f} s training)")


def run_study(study: Study, out: Path, checkpoints, command: str, quick: bool, png: bool = True,
              progress: bool = True) -> dict:
    start, cpu_start = time.perf_counter(), time.process_time()
    out = _report.prepare_output(out)
    partial = out / "partial.jsonl"  # each finished run's entry as it comes (removed when results.json is written)
    partial.write_text("")

    def one(run) -> dict:
        entry = execute(run, study.protocol, checkpoints, command, progress=progress)
        with partial.open("a") as f:
            f.write(json.dumps(entry) + "\n")
        return entry

    entries = _cli.run_each(study.runs, one, _summary, progress, out=out, context=study.protocol.to_dict())
    results = {"quick": quick, "study": study.to_dict(), "runs": entries}
    written = _cli.finish(out, results, command, start, cpu_start, write_figures, tables, png)
    partial.unlink()
    return written


def rescore(ap, out: Path, checkpoints: Path, command: str, png: bool) -> dict:
    """``--rescore``: every run's test accuracy again, from its saved checkpoint (same test seed), with the
    per-kind breakdown; refuses if an overall accuracy differs from the one recorded (another model).
    Writes the results back into ``out/results.json`` (recording this command under ``rescored``) and redraws."""
    results = _cli.replot_results(ap, out)
    study = Study.from_dict(results["study"])
    start = time.perf_counter()
    for entry in results["runs"]:
        directory = Path(checkpoints) / entry["name"]
        if not (directory / "recipe.json").is_file():
            ap.error(f"--rescore needs the checkpoint {directory}; run the study with --checkpoints {checkpoints}")
        run = RunConfig.from_dict(entry["run"])
        test = test_accuracy(load(directory), study.protocol.task(run.task), study.protocol.test_sequences,
                             study.protocol.test_seed(run.task))
        if test["answer_accuracy"] != entry["test"]["answer_accuracy"]:
            ap.error(f"{directory} scores {test['answer_accuracy']} where results.json has "
                     f"{entry['test']['answer_accuracy']}: not the model of this results.json")
        entry["test"] = test
    results["rescored"] = {"command": command, "wall_seconds": round(time.perf_counter() - start, 1)}
    atomic.write_text(Path(out) / "results.json", _report.results_json(results, compact_arrays=True))
    return _cli.redraw(ap, out, write_figures, tables, png)


def main(argv=None) -> None:
    ap = _cli.study_parser("recurrent_fwp", __doc__, quick_help="tiny models and tasks, seconds",
                           only_example="code-execution-rec-delta-s0")
    ap.add_argument("--checkpoints", type=Path, default=None,
                    help="where to save each model as <dir>/<run name> (default: runs/recurrent_fwp-checkpoints, "
                         "or none with --quick)")
    ap.add_argument("--long", action="store_true",
                    help="the supplement: the four cheaper models trained 4× longer (default --out: results/long)")
    ap.add_argument("--rescore", action="store_true",
                    help="recompute each run's test accuracy, with the per-kind breakdown, from its checkpoint "
                         "(--checkpoints) into the results.json in --out, then redraw")
    args = ap.parse_args(argv)
    if args.long and args.quick:
        ap.error("--long and --quick exclude each other")
    out = args.out or (Path("case_studies/recurrent_fwp/results/long") if args.long else _cli.output_dir(args, "recurrent_fwp"))
    if args.replot:
        print(tables(_cli.redraw(ap, out, write_figures, tables, png=not args.no_png)))
        return
    _cli.set_threads(ap, args.threads)
    checkpoints = args.checkpoints or (None if args.quick else
                                       Path("runs/recurrent_fwp-checkpoints" + ("-long" if args.long else "")))
    command = _report.command_line(MODULE, argv)
    if args.rescore:
        if checkpoints is None:
            ap.error("--rescore needs --checkpoints (a --quick run saves none unless given one)")
        print(tables(rescore(ap, out, checkpoints, command, png=not args.no_png)))
        return
    study = _cli.select_runs(ap, QUICK if args.quick else LONG if args.long else FULL, args.only)
    results = run_study(study, out, checkpoints, command, args.quick, png=not args.no_png)
    print(tables(results))
    print(f"wrote {out}/results.json and figures" + (f"; checkpoints in {checkpoints}" if checkpoints else ""))


if __name__ == "__main__":
    main()
