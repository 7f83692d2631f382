"""Pooling the seeds of results.json: per model, the memorized canaries of every seed under each edit at its
headline, as paired rows; the comparisons and intervals the README reports. Pure functions of the ``runs``
of results.json (plain dicts)."""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import pandas as pd

from workbench.mixers import describe

from .._stats import bootstrap_mean_ci, mcnemar, paired_t, wilcoxon

RANDOM = "random"


def label(run: dict) -> str:
    return describe(run["run"]["mixer"])


def models(runs: list[dict]) -> list[str]:
    """The mixers of ``runs``, in order of first appearance."""
    return list(dict.fromkeys(r["run"]["mixer"] for r in runs))


def of_model(runs: list[dict], mixer: str) -> list[dict]:
    return sorted((r for r in runs if r["run"]["mixer"] == mixer), key=lambda r: r["run"]["seed"])


def methods(run: dict) -> list[tuple[str, str]]:
    """``(key, label)`` of every edit compared at its headline, in report order: the sweep's variants
    (K-FAC first), then the random bases (pooled over draws) and the ablations."""
    sweep = [r for r in run["sweep"] if r["method"] != "none"]
    out = [(r["variant"], r["variant"]) for r in sweep if r["method"] not in (RANDOM,) and r["rho"] is not None
           and not r["method"].startswith("ablate")]
    out = list(dict.fromkeys(out))
    if any(r["method"] == RANDOM for r in sweep):
        out.append((RANDOM, "random basis, K-FAC's rank (mean of draws)"))
    out += list(dict.fromkeys((r["variant"], r["variant"]) for r in sweep if r["method"].startswith("ablate")))
    return out


def _rows_of(run: dict, key: str) -> list[dict]:
    """The sweep rows behind ``key`` at its headline (several for the random draws, none if no ρ qualifies)."""
    sweep = run["sweep"]
    if key == RANDOM:
        return [r for r in sweep if r["method"] == RANDOM]
    rows = [r for r in sweep if r["variant"] == key]
    if key in run["headline"]:
        rho = run["headline"][key]
        return [r for r in rows if r["rho"] == rho] if rho is not None else []
    return rows


def canary_outcomes(run: dict, key: str) -> Optional[pd.DataFrame]:
    """Per memorized canary of one run under ``key`` at its headline: ``canary, strict, loose, nll``
    (means over the random draws); None when the edit has no headline (no ρ within the budget)."""
    rows = _rows_of(run, key)
    if not rows:
        return None
    names = {r["variant"] for r in rows}
    rhos = {r["rho"] for r in rows}
    pc = pd.DataFrame(run["per_canary"])
    if pc.empty:
        return pd.DataFrame(columns=["canary", "strict", "loose", "nll"])
    pc = pc[pc.variant.isin(names) & (pc.rho.isin(rhos) | (pc.rho.isna() & (None in rhos)))]
    return pc.groupby("canary")[["strict", "loose", "nll"]].mean().reset_index()


def paired(runs: list[dict], mixer: str, key: str, base: str) -> Optional[pd.DataFrame]:
    """The memorized canaries of every seed of ``mixer``, ``key`` and ``base`` side by side:
    ``seed, canary, strict_a, strict_b, loose_a, loose_b, nll_a, nll_b`` (a = key, b = base); None when
    either edit has no headline in some seed."""
    frames = []
    for run in of_model(runs, mixer):
        a, b = canary_outcomes(run, key), canary_outcomes(run, base)
        if a is None or b is None:
            return None
        frames.append(a.merge(b, on="canary", suffixes=("_a", "_b")).assign(seed=run["run"]["seed"]))
    return pd.concat(frames, ignore_index=True) if frames else None


def summary_row(runs: list[dict], mixer: str, key: str) -> dict[str, Any]:
    """Pooled over the seeds of ``mixer``: the edit's ρ per seed, recitation of the memorized canaries with
    a bootstrap interval (canaries resampled within seed), suffix loss, perplexity ratio, agreement, edit size."""
    per_seed, canaries, seeds = [], [], []
    for run in of_model(runs, mixer):
        rows = _rows_of(run, key) if key != "unedited" else [r for r in run["sweep"] if r["method"] == "none"]
        per_seed.append(rows)
        c = (canary_outcomes(run, key) if key != "unedited"
             else pd.DataFrame([x for x in run["per_canary"] if x["variant"] == "unedited"]))
        if c is not None and len(c):
            canaries.append(c.assign(seed=run["run"]["seed"]))
    out: dict[str, Any] = {"rhos": [(rows[0]["rho"] if rows else None) for rows in per_seed],
                           "qualified": all(per_seed)}
    if not all(per_seed) or not canaries:
        return out
    c = pd.concat(canaries, ignore_index=True)
    flat = [r for rows in per_seed for r in rows]
    out.update({"n": len(c), "strict": bootstrap_mean_ci(c.strict, c.seed), "loose": bootstrap_mean_ci(c.loose, c.seed),
                "nll": bootstrap_mean_ci(c.nll, c.seed),
                "ppl_ratio": [float(np.mean([r["ppl_ratio"] for r in rows])) for rows in per_seed],
                "top10": float(np.mean([r["top10_agreement"] for r in flat])),
                "dw": float(np.mean([r["weight_rel_change"] for r in flat]))})
    return out


def compare(runs: list[dict], mixer: str, key: str, base: str) -> Optional[dict[str, Any]]:
    """``key`` against ``base`` on the same memorized canaries, pooled over seeds: strict rates, McNemar
    (binary outcomes) or Wilcoxon (a mean over random draws), the difference with a bootstrap interval,
    and the suffix loss difference with a bootstrap interval, Wilcoxon and paired t."""
    p = paired(runs, mixer, key, base)
    if p is None or len(p) < 2:
        return None
    binary = set(np.unique(p.strict_a)) <= {0, 1} and set(np.unique(p.strict_b)) <= {0, 1}
    out = {"n": len(p), "strict_a": float(p.strict_a.mean()), "strict_b": float(p.strict_b.mean()),
           "d_strict": bootstrap_mean_ci(p.strict_a - p.strict_b, p.seed),
           "d_nll": bootstrap_mean_ci(p.nll_a - p.nll_b, p.seed),
           "nll_wilcoxon": wilcoxon(p.nll_a, p.nll_b)["p"], "nll_t": paired_t(p.nll_a, p.nll_b)["p"]}
    if binary:
        m = mcnemar(p.strict_a.astype(bool), p.strict_b.astype(bool))
        out.update({"only_a": m["only_a"], "only_b": m["only_b"], "strict_test": "McNemar", "strict_p": m["p"]})
    else:
        out.update({"only_a": None, "only_b": None, "strict_test": "Wilcoxon",
                    "strict_p": wilcoxon(p.strict_a, p.strict_b)["p"]})
    return out


def seed_differences(runs: list[dict], mixer: str, key: str, base: str) -> Optional[dict[str, Any]]:
    """Per seed, strict(key) − strict(base) over that seed's memorized canaries; their mean with a t
    interval over seeds (each seed one sample)."""
    diffs = []
    for run in of_model(runs, mixer):
        a, b = canary_outcomes(run, key), canary_outcomes(run, base)
        if a is None or b is None or not len(a):
            return None
        diffs.append(float(a.strict.mean() - b.strict.mean()))
    if len(diffs) < 2:
        return {"diffs": diffs}
    return {"diffs": diffs, **paired_t(diffs, [0.0] * len(diffs))}


def pool_summary(records: list[dict], by: list[str]) -> pd.DataFrame:
    """Records of ``summarize`` tables (``strict_acc, loose_acc, mean_norm_distance, n``) from several
    seeds, pooled by ``by`` (weighted by n)."""
    df = pd.DataFrame(records)
    df = df.assign(k=df.strict_acc * df.n, d=df.mean_norm_distance * df.n)
    g = df.groupby(by)[["k", "d", "n"]].sum().reset_index()
    return g.assign(strict_acc=g.k / g.n, similarity=1 - g.d / g.n)[by + ["strict_acc", "similarity", "n"]]
