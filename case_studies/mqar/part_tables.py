"""The parts' tables (markdown, generated from the ``runs`` of a part's results.json; the README holds them
verbatim) and the statistics under them: :func:`frame`, :func:`best_lr`, :func:`cell_stats`, :func:`conv_effects`."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from .._stats import paired_t, t_interval
from .figures import MIXER_LABELS
from .seed_tables import seeds_tables
from .tables import PUBLISHED


def frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: mixer, d_model, d_head, lr, seed, conv (the taps of its short convolution, 0 for none,
    None for a mixer without one), stop, steps, mean accuracy and the accuracy per setting ``acc T/kv``."""
    rows = []
    for r in runs:
        conv = r["run"].get("conv_size")  # set by the run, or the mixer's (a config may omit its default 0)
        conv = r["mixer_config"].get("conv_size") if conv is None else conv
        row = {"name": r["name"], "mixer": r["run"]["mixer"], "d_model": r["run"]["d_model"], "d_head": r["d_head"],
               "lr": r["run"]["lr"], "seed": r["run"]["seed"], "conv": conv,
               "stop": r["stop"], "steps": r["steps"], "mean": r["mean_accuracy"],
               "final_eval_acc": r["final_eval_acc"]}
        for a in r["accuracy"]:
            row[f"acc {a['seq_len']}/{a['num_kv_pairs']}"] = a["accuracy"]
        rows.append(row)
    return pd.DataFrame(rows)


def best_lr(runs: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """Per (mixer, d_model): the learning rate with the highest mean accuracy over the settings (averaged over
    seeds), ties to the smaller rate."""
    df = frame(runs)
    out = {}
    for (mixer, d), g in df.groupby(["mixer", "d_model"]):
        by_lr = g.groupby("lr")["mean"].mean()
        out[(mixer, int(d))] = float(min(by_lr.index, key=lambda lr: (-by_lr[lr], lr)))
    return out


def cell_stats(df: pd.DataFrame) -> pd.DataFrame:
    """Per (mixer, d_model, conv, lr): seeds, the mean accuracy over settings averaged over seeds with its 95 % t
    interval, the stops."""
    rows = []
    keys = ["mixer", "d_model", "conv", "lr"]
    for key, g in df.fillna({"conv": -1}).groupby(keys):
        mean, lo, hi = t_interval(g["mean"].to_numpy())
        rows.append({**dict(zip(keys, key)), "n": len(g), "mean": mean, "lo": lo, "hi": hi,
                     "stops": ", ".join(f"{s}@{n}" for s, n in zip(g["stop"], g["steps"]))})
    out = pd.DataFrame(rows)
    out["conv"] = [None if c == -1 else int(c) for c in out["conv"]]
    return out


def conv_effects(df: pd.DataFrame) -> pd.DataFrame:
    """Per mixer, paired by seed: the effect of the short convolution (conv − none) on the mean accuracy; and
    the interaction (delta's conv effect − the sum rule's) where both mixers have the same seeds (≥ 2)."""
    rows, effect = [], {}
    for mixer, g in df.groupby("mixer"):
        wide = g.pivot_table(index="seed", columns="conv", values="mean")
        if wide.shape[1] == 2 and len(wide.dropna()) >= 2:
            w = wide.dropna()
            on, off = w[max(w.columns)], w[min(w.columns)]
            effect[mixer] = on - off
            rows.append({"contrast": f"{MIXER_LABELS.get(mixer, mixer)}: conv − none", **paired_t(on.to_numpy(), off.to_numpy())})
    if len(effect) == 2:
        a, b = (effect[m] for m in sorted(effect))
        seeds = sorted(set(a.index) & set(b.index))
        if len(seeds) >= 2:
            rows.append({"contrast": f"interaction: {MIXER_LABELS.get(sorted(effect)[0])} − "
                                     f"{MIXER_LABELS.get(sorted(effect)[1])} conv effect",
                         **paired_t(a[seeds].to_numpy(), b[seeds].to_numpy())})
    return pd.DataFrame(rows)


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.3f}" if math.isnan(lo) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"


def _setting_cols(runs: list[dict]) -> list[tuple[int, int]]:
    return [(a["seq_len"], a["num_kv_pairs"]) for a in runs[0]["accuracy"]]


def _label(mixer: str) -> str:
    return MIXER_LABELS.get(mixer, mixer)


def sweep_tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    df = frame(runs)
    lrs = sorted(df["lr"].unique())
    seeds = sorted(df["seed"].unique())
    best = best_lr(runs)
    out = [f"Mean accuracy over the settings (seeds {', '.join(map(str, seeds))}; 95 % t interval over seeds "
           "where there are two or more), and the rule that stopped training @ its step; ** = the best rate:", "",
           "| mixer | d_model | " + " | ".join(f"lr {lr:.2e}" for lr in lrs) + " |", "|---|---|" + "---|" * len(lrs)]
    cells = cell_stats(df)
    for (mixer, d), g in cells.groupby(["mixer", "d_model"], sort=False):
        cols = []
        for lr in lrs:
            c = g[g["lr"] == lr]
            if c.empty:
                cols.append("")
                continue
            c = c.iloc[0]
            mark = "**" if best[(mixer, int(d))] == lr else ""
            cols.append(f"{mark}{_ci(c['mean'], c['lo'], c['hi'])}{mark} ({c['stops']})")
        out.append(f"| {_label(mixer)} | {d} | " + " | ".join(cols) + " |")
    settings = _setting_cols(runs)
    out += ["", "At each mixer's best rate: accuracy per setting [95 % Wilson interval over the scored queries, "
            "seed 0] and the mean, beside the published reading — one number per (mixer, d_model) from the "
            "reference sheet, not per setting (see \"Published numbers\"):", "",
            "| mixer | d_model | lr | " + " | ".join(f"T={t}, kv={k}" for t, k in settings) + " | mean | published (≈) |",
            "|---|---|---|" + "---|" * (len(settings) + 2)]
    for (mixer, d), lr in best.items():
        r = next(r for r in runs if r["run"]["mixer"] == mixer and r["run"]["d_model"] == d and r["run"]["lr"] == lr
                 and r["run"]["seed"] == min(seeds))
        cols = [f"{a['accuracy']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]" for a in r["accuracy"]]
        pub = PUBLISHED.get((mixer, d))
        out.append(f"| {_label(mixer)} | {d} | {lr:.2e} | " + " | ".join(cols)
                   + f" | {r['mean_accuracy']:.3f} | {'—' if pub is None else f'{pub:.2f}'} |")
    return "\n".join(out)


def conv_tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    df = frame(runs)
    settings = _setting_cols(runs)
    out = ["Accuracy per setting (mean over seeds) and the mean over settings with its 95 % t interval over seeds:", "",
           "| mixer | short conv | lr | seeds | " + " | ".join(f"T={t}, kv={k}" for t, k in settings)
           + " | mean | stops |", "|---|---|---|---|" + "---|" * (len(settings) + 2)]
    for (mixer, conv), g in df.groupby(["mixer", "conv"], sort=False):
        mean, lo, hi = t_interval(g["mean"].to_numpy())
        accs = [f"{g[f'acc {t}/{k}'].mean():.3f}" for t, k in settings]
        stops = ", ".join(f"{s}@{n}" for s, n in zip(g["stop"], g["steps"]))
        out.append(f"| {_label(mixer)} | {'none' if conv == 0 else f'{int(conv)} taps'} | {g['lr'].iloc[0]:.2e} | "
                   f"{len(g)} | " + " | ".join(accs) + f" | {_ci(mean, lo, hi)} | {stops} |")
    eff = conv_effects(df)
    if not eff.empty:
        out += ["", "Effects on the mean accuracy, paired by seed (mean difference [95 % t interval], paired t p):", "",
                "| contrast | seeds | difference | p |", "|---|---|---|---|"]
        for _, e in eff.iterrows():
            out.append(f"| {e['contrast']} | {e['n']} | {_ci(e['mean'], e['lo'], e['hi'])} | {_p(e['p'])} |")
    return "\n".join(out)


def pairs_tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    kvs = [s["num_kv_pairs"] for s in runs[0]["capacity_sweep"]]
    seq_len = runs[0]["capacity_sweep"][0]["seq_len"]
    trained = sorted({s["num_kv_pairs"] for s in results["study"]["protocol"]["train_settings"]})
    out = [f"Accuracy at T={seq_len} against the pairs stored [95 % Wilson interval over queries], trained on "
           f"kv ∈ {{{', '.join(map(str, trained))}}}; d_head = the size of a head's key (the memory is d_head × d_head):", "",
           "| mixer | d_model | d_head | lr | stop | " + " | ".join(f"kv={k}" for k in kvs) + " |",
           "|---|---|---|---|---|" + "---|" * len(kvs)]
    for r in sorted(runs, key=lambda r: r["run"]["d_model"]):
        cols = [f"{s['accuracy']:.3f} [{s['lo']:.3f}, {s['hi']:.3f}]" for s in r["capacity_sweep"]]
        out.append(f"| {_label(r['run']['mixer'])} | {r['run']['d_model']} | {r['d_head']} | {r['run']['lr']:.2e} | "
                   f"{r['stop']}@{r['steps']} | " + " | ".join(cols) + " |")
    return "\n".join(out)


def vocab_tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    settings = _setting_cols(runs)
    vocab = results["study"]["protocol"]["vocab_size"]
    out = [f"Vocabulary {vocab}: accuracy per setting [95 % Wilson interval over queries], one seed:", "",
           "| mixer | d_model | lr | stop | " + " | ".join(f"T={t}, kv={k}" for t, k in settings) + " | mean |",
           "|---|---|---|---|" + "---|" * (len(settings) + 1)]
    for r in runs:
        cols = [f"{a['accuracy']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]" for a in r["accuracy"]]
        out.append(f"| {_label(r['run']['mixer'])} | {r['run']['d_model']} | {r['run']['lr']:.2e} | "
                   f"{r['stop']}@{r['steps']} | " + " | ".join(cols) + f" | {r['mean_accuracy']:.3f} |")
    return "\n".join(out)


def long_tables(results: dict[str, Any]) -> str:
    runs = results["runs"]
    settings = _setting_cols(runs)
    train, vocab = results["study"]["protocol"]["train"], results["study"]["protocol"]["vocab_size"]
    out = [f"Vocabulary {vocab}, trained up to {train['steps']} steps (plateau: {train['patience']} evaluations of {train['eval_every']} "
           f"steps without +{train['min_delta']}): accuracy per setting [95 % Wilson interval over queries], the best "
           "accuracy on the training mixture during training and the step it was first reached, one seed:", "",
           "| mixer | d_model | lr | stop | " + " | ".join(f"T={t}, kv={k}" for t, k in settings)
           + " | mean | best training-mixture accuracy (step) |", "|---|---|---|---|" + "---|" * (len(settings) + 2)]
    for r in runs:
        cols = [f"{a['accuracy']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]" for a in r["accuracy"]]
        best = max(r["history"], key=lambda h: h["eval_acc"])
        out.append(f"| {_label(r['run']['mixer'])} | {r['run']['d_model']} | {r['run']['lr']:.2e} | "
                   f"{r['stop']}@{r['steps']} | " + " | ".join(cols)
                   + f" | {r['mean_accuracy']:.3f} | {best['eval_acc']:.3f} ({best['step']}) |")
    return "\n".join(out)


PART_TABLES = {"sweep": sweep_tables, "conv2x2": conv_tables, "pairs": pairs_tables, "vocab": vocab_tables,
               "seeds": seeds_tables, "long": long_tables, "vocab_long": long_tables}


def part_tables(results: dict[str, Any]) -> str:
    """The tables of a part's results (its ``tables.md``, which the README holds verbatim)."""
    return PART_TABLES[results["part"]](results) + "\n"
