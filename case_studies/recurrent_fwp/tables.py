"""The README's tables, generated from results.json (plain dicts in, markdown out)."""

from __future__ import annotations

from typing import Any, Optional

from workbench.mixers import describe

from .baselines import baseline_accuracy
from .config import MIXERS_STUDIED, TASKS, Protocol
from .paper import NOT_IN_PAPER, PAPER_ACCURACY, PAPER_SPREAD, SECOND_HAND, SETTINGS

TASK_LABELS = {"code_execution": "code execution", "listops": "ListOps"}
PAPER_COLUMNS = {"code_execution": (SETTINGS[0], SETTINGS[1]), "listops": (SETTINGS[2], SETTINGS[3])}


def _pct(x: Optional[float]) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _ci(ci: list[float]) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _paper(mixer: str, setting: str) -> str:
    """The paper's number for ``mixer`` in ``setting``: "n/p" (model not in the paper), "n/f" (not found),
    else the value (± the quoted spread), with † when it is second-hand."""
    if mixer in NOT_IN_PAPER:
        return "n/p"
    value = PAPER_ACCURACY.get(mixer, {}).get(setting)
    if value is None:
        return "n/f"
    spread = PAPER_SPREAD.get((mixer, setting))
    return f"{value:.1f}" + (f" ± {spread:.0f}" if spread is not None else "") + (" †" if SECOND_HAND else "")


def _ordered(runs: list[dict], task: str) -> list[dict]:
    mine = [r for r in runs if r["run"]["task"] == task]
    return sorted(mine, key=lambda r: (MIXERS_STUDIED.index(r["run"]["mixer"]) if r["run"]["mixer"] in MIXERS_STUDIED
                                       else len(MIXERS_STUDIED), r["run"]["seed"]))


def accuracy_table(results: dict[str, Any], task: str) -> str:
    """Test accuracy (%) per run with Wilson 95 % intervals over the test sequences, beside the paper's."""
    runs = _ordered(results["runs"], task)
    if not runs:
        return f"(no {TASK_LABELS[task]} runs)"
    cols = PAPER_COLUMNS[task]
    head = ["model", "seed", "answer acc. [95 % CI]", "sequence acc. [95 % CI]", "train s"] + [f"paper: {c}" for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        t, m = r["test"], r["run"]["mixer"]
        lines.append("| " + " | ".join([describe(m), str(r["run"]["seed"]),
                                       f"{_pct(t['answer_accuracy'])} {_ci(t['answer_ci95'])}",
                                       f"{_pct(t['sequence_accuracy'])} {_ci(t['sequence_ci95'])}",
                                       f"{r['train_seconds']:.0f}"] + [_paper(m, c) for c in cols]) + " |")
    n = runs[0]["test"]
    if "study" in results:  # the rules of baselines.py on the same test sequences
        protocol = Protocol.from_dict(results["study"]["protocol"])
        rules = baseline_accuracy(protocol.task(task), n["n_sequences"], n["seed"])
        for rule, acc in rules.items():
            lines.append("| " + " | ".join([f"*rule: {rule}*", "—", _pct(acc), "—", "—"] + ["—"] * len(cols)) + " |")
    lines += ["", f"{n['n_sequences']} test sequences ({n['n_answers']} scored answers), seed {n['seed']}; "
                  "rules: see baselines.py; paper columns: † = second-hand (quoted by a literature review; the paper's "
                  "table was not found), n/f = not found, n/p = model not in the paper (see paper.py)."]
    return "\n".join(lines)


def kind_table(results: dict[str, Any], task: str) -> str:
    """Answer accuracy (%) per kind of answer (``evaluation.answer_kind``), Wilson 95 % intervals."""
    runs = [r for r in _ordered(results["runs"], task) if r["test"].get("by_kind")]
    if not runs:
        return ""
    kinds = list(dict.fromkeys(k["kind"] for r in runs for k in r["test"]["by_kind"]))
    counts = {k["kind"]: k["n"] for k in runs[0]["test"]["by_kind"]}
    head = ["model", "seed"] + [f"{k} (n = {counts.get(k, 0)})" for k in kinds]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = {k["kind"]: k for k in r["test"]["by_kind"]}
        lines.append("| " + " | ".join([describe(r["run"]["mixer"]), str(r["run"]["seed"])] + [
            f"{_pct(cells[k]['accuracy'])} {_ci(cells[k]['ci95'])}" if k in cells else "—" for k in kinds]) + " |")
    return "\n".join(lines)


def decoding_table(results: dict[str, Any], task: str) -> str:
    """Linear-probe accuracy (%) of the task state from each layer's output; baseline = majority class."""
    runs = _ordered(results["runs"], task)
    if not runs:
        return ""
    targets = list(dict.fromkeys(row["target"] for row in runs[0]["state_decoding"]))
    layers = sorted({row["layer"] for row in runs[0]["state_decoding"]})
    head = ["model", "seed"] + [f"{t}, layer {l}" for t in targets for l in layers]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        cells = {(row["target"], row["layer"]): row for row in r["state_decoding"]}
        lines.append("| " + " | ".join([describe(r["run"]["mixer"]), str(r["run"]["seed"])]
                                       + [_pct(cells[(t, l)]["accuracy"]) if (t, l) in cells else "—"
                                          for t in targets for l in layers]) + " |")
    base = {row["target"]: row["baseline"] for row in runs[0]["state_decoding"] if row["layer"] == layers[0]}
    lines += ["", "Majority-class baseline: " + ", ".join(f"{t} {_pct(b)}" for t, b in base.items()) + "."]
    return "\n".join(lines)


def keys_table(results: dict[str, Any], task: str) -> str:
    """The recurrent term in the written keys and same-token key similarity, for the models that have a
    recurrent key term (Recurrent Delta Net); results.json also holds the same-token cosine of the other
    models' own keys."""
    runs = [r for r in _ordered(results["runs"], task) if any(row["recurrent_share"] is not None for row in r["keys"])]
    if not runs:
        return ""
    head = ["model", "seed", "layer", "token kind", "recurrent share of key logits",
            "cos(key logits with, without R)", "same-token cos, with R", "same-token cos, without R"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(x):
        return "—" if x is None else f"{x:.3f}"

    for r in runs:
        for row in r["keys"]:
            lines.append("| " + " | ".join([describe(r["run"]["mixer"]), str(r["run"]["seed"]), str(row["layer"]),
                                           row["kind"], num(row["recurrent_share"]), num(row["cos_with_without"]),
                                           num(row["same_token_cos"]), num(row["same_token_cos_without"])]) + " |")
    return "\n".join(lines)


def tables(results: dict[str, Any]) -> str:
    """All of the study's tables as one markdown document (tables.md; the README holds it verbatim)."""
    wall = results.get("wall_seconds", 0)
    parts = [f"Run: `{results.get('command', '')}` — wall time {wall / 60:.1f} min, CPU "
             f"{results.get('cpu_seconds', 0) / 60:.1f} min (this process)."
             + (f" Test accuracies rescored from the saved checkpoints by `{results['rescored']['command']}`"
                f" ({results['rescored']['wall_seconds'] / 60:.1f} min)." if "rescored" in results else "")]
    for task in TASKS:
        label = TASK_LABELS[task]
        for title, table in ((f"### {label}: test accuracy (%)", accuracy_table(results, task)),
                             (f"### {label}: answer accuracy by kind of answer (%)", kind_table(results, task)),
                             (f"### {label}: linear probe of the task state (%)", decoding_table(results, task)),
                             (f"### {label}: the recurrent term in the keys", keys_table(results, task))):
            if table:
                parts += [title, table]
    return "\n\n".join(parts) + "\n"
