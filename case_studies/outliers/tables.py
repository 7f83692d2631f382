"""The README's tables, generated from ``results.json`` (``tables.md``)."""

from __future__ import annotations

from .config import BLOCK_SHORT

PAPER = [  # He et al. (2024), OPT-125m, W8A8 (REFERENCE.md)
    ("Outlier Protected", "SOAP", 14.71, 14.87),
    ("pre-norm", "Adam", 16.00, 63.4),
]
BLOCK_NAME = {"pre_norm": "pre-norm", "outlier_protected": "Outlier Protected"}
OPT_NAME = {"adamw": "AdamW", "soap": "SOAP"}


def main_table(results: dict) -> str:
    rows = ["| mixer | block | optimiser | Kurt resid_post | Kurt mlp hidden | val ppl (float) | W8A8 per-tensor | "
            "ratio | W8A8 per-token | ratio |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results["runs"]:
        run, q = r["run"], r["w8a8"]
        k = r["final_kurtosis"]
        rows.append(f"| {run['mixer']} | {BLOCK_NAME[run['block']]} | {OPT_NAME[run['optimizer']]} "
                    f"| {k['resid_post']:.2f} | {k.get('mlp_hidden', float('nan')):.2f} | {r['val_ppl']:.2f} "
                    f"| {q['per_tensor']['ppl_w8a8']:.2f} | {q['per_tensor']['ppl_ratio']:.3f} "
                    f"| {q['per_token']['ppl_w8a8']:.2f} | {q['per_token']['ppl_ratio']:.3f} |")
    return "\n".join(rows)


def harsher_table(results: dict) -> str:
    """Perplexity ratio (quantised / float) under activation-only int8, W8A8, W8A6 and W8A4 (per tensor)."""
    keys = [("per_tensor_activations_only", "A8 only"), ("per_tensor", "W8A8"), ("per_tensor_a6", "W8A6"),
            ("per_tensor_a4", "W8A4")]
    rows = ["| run | val ppl (float) | " + " | ".join(label for _, label in keys) + " |", "|---|---|" + "---|" * len(keys)]
    for r in results["runs"]:
        rows.append(f"| {r['name']} | {r['val_ppl']:.2f} | "
                    + " | ".join(f"{r['w8a8'][k]['ppl_ratio']:.3f}" for k, _ in keys) + " |")
    return "\n".join(rows)


def paper_table() -> str:
    rows = ["| He et al. 2024, OPT-125m | optimiser | ppl (float) | W8A8 | ratio |", "|---|---|---|---|---|"]
    for block, opt, before, after in PAPER:
        rows.append(f"| {block} | {opt} | {before:.2f} | {after:.2f} | {after / before:.3f} |")
    return "\n".join(rows)


def kurtosis_table(results: dict, site: str = "resid_post") -> str:
    """Largest kurtosis over layers at ``site``, by checkpoint step."""
    steps = sorted(set(results["runs"][0]["over_training"]["step"]))
    rows = ["| run | " + " | ".join(f"step {s}" for s in steps) + " |", "|---|" + "---|" * len(steps)]
    for r in results["runs"]:
        t = r["over_training"]
        best = {}
        for step, s, k in zip(t["step"], t["site"], t["kurtosis"]):
            if s == site:
                best[step] = max(best.get(step, 0.0), k)
        rows.append(f"| {r['name']} | " + " | ".join(f"{best[s]:.2f}" for s in steps) + " |")
    return "\n".join(rows)


def massive_table(results: dict) -> str:
    """Massive activations (Sun et al. 2024) in the final models: the largest |x| and the largest max/median
    ratio over layers, per site (already measured at every checkpoint; REFERENCE.md: |x| > 100 and ≈ 1000× the
    median of its hidden state mark a massive activation)."""
    sites = sorted(set(results["runs"][0]["over_training"]["site"]))
    rows = ["| run | " + " | ".join(f"{s} max abs (max/median)" for s in sites) + " |", "|---|" + "---|" * len(sites)]
    for r in results["runs"]:
        t = r["over_training"]
        last = max(t["step"])
        cells = []
        for site in sites:
            picked = [(a, m) for step, s, a, m in zip(t["step"], t["site"], t["max_abs"], t["max_median_ratio"])
                      if step == last and s == site]
            cells.append(f"{max(a for a, _ in picked):.2f} ({max(m for _, m in picked):.1f})")
        rows.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def massive_summary(results: dict) -> dict:
    """The largest |x| and max/median ratio over every run, site, layer and checkpoint."""
    best_abs = max(a for r in results["runs"] for a in r["over_training"]["max_abs"])
    best_ratio = max(m for r in results["runs"] for m in r["over_training"]["max_median_ratio"])
    return {"max_abs": best_abs, "max_median_ratio": best_ratio}


def tables(results: dict) -> str:
    return ("### Final models: kurtosis (largest over layers) and W8A8 validation perplexity\n\n"
            + main_table(results) + "\n\n### Perplexity ratio, quantised / float, with harsher activation rounding "
            "(per tensor)\n\n" + harsher_table(results) + "\n\n### Kurtosis of the residual stream (largest over layers) over training\n\n"
            + kurtosis_table(results, "resid_post") + "\n\n### Kurtosis of the MLP hidden layer (largest over layers) "
            "over training\n\n" + kurtosis_table(results, "mlp_hidden") + "\n\n### Massive activations in the final "
            "models: largest |x| (largest max/median ratio) over layers\n\n" + massive_table(results) + "\n")


__all__ = ["BLOCK_SHORT", "main_table", "harsher_table", "paper_table", "kurtosis_table", "massive_table", "massive_summary", "tables"]
