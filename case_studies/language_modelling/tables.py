"""The README's tables, generated from the ``runs`` of results.json: per-model mean ± std over seeds, the
sum-vs-delta comparison per feature map, pairwise claims and the comparison with the papers' orderings."""

from __future__ import annotations

import math
from typing import Any, Optional

import pandas as pd

from . import paper
from .config import BASELINE, FEATURE_MAPS, MODELS


def summary(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per model (in :data:`MODELS` order): seeds, mean and sample std (ddof 1; NaN for one seed) of
    validation perplexity and bits per byte over its finite runs, how many diverged, parameters, mean
    training seconds."""
    rows = []
    order = {m: i for i, m in enumerate(MODELS)}
    df = pd.DataFrame([{"model": r["run"]["model"], "seed": r["run"]["seed"], "ppl": r["val_ppl"],
                        "bpb": r["val_bpb"], "params": r["params"], "seconds": r["train_seconds"],
                        "label": r["label"], "rule": r["rule"], "feature_map": r["feature_map"]} for r in runs])
    for model, g in df.groupby("model", sort=False):
        ok = g[g.ppl.map(lambda x: isinstance(x, (int, float)) and math.isfinite(x))]
        rows.append({"model": model, "label": g.label.iloc[0], "rule": g.rule.iloc[0],
                     "feature_map": g.feature_map.iloc[0], "seeds": len(g), "diverged": len(g) - len(ok),
                     "ppl_mean": ok.ppl.mean(), "ppl_std": ok.ppl.std(ddof=1), "ppl_min": ok.ppl.min(),
                     "ppl_max": ok.ppl.max(), "bpb_mean": ok.bpb.mean(), "bpb_std": ok.bpb.std(ddof=1),
                     "params": int(g.params.iloc[0]), "seconds": g.seconds.mean()})
    out = pd.DataFrame(rows)
    return out.sort_values("model", key=lambda s: s.map(order)).reset_index(drop=True)


def _pm(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "—"
    return f"{mean:.{digits}f}" + ("" if std is None or not math.isfinite(std) else f" ± {std:.{digits}f}")


def _paper_cell(model: str) -> str:
    """The papers' small-setting valid / test perplexities for ``model``, each after its table's tag."""
    rows = [tag + " " + " / ".join("—" if v[k] is None else f"{v[k]:.1f}" for k in ("valid", "test"))
            for tag, v in paper.for_model(model)]
    return "; ".join(rows) if rows else "—"


PAPER_TAGS = "S2, S5: Schlag et al. Tables 2, 5; I†: Irie et al., second-hand"


def model_table(runs: list[dict[str, Any]]) -> str:
    """Per model: validation perplexity (per byte) and bits per byte, mean ± std over seeds, rank, the
    papers' WikiText-103 valid / test perplexities (small setting) for the matching model, tagged by table."""
    s = summary(runs)
    ranks = s.ppl_mean.rank(method="min")
    head = ["model", "mixer", "seeds", "val ppl (per byte)", "bits per byte", "rank", "params",
            "s / run", f"papers: WT-103 small, valid / test ppl ({PAPER_TAGS})"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i, r in s.iterrows():
        seeds = f"{r.seeds}" + (f" ({r.diverged} diverged)" if r.diverged else "")
        rank = "—" if not math.isfinite(ranks[i]) else str(int(ranks[i]))
        lines.append("| " + " | ".join([r.model, r.label, seeds, _pm(r.ppl_mean, r.ppl_std),
                                       _pm(r.bpb_mean, r.bpb_std, 4), rank, f"{r.params:,}", f"{r.seconds:.0f}",
                                       _paper_cell(r.model)]) + " |")
    return "\n".join(lines)


def _by_seed(runs: list[dict[str, Any]], model: str) -> dict[int, float]:
    return {r["run"]["seed"]: r["val_ppl"] for r in runs
            if r["run"]["model"] == model and isinstance(r["val_ppl"], (int, float)) and math.isfinite(r["val_ppl"])}


def pairwise(runs: list[dict[str, Any]], better: str, worse: str) -> dict[str, Any]:
    """Does ``better`` have lower validation perplexity than ``worse``? Paired by seed (same data order
    and evaluation): the per-seed differences worse − better, their mean and sample std, and the verdict:
    "holds" when every seed agrees and the seed ranges do not overlap, "reversed" likewise the other way,
    else "within the seed spread"."""
    a, b = _by_seed(runs, better), _by_seed(runs, worse)
    seeds = sorted(set(a) & set(b))
    diffs = [b[s] - a[s] for s in seeds]
    out = {"better": better, "worse": worse, "seeds": seeds, "diffs": diffs,
           "mean": sum(diffs) / len(diffs) if diffs else math.nan,
           "std": pd.Series(diffs).std(ddof=1) if len(diffs) > 1 else math.nan}
    if len(seeds) < 2:
        out["verdict"] = "too few seeds"
    elif all(d > 0 for d in diffs) and max(a.values()) < min(b.values()):
        out["verdict"] = "holds"
    elif all(d < 0 for d in diffs) and min(a.values()) > max(b.values()):
        out["verdict"] = "reversed"
    else:
        out["verdict"] = "within the seed spread"
    return out


CLAIMS: tuple[tuple[str, str, str], ...] = (
    *((f"delta-{f}", f"sum-{f}", f"delta rule beats the sum rule with {f}") for f in FEATURE_MAPS),
    *((f"{rule}-dpfp{nu}", f"{rule}-elu1-norm", f"DPFP-{nu} beats elu+1 ({rule} rule)")
      for rule in ("sum", "delta") for nu in (1, 2, 3)),
    *((f"{rule}-dpfp{nu}", f"{rule}-favor", f"DPFP-{nu} beats FAVOR+ ({rule} rule)")
      for rule in ("sum", "delta") for nu in (1, 2, 3)),
    *((f"{rule}-elu1-norm", f"{rule}-favor", f"elu+1 beats FAVOR+ ({rule} rule)") for rule in ("sum", "delta")),
    *((BASELINE, m, f"softmax attention beats {m}") for m in MODELS if m != BASELINE),
    ("rec-delta", "delta-elu1-norm", "Recurrent Delta Net beats the delta rule, elu+1"),
)


def claims_table(runs: list[dict[str, Any]]) -> str:
    """The pairwise claims of the papers: per-seed differences of validation perplexity (worse − better;
    positive = the claim's direction), their mean ± std, the verdict of :func:`pairwise`, and what the
    papers' tables say (:func:`paper.claim_evidence`: better vs worse, valid ppl; test for I†)."""
    head = ["claim", "better", "worse", "Δ ppl per seed (worse − better)", "mean ± std", "verdict",
            "papers: better vs worse (valid; I† test)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for better, worse, text in CLAIMS:
        p = pairwise(runs, better, worse)
        if not p["seeds"]:
            continue
        lines.append("| " + " | ".join([text, better, worse, ", ".join(f"{d:+.3f}" for d in p["diffs"]),
                                       _pm(p["mean"], p["std"]), p["verdict"],
                                       "; ".join(paper.claim_evidence(better, worse)) or "—"]) + " |")
    return "\n".join(lines)


def rule_table(runs: list[dict[str, Any]]) -> str:
    """Sum vs delta rule per feature map: mean ± std validation perplexity."""
    s = summary(runs).set_index("model")
    head = ["feature map", "sum rule", "delta rule", "delta − sum"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in FEATURE_MAPS:
        a, b = f"sum-{f}", f"delta-{f}"
        if a not in s.index or b not in s.index:
            continue
        d = s.loc[b, "ppl_mean"] - s.loc[a, "ppl_mean"]
        lines.append("| " + " | ".join([f, _pm(s.loc[a, "ppl_mean"], s.loc[a, "ppl_std"]),
                                       _pm(s.loc[b, "ppl_mean"], s.loc[b, "ppl_std"]), f"{d:+.3f}"]) + " |")
    return "\n".join(lines)


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation (average ranks for ties): Pearson's r of the ranks."""
    rx, ry = pd.Series(x).rank(), pd.Series(y).rank()
    return float(rx.corr(ry))


def ordering_table(runs: list[dict[str, Any]]) -> str:
    """Per paper table: the models it and we both have, its perplexity and our mean, the ranks, and
    Spearman's ρ between the two orderings."""
    s = summary(runs).set_index("model")
    blocks = []
    for key, table in paper.TABLES.items():
        pairs = [(m, row) for m, row in paper.rows_with_models(key) if m in s.index and math.isfinite(s.loc[m, "ppl_mean"])]
        if len(pairs) < 2:
            continue
        theirs = [paper.score(row) for _, row in pairs]
        ours = [s.loc[m, "ppl_mean"] for m, _ in pairs]
        rt, ro = pd.Series(theirs).rank(), pd.Series(ours).rank()
        head = ["paper row", "our model", f"paper {table['metric']} ppl", "paper rank", "our ppl (mean)", "our rank"]
        lines = [f"{table['title']} ({table['source']}), {len(pairs)} models in common: Spearman ρ = "
                 f"{spearman(theirs, ours):+.2f}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for i, (m, row) in enumerate(pairs):
            lines.append("| " + " | ".join([row["row"], m, f"{theirs[i]:.1f}", f"{rt[i]:g}", f"{ours[i]:.3f}",
                                           f"{ro[i]:g}"]) + " |")
        blocks.append("\n".join(lines))
    blocks.append(f"Not found: {paper.NOT_FOUND}")
    return "\n\n".join(blocks)


def tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    p = results["study"]["protocol"]
    t = p["train"]
    head = (f"{len(runs)} runs; {t['steps']} steps × {t['batch_size']} × {p['seq_len']} = "
            f"{t['steps'] * t['batch_size'] * p['seq_len']:,} training tokens per run; validation: every held-out "
            f"byte ({runs[0]['val_tokens']:,} predictions).")
    return "\n\n".join([head, "### Validation perplexity by model (mean ± std over seeds)", model_table(runs),
                        "### Sum vs delta rule", rule_table(runs), "### Pairwise claims", claims_table(runs),
                        "### Our ordering against the papers'", ordering_table(runs)]) + "\n"
