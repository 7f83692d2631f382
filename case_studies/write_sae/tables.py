"""tables.md from results.json."""

from __future__ import annotations

import pandas as pd

from workbench.analysis.dictionaries import win_rate

TOP = 0.1  # the share of firings, by KL of the removed write, in the "writes that matter" row


def _pct(w: dict) -> str:
    return (f"{w['wins']}/{w['n']} = {100 * w['fraction']:.1f} % "
            f"[{100 * w['ci_low']:.1f}, {100 * w['ci_high']:.1f}]")


def headline(results: dict) -> str:
    s = results["study"]
    lines = [f"WriteSAE on {s['checkpoint']} layer {s['layer']}: atom install vs the controls "
             "(wins/firings, Wilson 95 % interval)", "",
             "| head | vs removed write, true-token loss | vs removed write, KL | vs random atom, loss | vs random atom, KL |",
             "|---|---|---|---|---|"]
    rows = [(str(h["head"]), h["win_rates"]) for h in results["heads"]] + [("pooled", results["pooled_win_rates"])]
    firings = pd.DataFrame(results["firings"])
    top = firings[firings.kl_ablate >= firings.kl_ablate.quantile(1 - TOP)]
    rows.append((f"pooled, top {100 * TOP:.0f} % by KL of removal",
                 [win_rate(top, b, m) for b in ("ablate", "random") for m in ("loss", "kl")]))
    for name, wr in rows:
        by = {(w["baseline"], w["metric"]): w for w in wr}
        lines.append(f"| {name} | " + " | ".join(_pct(by[key]) for key in
                                                 (("ablate", "loss"), ("ablate", "kl"), ("random", "loss"),
                                                  ("random", "kl"))) + " |")
    return "\n".join(lines)


def tables(results: dict) -> str:
    out = [f"Command: `{results['command']}` ({results['wall_seconds']} s wall)", "", headline(results), ""]
    out += ["Median per-firing metrics (loss: mean true-next-token loss over the task's predictions from t on):", "",
            "| head | " + " | ".join(results["heads"][0]["medians"]) + " |",
            "|---" * (1 + len(results["heads"][0]["medians"])) + "|"]
    for h in results["heads"]:
        out.append(f"| {h['head']} | " + " | ".join(f"{v:.4g}" for v in h["medians"].values()) + " |")
    out += ["", "Write reconstruction on held-out writes:", "", "| head | relative MSE | explained variance | L0 | dead atoms |",
            "|---|---|---|---|---|"]
    for h in results["heads"]:
        r = h["reconstruction"]
        out.append(f"| {h['head']} | {r['relative_mse']:.3f} | {r['explained_variance']:.3f} | {r['l0']:.1f} | {r['dead']} |")
    sae = results["sae"]
    r, loss = sae["reconstruction"], sae["loss"]
    out += ["", f"Ordinary SAE on `{sae['hook']}` (held-out): MSE {r['mse']:.4g}, explained variance "
            f"{r['explained_variance']:.3f}, L0 {r['l0']:.1f}, dead {r['dead']}; model loss clean {loss['loss_clean']:.4f}, "
            f"SAE spliced {loss['loss_spliced']:.4f}, hook zeroed {loss['loss_zero']:.4f} "
            f"(recovered {100 * loss['loss_recovered']:.1f} %)", "", "Sparsity sweep:", "",
            "| dictionary | k | L0 | explained variance | atom beats removal (loss / KL) | atom beats random atom (loss / KL) |",
            "|---|---|---|---|---|---|"]
    for row in results["sweep"]:
        wins = (f"{100 * row['win_loss_vs_ablate']:.1f} % / {100 * row['win_kl_vs_ablate']:.1f} % | "
                f"{100 * row['win_loss_vs_random']:.1f} % / {100 * row['win_kl_vs_random']:.1f} % (n = {row['n_firings']})"
                if "win_kl_vs_ablate" in row else "– | –")
        out.append(f"| {row['dictionary']} | {row['k']} | {row['l0']:.2f} | {row['explained_variance']:.3f} | {wins} |")
    return "\n".join(out) + "\n"
