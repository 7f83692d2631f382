"""The README's tables, generated from results.json (the tests check the README holds them verbatim)."""

from __future__ import annotations

from typing import Any, Optional

from .figures import MIXER_LABELS

# Published MQAR accuracy (Zoology setup, 2 layers), read off the plots — approximate; the reference sheet
# gives one number per (mixer, d_model), not one per (T, kv). Linear attention has no entry there.
PUBLISHED = {("delta", 64): 0.79, ("delta", 128): 0.96, ("gated_delta", 64): 0.89, ("gated_delta", 128): 0.99,
             ("softmax", 64): 1.0, ("softmax", 128): 1.0}


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
    stored = sorted({row["n_stored"] for r in runs for row in r["probe"]["by_n_stored"]})
    cols = [k for k in sweep_kv if k in stored]
    head = ["model", "layer", "head"] + [f"n={k}" for k in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in runs:
        rows = r["probe"]["by_n_stored"]
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


def tables(results: dict[str, Any]) -> str:
    """All tables, in the order the README shows them."""
    parts = [accuracy_table(results), sweep_table(results)]
    probe = probe_table(results)
    if probe:
        parts.append("Probe of the head per layer whose fidelity beats its control the most (`write` pairs): "
                     "fidelity (control) / logit-lens decode rate with n pairs stored, and the model's accuracy "
                     "on sequences holding n pairs:\n\n" + probe)
    return "\n\n".join(parts) + "\n"
