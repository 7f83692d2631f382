"""Markdown tables of a results.json: our final losses beside the paper's, and the probe beside the accuracy."""

from __future__ import annotations

from typing import Any

from . import paper
from .figures import SUCCESS


def _fmt(x: float) -> str:
    return f"{x:.4f}" if x >= 1e-4 else f"{x:.1e}"


def _by_model(runs: list[dict], setting: int) -> dict[str, dict[int, dict]]:
    out: dict[str, dict[int, dict]] = {}
    for r in runs:
        if r["setting"] == setting:
            out.setdefault(r["model"], {})[r["num_keys"]] = r
    return out


def capacity(losses: dict[int, float]) -> str:
    """Largest S with final loss ≤ 0.01 and the smallest S above it that fails, e.g. ``40 (fails at 60)``."""
    ok = [S for S, v in losses.items() if v <= SUCCESS]
    if not ok:
        return f"none (fails at {min(losses)})"
    best = max(ok)
    fails = [S for S, v in losses.items() if v > SUCCESS and S > best]
    return f"≥ {best}" if not fails else f"{best} (fails at {min(fails)})"


def loss_table(runs: list[dict[str, Any]], setting: int, key: str = "final_eval_loss") -> str:
    """One row per model: ``ours / paper`` final eval loss at each S (bold: ≤ 0.01; † : stopped at the step cap).
    ``key="paper_eval"``: setting 2 models evaluated on length-S sequences, as the paper's code does."""
    models = _by_model(runs, setting)
    grid = sorted({S for rs in models.values() for S in rs})
    head = ["model", "d_dot", *[f"S = {S}" for S in grid], "capacity (ours)", "capacity (paper)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rs in models.items():
        first = next(iter(rs.values()))
        ref = paper.FINAL_LOSS.get(setting, {}).get(name, {})
        cells = []
        for S in grid:
            if S not in rs:
                cells.append("")
                continue
            ours = rs[S][key] if key == "final_eval_loss" else rs[S][key]["eval_loss"]
            text = _fmt(ours) + ("†" if rs[S]["stop"] == "max_steps" else "")
            text = f"**{text}**" if ours <= SUCCESS else text
            cells.append(f"{text} / {_fmt(ref[S])}" if S in ref else f"{text} / –")
        label = first["label"] + (f" · {first['update']}" if setting == 2 else "")
        ours_cap = capacity({S: r[key] if key == "final_eval_loss" else r[key]["eval_loss"] for S, r in rs.items()})
        lines.append("| " + " | ".join([label, str(first["d_key"]), *cells, ours_cap,
                                         paper.CAPACITY.get(setting, {}).get(name, "–")]) + " |")
    return "\n".join(lines)


def probe_table(runs: list[dict[str, Any]], setting: int) -> str:
    """One row per fast-weight model: ``model accuracy / probe decodes (fidelity)`` at each S."""
    models = {n: rs for n, rs in _by_model(runs, setting).items() if next(iter(rs.values()))["probe"]}
    grid = sorted({S for rs in models.values() for S in rs})
    head = ["model", *[f"S = {S}" for S in grid]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for rs in models.values():
        first = next(iter(rs.values()))
        cells = []
        for S in grid:
            p = rs[S]["probe"] if S in rs else None
            cells.append(f"{p['model_accuracy']:.3f} / {p['probe_decodes']:.3f} ({p['fidelity']:.2f})" if p else "")
        label = first["label"] + (f" · {first['update']}" if setting == 2 else "")
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return "\n".join(lines)


def occurrence_table(runs: list[dict[str, Any]]) -> str:
    """Setting 2: probe decodes and model accuracy by how often the queried key was written."""
    lines = ["| model | S | written once | twice | 3+ times |", "|---|---|---|---|---|"]
    for r in runs:
        if r["setting"] != 2 or not r["probe"]:
            continue
        occ = r["probe"]["by_occurrences"]
        cells = [f"{occ[k]['model_accuracy']:.3f} / {occ[k]['probe_decodes']:.3f}" if k in occ else ""
                 for k in ("1", "2", "3+")]
        lines.append(f"| {r['label']} · {r['update']} | {r['num_keys']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    parts = []
    for setting in (1, 2):
        if any(r["setting"] == setting for r in runs):
            parts += [f"### Setting {setting}: final eval loss, ours / paper", "", loss_table(runs, setting), "",
                      f"### Setting {setting}: model accuracy / probe decodes (write fidelity)", "",
                      probe_table(runs, setting), ""]
    if any(r["setting"] == 2 and "paper_eval" in r for r in runs):
        parts += ["### Setting 2 evaluated as the paper's code does (length-S sequences), ours / paper", "",
                  loss_table(runs, 2, key="paper_eval"), ""]
    if any(r["setting"] == 2 and r["probe"] for r in runs):
        parts += ["### Setting 2: model accuracy / probe decodes by how often the key was written", "",
                  occurrence_table(runs), ""]
    return "\n".join(parts)
