"""The ``seeds`` part's tables: every cell's accuracy per seed (its own runs and the seed-0 runs it reused), the
mean over seeds with its 95 % t interval, and the paired contrasts of ``parts.SEED_CONTRASTS``
(:func:`seed_frame`, :func:`cell_seeds`, :func:`seed_contrasts` under them; :func:`seeds_tables` writes them)."""

from __future__ import annotations

import math
from typing import Any, Optional

import pandas as pd

from workbench.mixers import mixer_fields

from .._stats import paired_t, t_interval
from .figures import MIXER_LABELS
from .parts import SEED_CONTRASTS, PartRun


def _conv(run: PartRun) -> Optional[int]:
    """The taps of ``run``'s short convolution as trained (its mixer's default where the run sets none; 0: none),
    None for a mixer without the option."""
    return int(run.mixer_config().conv_size) if "conv_size" in mixer_fields(run.mixer) else None


def _cell(run: PartRun) -> tuple[str, Optional[int], float]:
    return run.mixer, _conv(run), run.lr


def seed_frame(results: dict[str, Any]) -> pd.DataFrame:
    """One row per run of the part and per reused seed-0 run: cell (mixer, conv, lr), seed, where it ran
    (``from``: this part or the part it was reused from), mean accuracy over the settings, ``acc T/kv`` per
    setting, stop and steps."""
    rows = []
    for entry in [*results.get("reused", []), *results["runs"]]:
        run = PartRun.from_dict(entry["run"])
        mixer, conv, lr = _cell(run)
        row = {"mixer": mixer, "conv": conv, "lr": lr, "seed": run.seed,
               "from": entry.get("reused_from", results["part"]), "mean": entry["mean_accuracy"],
               "stop": entry["stop"], "steps": entry["steps"]}
        row.update({f"acc {a['seq_len']}/{a['num_kv_pairs']}": a["accuracy"] for a in entry["accuracy"]})
        rows.append(row)
    return pd.DataFrame(rows)


def cells(results: dict[str, Any]) -> list[tuple[str, Optional[int], float]]:
    """The part's cells in the order of its runs."""
    out = []
    for r in results["study"]["runs"]:
        c = _cell(PartRun.from_dict(r))
        if c not in out:
            out.append(c)
    return out


def missing_runs(results: dict[str, Any]) -> list[str]:
    """The names of the part's runs that have no entry (a part stopped before its end)."""
    done = {e["name"] for e in results["runs"]}
    return [PartRun.from_dict(r).name for r in results["study"]["runs"] if PartRun.from_dict(r).name not in done]


def cell_seeds(df: pd.DataFrame, cell: tuple[str, Optional[int], float]) -> pd.DataFrame:
    """The rows of one cell, one per seed, sorted by seed."""
    mixer, conv, lr = cell
    same_conv = df["conv"].isna() if conv is None else df["conv"] == conv
    return df[(df["mixer"] == mixer) & same_conv & (df["lr"] == lr)].sort_values("seed")


def seed_contrasts(df: pd.DataFrame, all_cells: list[tuple[str, Optional[int], float]]) -> list[dict[str, Any]]:
    """For each (a, b) of ``SEED_CONTRASTS`` whose cells are in the part: a − b on the mean accuracy, paired by
    seed: the seeds, the differences, and the paired t (``n``, mean, 95 % interval, p) where ≥ 2 seeds pair."""
    by_key = {(m, c): (m, c, lr) for m, c, lr in all_cells}
    rows = []
    for a, b in SEED_CONTRASTS:
        if a not in by_key or b not in by_key:
            continue
        x = cell_seeds(df, by_key[a]).set_index("seed")["mean"]
        y = cell_seeds(df, by_key[b]).set_index("seed")["mean"]
        seeds = sorted(set(x.index) & set(y.index))
        row = {"a": by_key[a], "b": by_key[b], "seeds": seeds, "diffs": [float(x[s] - y[s]) for s in seeds]}
        if len(seeds) >= 2:
            row.update(paired_t(x[seeds].to_numpy(), y[seeds].to_numpy()))
        rows.append(row)
    return rows


def _conv_label(conv: Optional[int]) -> str:
    return "—" if conv is None else "none" if conv == 0 else f"{conv} taps"


def _cell_label(cell: tuple[str, Optional[int], float]) -> str:
    mixer, conv, _ = cell
    name = MIXER_LABELS.get(mixer, mixer)
    return name if conv is None else f"{name} (conv {_conv_label(conv)})"


def _ci(mean: float, lo: float, hi: float) -> str:
    return f"{mean:.3f}" if math.isnan(lo) else f"{mean:.3f} [{lo:.3f}, {hi:.3f}]"


def seeds_tables(results: dict[str, Any]) -> str:
    df = seed_frame(results)
    all_cells = cells(results)
    seeds = sorted(set(df["seed"]) | {PartRun.from_dict(r).seed for r in results["study"]["runs"]} | {0})
    settings = [(a["seq_len"], a["num_kv_pairs"]) for a in (results.get("reused") or results["runs"])[0]["accuracy"]]
    out = ["Mean accuracy over the settings per training seed (the rule that stopped training @ its step), and the "
           "mean over the seeds with its 95 % t interval over seeds (n = the seeds; seed 0 from the part named):", "",
           "| mixer | short conv | lr | " + " | ".join(f"seed {s}" for s in seeds) + " | n | mean [95 % t] | seed 0 from |",
           "|---|---|---|" + "---|" * (len(seeds) + 3)]
    for cell in all_cells:
        g = cell_seeds(df, cell).set_index("seed")
        cols = [f"{g.loc[s, 'mean']:.3f} ({g.loc[s, 'stop']}@{g.loc[s, 'steps']})" if s in g.index else "not run"
                for s in seeds]
        src = g.loc[0, "from"] if 0 in g.index else "—"
        out.append(f"| {MIXER_LABELS.get(cell[0], cell[0])} | {_conv_label(cell[1])} | {cell[2]:.2e} | "
                   + " | ".join(cols) + f" | {len(g)} | {_ci(*t_interval(g['mean'].to_numpy()))} | {src} |")
    out += ["", "Accuracy per setting: mean over the seeds [95 % t interval over seeds]:", "",
            "| mixer | short conv | n | " + " | ".join(f"T={t}, kv={k}" for t, k in settings) + " |",
            "|---|---|---|" + "---|" * len(settings)]
    for cell in all_cells:
        g = cell_seeds(df, cell)
        cols = [_ci(*t_interval(g[f"acc {t}/{k}"].to_numpy())) for t, k in settings]
        out.append(f"| {MIXER_LABELS.get(cell[0], cell[0])} | {_conv_label(cell[1])} | {len(g)} | " + " | ".join(cols) + " |")
    contrasts = seed_contrasts(df, all_cells)
    if contrasts:
        out += ["", "Contrasts on the mean accuracy, paired by seed: a − b per seed, the mean difference [95 % paired-t "
                "interval] and the paired t test's two-sided p (n = the paired seeds):", "",
                "| a − b | n | per seed | mean [95 % t] | p |", "|---|---|---|---|---|"]
        for c in contrasts:
            per_seed = ", ".join(f"{d:+.3f}" for d in c["diffs"]) or "—"
            stat = (f"{_ci(c['mean'], c['lo'], c['hi'])} | {c['p']:.3f}" if "p" in c and c["p"] >= 0.001
                    else f"{_ci(c['mean'], c['lo'], c['hi'])} | < 0.001" if "p" in c else "needs ≥ 2 paired seeds | —")
            out.append(f"| {_cell_label(c['a'])} − {_cell_label(c['b'])} | {len(c['seeds'])} | {per_seed} | {stat} |")
    left = missing_runs(results)
    if left:
        out += ["", f"Not run yet ({len(left)} of {len(results['study']['runs'])}): " + ", ".join(left) + "."]
    return "\n".join(out)
