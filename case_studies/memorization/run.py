"""One run of the study: train ``mem-<mixer>-s<seed>`` on real text with canaries, probe its recitation, edit
it with K-FAC and with SVD over the ρ sweep and probe it again, then run the controls (random bases of
equal rank, MLP ablation) at the K-FAC headline. Per-canary outcomes of every edit are kept for the
paired tests of ``tables``."""

from __future__ import annotations

import time
from typing import Any, Optional, Union

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench import train
from workbench.analysis.kfac import (BalancedSubnetConfig, KFACConfig, ablate_mlp, balanced_subnet_edit, collect_kfac,
                                    kfac_edit, linear_sites, random_subspace_edit, svd_edit)
from workbench.analysis.memorization import (held_out_perplexity, recitation_table, suffix_nll, summarize,
                                            topk_agreement)
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
           prompt_at: Union[str, int] = "trained", nll: bool = False) -> pd.DataFrame:
    """Greedy recitation of every canary's ``canary[P : P+L]`` from ``canary[:P]``, with the prompt placed
    after ``q`` tokens of validation text: q = the canary's training position (``prompt_at="trained"``)
    or a fixed q. One row per canary: the columns of ``recitation_table`` plus ``repetitions``,
    ``position`` and ``prompt_position`` (and ``nll``, the suffix's teacher-forced loss, with ``nll``);
    ``prefix_len`` is P (the text before it not counted)."""
    table = task.canary_table()
    cans = task.canaries()
    frames = []
    qs = table.position if prompt_at == "trained" else pd.Series([int(prompt_at)] * len(table))
    for q in sorted(set(qs.tolist())):
        idx = [i for i in range(len(table)) if qs[i] == q]
        seqs = torch.stack([torch.cat([filler(task, i, q), cans[i]]) for i in idx])
        meta = table.iloc[idx][["canary", "repetitions", "position"]].reset_index(drop=True)
        tab = recitation_table(model, seqs, [q + prefix_len], suffix_len, meta=meta)
        tab = tab.assign(prefix_len=prefix_len, prompt_position=q, seq=meta.canary)
        if nll:
            tab = tab.assign(nll=suffix_nll(model, seqs, q + prefix_len, suffix_len).tolist())
        frames.append(tab)
    return pd.concat(frames, ignore_index=True).sort_values("canary").reset_index(drop=True)


def edit_row(variant: Union[Variant, tuple[str, str], None], rho: Optional[float], table: pd.DataFrame,
             memorized: list[int], ppl: float, base_ppl: float, agreement: float, report) -> dict[str, Any]:
    """One row of the sweep (``variant``: a :class:`Variant`, a control's ``(name, method)``, or None for the
    unedited model): perplexity, agreement, weight change, recitation of the memorized set (and its suffix
    loss when ``table`` has ``nll``), by repetition count and by training position."""
    mem = table[table.canary.isin(memorized)]
    if isinstance(variant, Variant):
        name, method, sites, stats = variant.name, variant.method, variant.sites_name, variant.stats
    elif variant is None:
        name, method, sites, stats = "unedited", "none", None, None
    else:
        (name, method), sites, stats = variant, None, None
    row = {"variant": name, "method": method, "sites": sites, "stats": stats,
           "rho": rho, "ppl": ppl, "ppl_ratio": ppl / base_ppl, "top10_agreement": agreement,
           "weight_rel_change": float(report.weight_rel_change.mean()) if report is not None else 0.0,
           "kept_fraction": float(report.kept_fraction.mean()) if report is not None else 1.0,
           "n_memorized": len(mem),
           "strict_memorized": float(mem.strict.mean()) if len(mem) else None,
           "loose_memorized": float(mem.loose.mean()) if len(mem) else None,
           "distance_memorized": float(mem.norm_distance.mean()) if len(mem) else None}
    if "nll" in mem.columns:
        row["nll_memorized"] = float(mem.nll.mean()) if len(mem) else None
    for r in summarize(table, ["repetitions"]).itertuples():
        row[f"strict@{r.repetitions}"] = r.strict_acc
        row[f"loose@{r.repetitions}"] = r.loose_acc
        row[f"distance@{r.repetitions}"] = r.mean_norm_distance
    for r in summarize(table, ["position"]).itertuples():
        row[f"strict@pos{r.position}"] = r.strict_acc
    return row


def per_canary(name: str, rho: Optional[float], table: pd.DataFrame, memorized: list[int]) -> list[dict]:
    """The memorized canaries' outcomes under one edit: ``variant, rho, canary, strict, loose, nll``."""
    mem = table[table.canary.isin(memorized)]
    return [{"variant": name, "rho": rho, "canary": int(r.canary), "strict": bool(r.strict), "loose": bool(r.loose),
             "nll": float(r.nll)} for r in mem.itertuples()]


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


def forget_rows(task: TextCanaries, canaries: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """For BalancedSubnet: the first training row holding each canary ``[n, seq_len]`` and the predictions
    of its canary tokens after the first ``[n, seq_len − 1]`` (the loss it is told to raise)."""
    which = task.row_canaries()
    table = task.canary_table()
    rows = [int((which == c).nonzero()[0, 0]) for c in canaries]
    mask = torch.zeros(len(canaries), task.seq_len - 1, dtype=torch.bool)
    for k, c in enumerate(canaries):
        p = int(table.position[c])
        mask[k, p:p + task.canary_len - 1] = True  # predicts tokens p+1 … p+canary_len−1
    return task.rows(torch.tensor(rows)), mask


def offset_probe(model, task: TextCanaries, offsets: list[int], prefix_len: int, suffix_len: int,
                 placement: str) -> pd.DataFrame:
    """Xu et al.'s offset probe: prefix ``canary[o : o+P]``, suffix the next L tokens, for every canary and
    offset o. ``placement="zero"``: the prefix is fed at position 0; ``"trained"``: after ``p + o`` tokens
    of validation text (p the canary's training position), so every prefix token sits where it sat in
    training and only the canary's first o tokens are missing. One row per (canary, offset)."""
    if placement not in ("zero", "trained"):
        raise ValueError(f"placement must be 'zero' or 'trained', got {placement!r}")
    table = task.canary_table()
    cans = task.canaries()
    meta = table[["canary", "repetitions", "position"]]
    frames = []
    for o in offsets:
        for p in sorted(set(table.position)):
            idx = [i for i in range(len(table)) if table.position[i] == p]
            q = p + o if placement == "trained" else 0
            seqs = torch.stack([torch.cat([filler(task, i, q), cans[i, o:o + prefix_len + suffix_len]]) for i in idx])
            tab = recitation_table(model, seqs, [q + prefix_len], suffix_len, meta=meta.iloc[idx])
            frames.append(tab.assign(offset=o, prefix_len=prefix_len, placement=placement))
    return pd.concat(frames, ignore_index=True)


def execute(run: RunConfig, protocol: Protocol, progress: bool = True) -> dict[str, Any]:
    """Train, probe, edit and probe again; returns the run's entry of results.json."""
    task = protocol.task(run.seed)
    model_cfg = run.model_config(protocol, task.d_vocab)
    train_cfg = run.train_config(protocol)
    start = time.perf_counter()
    result = train(model_cfg, task, train_cfg, progress=progress,
                   batches=lambda step: task.train_batch(step, train_cfg.batch_size))
    train_seconds = time.perf_counter() - start
    start = time.perf_counter()
    entry = analyse(result.model.eval(), protocol, run.seed, progress=progress)
    return {"name": run.name, "run": run.to_dict(), "model": model_cfg.to_dict(), "task": task.to_dict(),
            "train_seconds": round(train_seconds, 1), "probe_edit_seconds": round(time.perf_counter() - start, 1),
            "final_train_loss": result.history[-1]["train_loss"], **entry}


def analyse(model, protocol: Protocol, seed: int, progress: bool = False) -> dict[str, Any]:
    """Probe a trained model, edit it with every variant at every ρ, run the controls at the first
    variant's headline ρ and probe again (the run's entry of results.json, less its config and timings)."""
    task = protocol.task(seed)
    P, L = protocol.prefix_len, protocol.suffix_len
    stats_val, val = split_validation(task)
    base_ppl = held_out_perplexity(model, val)
    main = recite(model, task, P, L, "trained", nll=True)
    memorized = main[main.strict].canary.tolist()
    at_zero = recite(model, task, P, L, 0)
    by_prompt = summarize(pd.concat([at_zero, main[main.prompt_position > 0]]),
                          ["position", "prompt_position", "repetitions"])
    by_prefix = summarize(pd.concat([recite(model, task, p, L, "trained") for p in protocol.prefix_lens]),
                          ["prefix_len", "position", "repetitions"])
    offsets = pd.concat([offset_probe(model, task, list(protocol.offsets), protocol.offset_prefix_len,
                                      protocol.offset_suffix_len, placement) for placement in ("zero", "trained")])
    by_offset = summarize(offsets, ["placement", "position", "repetitions", "offset"])

    def sites_of(v: Variant) -> tuple[str, ...]:
        return tuple(s.param for s in linear_sites(model, layers=v.layers, kinds=v.kinds))

    gen = torch.Generator().manual_seed(seed + 10_000)
    stats_batches = {"train": [task.sample(protocol.train.batch_size, gen).tokens for _ in range(protocol.kfac_batches)],
                     "heldout": stats_val}
    factors = {}
    for stats in dict.fromkeys(v.stats for v in protocol.variants if v.stats):
        union = tuple(dict.fromkeys(x for v in protocol.variants if v.stats == stats for x in sites_of(v)))
        factors[stats] = collect_kfac(model, stats_batches[stats],
                                      KFACConfig(sites=union, labels=protocol.labels, seed=seed),
                                      progress=False)
    sweep = [edit_row(None, 1.0, main, memorized, base_ppl, base_ppl, 1.0, None)]
    canaries = per_canary("unedited", 1.0, main, memorized)
    layers = []
    kept: dict[tuple[str, float], dict[str, int]] = {}

    def measure(variant, rho, edited, report):
        table = recite(edited, task, P, L, "trained", nll=True)
        sweep.append(edit_row(variant, rho, table, memorized, held_out_perplexity(edited, val), base_ppl,
                              topk_agreement(model, edited, val), report))
        canaries.extend(per_canary(sweep[-1]["variant"], rho, table, memorized))
        layers.extend(records(report.assign(variant=sweep[-1]["variant"])))

    jobs = [(rho, v) for rho in protocol.rhos for v in protocol.variants]
    for rho, v in tqdm(jobs, desc="edits", disable=not progress, leave=False):
        sites = sites_of(v)
        if v.method == "kfac":
            edited, report = kfac_edit(model, {x: factors[v.stats][x] for x in sites}, rho)
        else:
            edited, report = svd_edit(model, sites, rho, budget="energy")
        kept[(v.name, rho)] = dict(zip(report.param, (int(k) for k in report.kept)))
        measure(v, rho, edited, report)
    first = protocol.variants[0]
    if memorized:
        forget, forget_mask = forget_rows(task, memorized)
        for ratio in tqdm(protocol.subnet_ratios, desc="BalancedSubnet", disable=not progress, leave=False):
            cfg = BalancedSubnetConfig(ratio=ratio, epochs=protocol.subnet_epochs, seed=seed)
            edited, report = balanced_subnet_edit(model, sites_of(first), forget, forget_mask,
                                                  torch.cat(stats_val), cfg)
            measure((f"BalancedSubnet {first.sites_name}", "balanced_subnet"), round(1 - ratio, 6), edited, report)
    chosen = headline(sweep, protocol.ppl_budget)
    rho0 = chosen[first.name]
    rand = torch.Generator().manual_seed(seed + 20_000)
    if rho0 is not None:
        for d in range(protocol.random_draws):
            edited, report = random_subspace_edit(model, kept[(first.name, rho0)], rand)
            measure((f"random basis, rank of {first.name} (draw {d})", "random"), rho0, edited, report)
    for mode in protocol.ablations:
        layer = (first.layers or (-1,))[-1]
        edited, report = ablate_mlp(model, layer, mode, stats_val)
        measure((f"MLP ablation ({mode}), layer {layer % model.cfg.n_layers}", f"ablate_{mode}"), None, edited,
                report)
    realized = torch.bincount(task.row_canaries() + 1, minlength=task.n_canaries + 1)[1:]
    return {"val_ppl": base_ppl,
            "canaries": records(task.canary_table().assign(realized=realized.tolist(),
                                                           recited=main.strict.tolist())),
            "memorized": memorized, "kfac_tokens": {k: next(iter(f.values())).n_tokens for k, f in factors.items()},
            "sweep": sweep, "headline": chosen, "per_canary": canaries, "edit_layers": layers,
            "by_prompt_position": records(by_prompt), "by_prefix_len": records(by_prefix),
            "by_offset": records(by_offset)}
