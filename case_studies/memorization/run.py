"""One run of the study: train ``mem-<mixer>`` on real text with canaries, probe its recitation, then edit
it with K-FAC and with SVD over the ρ sweep and probe it again."""

from __future__ import annotations

import time
from typing import Any, Optional, Union

import pandas as pd
import torch

from workbench import train
from workbench.analysis.kfac import KFACConfig, collect_kfac, curvature_spectrum, kfac_edit, linear_sites, svd_edit
from workbench.analysis.memorization import held_out_perplexity, recitation_table, summarize, topk_agreement
from workbench.plots.kfac import thin_spectrum
from workbench.tasks import TextCanaries

from .._report import records
from .config import Protocol, RunConfig, Variant

METRICS = ["strict_acc", "loose_acc", "mean_norm_distance", "n"]


def filler(task: TextCanaries, canary: int, length: int) -> torch.Tensor:
    """``length`` tokens of validation text put before canary ``canary``'s prompt (a different stretch of
    the validation split for every canary)."""
    ids = task.data.val_ids
    span = task.seq_len
    start = (canary * span) % max(len(ids) - length, 1)
    out = ids[start:start + length]
    if len(out) != length:
        raise ValueError(f"the validation text ({len(ids)} tokens) is too short for a {length}-token context")
    return out


def recite(model, task: TextCanaries, prefix_len: int, suffix_len: int,
           prompt_at: Union[str, int] = "trained") -> pd.DataFrame:
    """Greedy recitation of every canary's ``canary[P : P+L]`` from ``canary[:P]``, with the prompt placed
    after ``q`` tokens of validation text: q = the canary's training position (``prompt_at="trained"``)
    or a fixed q. One row per canary: the columns of ``recitation_table`` plus ``repetitions``,
    ``position`` and ``prompt_position``; ``prefix_len`` is P (the text before it not counted)."""
    table = task.canary_table()
    cans = task.canaries()
    frames = []
    qs = table.position if prompt_at == "trained" else pd.Series([int(prompt_at)] * len(table))
    for q in sorted(set(qs.tolist())):
        idx = [i for i in range(len(table)) if qs[i] == q]
        seqs = torch.stack([torch.cat([filler(task, i, q), cans[i]]) for i in idx])
        meta = table.iloc[idx][["canary", "repetitions", "position"]].reset_index(drop=True)
        tab = recitation_table(model, seqs, [q + prefix_len], suffix_len, meta=meta)
        frames.append(tab.assign(prefix_len=prefix_len, prompt_position=q, seq=meta.canary))
    return pd.concat(frames, ignore_index=True).sort_values("canary").reset_index(drop=True)


def edit_row(variant: Optional[Variant], rho: float, table: pd.DataFrame, memorized: list[int], ppl: float,
             base_ppl: float, agreement: float, report) -> dict[str, Any]:
    """One row of the sweep (``variant`` None: the unedited model): perplexity, agreement, weight change,
    recitation of the memorized set, by repetition count and by training position."""
    mem = table[table.canary.isin(memorized)]
    row = {"variant": variant.name if variant else "unedited", "method": variant.method if variant else "none",
           "sites": variant.sites_name if variant else None, "stats": variant.stats if variant else None,
           "rho": rho, "ppl": ppl, "ppl_ratio": ppl / base_ppl, "top10_agreement": agreement,
           "weight_rel_change": float(report.weight_rel_change.mean()) if report is not None else 0.0,
           "kept_fraction": float(report.kept_fraction.mean()) if report is not None else 1.0,
           "n_memorized": len(mem),
           "strict_memorized": float(mem.strict.mean()) if len(mem) else None,
           "loose_memorized": float(mem.loose.mean()) if len(mem) else None,
           "distance_memorized": float(mem.norm_distance.mean()) if len(mem) else None}
    for r in summarize(table, ["repetitions"]).itertuples():
        row[f"strict@{r.repetitions}"] = r.strict_acc
        row[f"loose@{r.repetitions}"] = r.loose_acc
        row[f"distance@{r.repetitions}"] = r.mean_norm_distance
    for r in summarize(table, ["position"]).itertuples():
        row[f"strict@pos{r.position}"] = r.strict_acc
    return row


def headline(sweep: list[dict], budget: float) -> dict[str, Any]:
    """Per variant, the smallest ρ whose perplexity stays within ``budget`` × the unedited model's (None
    if no ρ of the sweep does)."""
    out = {}
    for name in dict.fromkeys(r["variant"] for r in sweep if r["method"] != "none"):
        ok = [r for r in sweep if r["variant"] == name and r["ppl_ratio"] <= budget]
        out[name] = min(ok, key=lambda r: r["rho"])["rho"] if ok else None
    return out


def split_validation(task: TextCanaries, batch_size: int = 16) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """The validation windows in two halves: (for held-out K-FAC statistics, for perplexity/agreement)."""
    windows = torch.cat(task.validation(batch_size))
    half = len(windows) // 2
    if half == 0:
        raise ValueError("the validation text is shorter than two windows; lower seq_len")
    return list(windows[:half].split(batch_size)), list(windows[half:].split(batch_size))


def execute(run: RunConfig, protocol: Protocol, progress: bool = True) -> dict[str, Any]:
    """Train, probe, edit and probe again; returns the run's entry of results.json."""
    task = protocol.task()
    model_cfg = run.model_config(protocol, task.d_vocab)
    start = time.perf_counter()
    result = train(model_cfg, task, protocol.train, progress=progress,
                   batches=lambda step: task.train_batch(step, protocol.train.batch_size))
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    entry = analyse(result.model.eval(), protocol)
    return {"name": run.name, "run": run.to_dict(), "model": model_cfg.to_dict(), "task": task.to_dict(),
            "train_seconds": round(train_seconds, 1), "probe_edit_seconds": round(time.perf_counter() - start, 1),
            "final_train_loss": result.history[-1]["train_loss"], **entry}


def analyse(model, protocol: Protocol) -> dict[str, Any]:
    """Probe a trained model, edit it with every variant at every ρ and probe again (the run's entry of
    results.json, less its config and timings)."""
    task = protocol.task()
    P, L = protocol.prefix_len, protocol.suffix_len
    stats_val, val = split_validation(task)
    base_ppl = held_out_perplexity(model, val)
    main = recite(model, task, P, L, "trained")
    memorized = main[main.strict].canary.tolist()
    at_zero = recite(model, task, P, L, 0)
    by_prompt = summarize(pd.concat([at_zero, main[main.prompt_position > 0]]),
                          ["position", "prompt_position", "repetitions"])
    by_prefix = summarize(pd.concat([recite(model, task, p, L, "trained") for p in protocol.prefix_lens]),
                          ["prefix_len", "position", "repetitions"])
    meta = task.canary_table()[["repetitions", "position"]]
    offsets = recitation_table(model, task.canaries(), [protocol.offset_prefix_len], protocol.offset_suffix_len,
                               offsets=list(protocol.offsets), meta=meta)
    by_offset = summarize(offsets, ["position", "repetitions", "offset"])

    def sites_of(v: Variant) -> tuple[str, ...]:
        return tuple(s.param for s in linear_sites(model, layers=v.layers, kinds=v.kinds))

    gen = torch.Generator().manual_seed(protocol.seed + 10_000)
    stats_batches = {"train": [task.sample(protocol.train.batch_size, gen).tokens for _ in range(protocol.kfac_batches)],
                     "heldout": stats_val}
    factors = {}
    for stats in dict.fromkeys(v.stats for v in protocol.variants if v.stats):
        union = tuple(dict.fromkeys(x for v in protocol.variants if v.stats == stats for x in sites_of(v)))
        factors[stats] = collect_kfac(model, stats_batches[stats],
                                      KFACConfig(sites=union, labels=protocol.labels, seed=protocol.seed),
                                      progress=False)
    sweep = [edit_row(None, 1.0, main, memorized, base_ppl, base_ppl, 1.0, None)]
    layers = []
    for rho in protocol.rhos:
        for v in protocol.variants:
            sites = sites_of(v)
            if v.method == "kfac":
                edited, report = kfac_edit(model, {x: factors[v.stats][x] for x in sites}, rho)
            else:
                edited, report = svd_edit(model, sites, rho, budget="energy")
            table = recite(edited, task, P, L, "trained")
            sweep.append(edit_row(v, rho, table, memorized, held_out_perplexity(edited, val), base_ppl,
                                  topk_agreement(model, edited, val), report))
            layers += records(report.assign(variant=v.name))
    spectra = {stats: {x: records(thin_spectrum(curvature_spectrum(f[x]), 200)) for x in f}
               for stats, f in factors.items()}
    realized = torch.bincount(task.row_canaries() + 1, minlength=task.n_canaries + 1)[1:]
    return {"val_ppl": base_ppl,
            "canaries": records(task.canary_table().assign(realized=realized.tolist(),
                                                           recited=main.strict.tolist())),
            "memorized": memorized, "kfac_tokens": {k: next(iter(f.values())).n_tokens for k, f in factors.items()},
            "sweep": sweep, "headline": headline(sweep, protocol.ppl_budget), "edit_layers": layers,
            "by_prompt_position": records(by_prompt), "by_prefix_len": records(by_prefix),
            "by_offset": records(by_offset), "spectra": spectra}
