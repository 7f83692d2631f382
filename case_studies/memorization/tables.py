"""The README's tables, generated from results.json (the tests check the README holds them verbatim)."""

from __future__ import annotations

from typing import Any, Optional

import pandas as pd

from workbench.mixers import describe

from .paper import MERULLO, MERULLO_BASE_PPL, XU_ROUGE_BY_OFFSET
from .pooled import compare, methods, models, of_model, pool_summary, seed_differences, summary_row


def _num(x: Optional[float], digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def _ci(t, digits: int = 3) -> str:
    mean, lo, hi = t
    return f"{mean:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _p(p: Optional[float]) -> str:
    return "—" if p is None else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def _rho(r) -> str:
    return "—" if r is None else f"{r:g}"


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in rows]


def _seeds(runs: list[dict], mixer: str) -> str:
    return ", ".join(str(r["run"]["seed"]) for r in of_model(runs, mixer))


def headline_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    budget = results["study"]["protocol"]["ppl_budget"]
    head = ["model", "edit", "ρ per seed", "canaries", "strict [95 % CI]", "loose [95 % CI]",
            "suffix loss, nats [95 % CI]", "ppl / unedited per seed", "top-10 agr.", "‖ΔW‖/‖W‖"]
    rows = []
    for mixer in models(runs):
        name = describe(mixer)
        for key, text in [("unedited", "unedited")] + methods(of_model(runs, mixer)[0]):
            s = summary_row(runs, mixer, key)
            rhos = " / ".join(_rho(r) for r in s["rhos"]) if key != "unedited" else "1"
            if "n" not in s:
                rows.append([name, text, rhos, f"no ρ within {budget:g}× in every seed", "", "", "", "", "", ""])
                continue
            rows.append([name, text, rhos, str(s["n"]), _ci(s["strict"]), _ci(s["loose"]), _ci(s["nll"], 2),
                         " / ".join(f"{x:.3f}" for x in s["ppl_ratio"]), _num(s["top10"]), _num(s["dw"], 2)])
    for p in MERULLO:
        rows.append(["OLMo-2 7B (paper)", p["method"], "0.6" if p["method"] == "K-FAC" else "", "",
                     _num(p["strict"]), _num(p["loose"]), "", _num(p["ppl"] / MERULLO_BASE_PPL), "", ""])
    seeds = "; ".join(f"{describe(m)}: seeds {_seeds(runs, m)}" for m in models(runs))
    return "\n".join([f"Each edit at its headline (the smallest ρ of the grid whose perplexity stays within "
                      f"{budget:g}× the unedited model's; BalancedSubnet: ρ = 1 − pruned fraction), scored on the "
                      f"canaries each unedited model recites exactly, pooled over seeds ({seeds}). Intervals: "
                      "bootstrap, canaries resampled within seed. Random basis: at K-FAC's ρ and rank, "
                      "the mean of its draws. Suffix loss: mean teacher-forced loss of the 16 suffix tokens.", ""]
                     + _table(head, rows))


def tests_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    head = ["model", "K-FAC against", "canaries", "strict K-FAC", "strict other", "only K-FAC recites",
            "only other recites", "test (strict)", "p", "Δ strict [95 % CI]", "Δ suffix loss [95 % CI]",
            "Wilcoxon p (loss)", "paired t p (loss)"]
    rows = []
    for mixer in models(runs):
        first = of_model(runs, mixer)[0]
        keys = methods(first)
        for key, text in keys[1:]:
            c = compare(runs, mixer, keys[0][0], key)
            if c is None:
                rows.append([describe(mixer), text, "no headline in every seed"] + [""] * 10)
                continue
            rows.append([describe(mixer), text, str(c["n"]), _num(c["strict_a"]), _num(c["strict_b"]),
                         "—" if c["only_a"] is None else str(c["only_a"]),
                         "—" if c["only_b"] is None else str(c["only_b"]), c["strict_test"], _p(c["strict_p"]),
                         _ci(c["d_strict"]), _ci(c["d_nll"], 2), _p(c["nll_wilcoxon"]), _p(c["nll_t"])])
    return "\n".join(["Paired on the same memorized canaries, pooled over seeds: K-FAC (the pre-registered edit) "
                      "against every other edit, each at its headline. Δ = K-FAC − other (negative strict: K-FAC "
                      "removes more; positive loss: K-FAC raises the suffix loss more). Tests two-sided; McNemar "
                      "exact; Wilcoxon signed-rank (normal approximation) where the other edit is a mean over "
                      "draws.", ""] + _table(head, rows))


def seed_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    rows = []
    head = None
    for mixer in models(runs):
        keys = methods(of_model(runs, mixer)[0])
        sweep_keys = [k for k in keys if k[0] in of_model(runs, mixer)[0]["headline"]]
        head = ["model", "seed", "memorized", "val ppl"] + [f"{t}: ρ, strict" for _, t in sweep_keys]
        for run in of_model(runs, mixer):
            cells = []
            for key, _ in sweep_keys:
                s = summary_row([run], mixer, key)
                cells.append(f"{_rho(s['rhos'][0])}, {s['strict'][0]:.3f}" if "n" in s else
                             f"{_rho(s['rhos'][0])}, —")
            rows.append([describe(mixer), str(run["run"]["seed"]), f"{len(run['memorized'])} of "
                         f"{len(run['canaries'])}", f"{run['val_ppl']:.2f}"] + cells)
    lines = ["Per seed: the headline ρ of each swept edit and strict recitation of that seed's memorized canaries.", ""]
    lines += _table(head, rows) + [""]
    for mixer in models(runs):
        keys = methods(of_model(runs, mixer)[0])
        d = seed_differences(runs, mixer, keys[0][0], keys[1][0])
        if d is None or "mean" not in d:
            continue
        lines.append(f"- {describe(mixer)}: strict(K-FAC) − strict(SVD) per seed "
                     f"{', '.join(f'{x:+.3f}' for x in d['diffs'])}; mean {d['mean']:+.3f}, 95 % t interval over "
                     f"{d['n']} seeds [{d['lo']:+.3f}, {d['hi']:+.3f}], p = {_p(d['p'])}.")
    return "\n".join(lines).rstrip()


def sweep_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    head = ["model", "edit", "ρ", "ppl / unedited (mean of seeds)", "strict (pooled)", "loose (pooled)",
            "suffix loss", "top-10 agr.", "‖ΔW‖/‖W‖"]
    rows = []
    for mixer in models(runs):
        frames = [pd.DataFrame(r["sweep"]).assign(seed=r["run"]["seed"]) for r in of_model(runs, mixer)]
        df = pd.concat(frames, ignore_index=True)
        df = df[~df.method.isin(["none", "random"]) & ~df.method.str.startswith("ablate")]
        df = df.assign(ks=df.strict_memorized * df.n_memorized, kl=df.loose_memorized * df.n_memorized,
                       kn=df.nll_memorized * df.n_memorized)
        order = list(dict.fromkeys(df.variant))
        for (variant, rho), part in sorted(df.groupby(["variant", "rho"]), key=lambda x: (order.index(x[0][0]),
                                                                                          -x[0][1])):
            n = part.n_memorized.sum()

            def pooled(col: str, digits: int = 3) -> str:  # "—" where no seed memorized anything
                return _num(part[col].sum() / n if n else None, digits)

            rows.append([describe(mixer), variant, f"{rho:g}", _num(part.ppl_ratio.mean()), pooled("ks"),
                         pooled("kl"), pooled("kn", 2), _num(part.top10_agreement.mean()),
                         _num(part.weight_rel_change.mean(), 2)])
    return "\n".join(["The whole sweep, pooled over seeds (recitation and loss over all seeds' memorized canaries):", ""]
                     + _table(head, rows))


def offset_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    prot = results["study"]["protocol"]
    top = sorted(prot["repetitions"])[-2:]
    rows, offsets = [], None
    for mixer in models(runs):
        recs = [x for r in of_model(runs, mixer) for x in r["by_offset"]]
        df = pool_summary(recs, ["placement", "position", "repetitions", "offset"])
        df = df[df.repetitions.isin(top)]
        offsets = sorted(set(df.offset))
        for (placement, pos, reps), part in df.groupby(["placement", "position", "repetitions"]):
            part = part.set_index("offset")
            where = "0" if placement == "zero" else "trained + o"
            rows.append([describe(mixer), str(pos), where, str(reps), str(int(part.n.iloc[0]))]
                        + [f"{part.strict_acc[o]:.2f} / {part.similarity[o]:.2f}" for o in offsets])
    head = ["model", "trained at", "prefix fed at", "repetitions", "canaries"] + [f"offset {o}" for o in offsets]
    xu = ", ".join(f"{o}: {v}" for o, v in XU_ROUGE_BY_OFFSET.items())
    return "\n".join([f"Offset probe, unedited models, pooled over seeds: strict accuracy / similarity 1 − d/L of the "
                      f"{prot['offset_suffix_len']}-token suffix after the {prot['offset_prefix_len']}-token prefix "
                      f"canary[o : o+{prot['offset_prefix_len']}]. \"0\": the prefix fed at position 0; \"trained + o\": "
                      f"after p + o tokens of held-out text, where its tokens sat in training. Xu et al. (8B, 128×), "
                      f"Rouge-L by offset: {xu}.", ""] + _table(head, rows))


def position_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    reps = sorted(results["study"]["protocol"]["repetitions"])
    rows = []
    for mixer in models(runs):
        recs = [x for r in of_model(runs, mixer) for x in r["by_prompt_position"]]
        df = pool_summary(recs, ["position", "prompt_position", "repetitions"])
        for (pos, prompt), part in df.groupby(["position", "prompt_position"]):
            part = part.set_index("repetitions")
            rows.append([describe(mixer), str(pos), str(prompt)] + [_num(part.strict_acc.get(r), 2) for r in reps]
                        + [_num(part.similarity[reps[-1]], 2)])
    head = ["model", "trained at", "prompted at"] + [f"strict @{r}" for r in reps] + [f"1 − d @{reps[-1]}"]
    return "\n".join(["Strict recitation before editing (16 → 16), pooled over seeds, by where the canary sat in its "
                      "training rows and where the prompt is placed (after that many tokens of held-out text):", ""]
                     + _table(head, rows))


def prefix_table(results: dict[str, Any]) -> str:
    runs = results["runs"]
    reps = sorted(results["study"]["protocol"]["repetitions"])
    rows, lens = [], None
    for mixer in models(runs):
        recs = [x for r in of_model(runs, mixer) for x in r["by_prefix_len"]]
        df = pool_summary(recs, ["repetitions", "prefix_len"]).set_index(["repetitions", "prefix_len"])
        lens = sorted(set(df.index.get_level_values(1)))
        for r in reps:
            rows.append([describe(mixer), str(r)] + [_num(df.strict_acc[(r, p)], 2) for p in lens])
    head = ["model", "repetitions"] + [f"prefix {p}" for p in lens]
    return "\n".join(["Strict recitation before editing by prefix length (prompt at the training position), pooled "
                      "over seeds:", ""] + _table(head, rows))


def tables(results: dict[str, Any]) -> str:
    return "\n\n".join([headline_table(results), tests_table(results), seed_table(results), sweep_table(results),
                        offset_table(results), position_table(results), prefix_table(results)]) + "\n"
