"""The README's tables, generated from results.json (the tests check the README holds them verbatim)."""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from .figures import MIXER_LABELS

# Published MQAR accuracy (Zoology setup, 2 layers), read off the plots — approximate; the reference sheet
# gives one number per (mixer, d_model), not one per (T, kv). Linear attention has no entry there.
PUBLISHED = {("delta", 64): 0.79, ("delta", 128): 0.96, ("gated_delta", 64): 0.89, ("gated_delta", 128): 0.99,
             ("softmax", 64): 1.0, ("softmax", 128): 1.0}


def _rows(table: Any) -> list[dict]:
    """Rows of a probe table stored as columns (``run.columns``), or of a list of records."""
    return pd.DataFrame(table).to_dict(orient="records") if isinstance(table, dict) else list(table)


def _num(x: Optional[float]) -> str:
    return "—" if x is None else f"{x:.3f}"


def _ordered_runs(runs: list[dict]) -> list[dict]:
    order = list(MIXER_LABELS)
    return sorted(runs, key=lambda r: (r["run"]["d_model"], order.index(r["run"]["mixer"])))


def accuracy_table(results: dict[str, Any]) -> str:
    runs = _ordered_runs(results["runs"])
    settings = [(a["seq_len"], a["num_kv_pairs"]) for a in runs[0]["accuracy"]]
    head = ["mixer", "d_model"] + [f"T={t}, kv={k}" for t, k in settings] + ["mean", "published (≈)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        accs = [a["accuracy"] for a in r["accuracy"]]
        key = (r["run"]["mixer"], r["run"]["d_model"])
        lines.append("| " + " | ".join([MIXER_LABELS[key[0]], str(key[1])] + [_num(a) for a in accs]
                                       + [_num(sum(accs) / len(accs)), _num(PUBLISHED.get(key))]) + " |")
    return "\n".join(lines)


def sweep_table(results: dict[str, Any]) -> str:
    runs = _ordered_runs(results["runs"])
    kvs = [s["num_kv_pairs"] for s in runs[0]["capacity_sweep"]]
    seq_len = runs[0]["capacity_sweep"][0]["seq_len"]
    head = ["mixer", "d_model"] + [f"kv={k}" for k in kvs]
    lines = [f"Accuracy at T={seq_len} against the number of pairs:", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        lines.append("| " + " | ".join([MIXER_LABELS[r["run"]["mixer"]], str(r["run"]["d_model"])]
                                       + [_num(s["accuracy"]) for s in r["capacity_sweep"]]) + " |")
    return "\n".join(lines)


def _best_head(rows: list[dict], layer: int, convention: str) -> int:
    """The head of ``layer`` whose fidelity beats its control by the most, on average over n_stored."""
    def margin(head: int) -> float:
        fid = {x["n_stored"]: x["fidelity"] for x in rows if x["layer"] == layer and x["head"] == head
               and x["convention"] == convention}
        ctl = {x["n_stored"]: x["fidelity"] for x in rows if x["layer"] == layer and x["head"] == head
               and x["convention"] == "control"}
        common = sorted(set(fid) & set(ctl))
        return sum(fid[n] - ctl[n] for n in common) / max(len(common), 1)
    heads = sorted({x["head"] for x in rows if x["layer"] == layer})
    return max(heads, key=margin)


def probe_table(results: dict[str, Any], convention: str = "write") -> str:
    """Per fast-weight model and layer, the head whose fidelity beats its control the most: its fidelity
    (control fidelity) and logit-lens decode rate with n pairs stored, beside the model's accuracy on
    sequences holding n pairs."""
    runs = [r for r in _ordered_runs(results["runs"]) if r.get("probe")]
    if not runs:
        return ""
    sweep_kv = [s["num_kv_pairs"] for s in runs[0]["capacity_sweep"]]
    stored = sorted({row["n_stored"] for r in runs for row in _rows(r["probe"]["by_n_stored"])})
    cols = [k for k in sweep_kv if k in stored]
    head = ["model", "layer", "head"] + [f"n={k}" for k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        rows = _rows(r["probe"]["by_n_stored"])
        acc = {s["num_kv_pairs"]: s["accuracy"] for s in r["capacity_sweep"]}
        for layer in sorted({x["layer"] for x in rows}):
            h = _best_head(rows, layer, convention)
            pick = {(x["convention"], x["n_stored"]): x for x in rows if x["layer"] == layer and x["head"] == h}
            cells = []
            for k in cols:
                w, c = pick[(convention, k)], pick.get(("control", k))
                ctl = "—" if c is None else f"{c['fidelity']:.2f}"
                cells.append(f"{w['fidelity']:.2f} ({ctl}) / {w['decodes']:.2f} / {acc[k]:.2f}")
            name = f"{MIXER_LABELS[r['run']['mixer']]} d={r['run']['d_model']}"
            lines.append("| " + " | ".join([name, str(layer), str(h)] + cells) + " |")
    return "\n".join(lines)


def _mean(rows: list[dict], key: str, lo: int, hi: int) -> Optional[float]:
    vals = [x[key] for x in rows if lo <= x["pair"] < hi and x[key] is not None]
    return sum(vals) / len(vals) if vals else None


def pair_table(results: dict[str, Any], convention: str = "write") -> str:
    """Pairs the model saw in training positions (the first ``trained_kv``) against the later ones:
    the model's accuracy, and per layer (head as in :func:`probe_table`) the fidelity right after the
    write and the write strength β."""
    runs = _ordered_runs(results["runs"])
    kv = max(s["num_kv_pairs"] for s in results["study"]["protocol"]["train_settings"])
    n = max(x["pair"] for x in runs[0]["accuracy_by_pair"]) + 1
    lo, hi = f"1–{kv}", f"{kv + 1}–{n}"
    head = ["model", f"accuracy, pairs {lo} / {hi}", "layer", "head", f"fidelity at the write, {lo} / {hi}",
            f"β at the write, {lo} / {hi}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        name = f"{MIXER_LABELS[r['run']['mixer']]} d={r['run']['d_model']}"
        acc = f"{_num(_mean(r['accuracy_by_pair'], 'accuracy', 0, kv))} / {_num(_mean(r['accuracy_by_pair'], 'accuracy', kv, n))}"
        if not r.get("probe"):
            lines.append("| " + " | ".join([name, acc, "—", "—", "—", "—"]) + " |")
            continue
        at_write, n_stored = _rows(r["probe"]["by_pair_at_write"]), _rows(r["probe"]["by_n_stored"])
        for layer in sorted({x["layer"] for x in at_write}):
            h = _best_head(n_stored, layer, convention)
            fid = [x for x in at_write if x["layer"] == layer and x["head"] == h and x["convention"] == convention]
            beta = [x for x in _rows(r["probe"].get("beta_by_pair") or []) if x["layer"] == layer and x["head"] == h]
            cells = [name, acc, str(layer), str(h),
                     f"{_num(_mean(fid, 'fidelity', 0, kv))} / {_num(_mean(fid, 'fidelity', kv, n))}",
                     f"{_num(_mean(beta, 'beta', 0, kv))} / {_num(_mean(beta, 'beta', kv, n))}" if beta else "—"]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def tables(results: dict[str, Any]) -> str:
    """All tables, in the order the README shows them."""
    parts = [accuracy_table(results), sweep_table(results)]
    if all("accuracy_by_pair" in r for r in results["runs"]):
        setting = next(r["probe"]["capacity_setting"] for r in results["runs"] if r.get("probe")) \
            if any(r.get("probe") for r in results["runs"]) else None
        where = f" (T={setting['seq_len']}, kv={setting['num_kv_pairs']})" if setting else ""
        parts.append(f"By pair of the context{where}: the first pairs against the later ones:\n\n" + pair_table(results))
    probe = probe_table(results)
    if probe:
        parts.append("Probe of the head per layer whose fidelity beats its control the most (`write` pairs): "
                     "fidelity (control) / logit-lens decode rate with n pairs stored, and the model's accuracy "
                     "on sequences holding n pairs:\n\n" + probe)
    return "\n\n".join(parts) + "\n"
