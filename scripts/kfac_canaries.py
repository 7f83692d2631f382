"""K-FAC memorization editing on a synthetic task: recitation of canaries before/after, vs SVD truncation.

Trains a small model on :class:`workbench.tasks.canaries.Canaries` (a learnable Markov chain with
uniform-random canaries repeated 4–256 times), collects K-FAC factors of the MLP weights on the
training distribution (labels sampled from the model), then for each ρ edits with K-FAC and with SVD
truncation (same fraction ρ of spectral energy) and measures strict/loose recitation of the canaries
by repetition count, held-out perplexity on fresh chain text and top-10 agreement with the unedited
model. Writes ``results.json`` and prints the tables (see docs/kfac.md).

    python scripts/kfac_canaries.py --out runs/kfac_canaries            # under 10 min on 2 CPU cores
    python scripts/kfac_canaries.py --out /tmp/kfac_quick --quick       # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import ModelConfig
from workbench.analysis.kfac import KFACConfig, collect_kfac, kfac_edit, linear_sites, svd_edit
from workbench.analysis.memorization import (held_out_perplexity, recitation_table, summarize, topk_agreement)
from workbench.tasks.canaries import Canaries, realized_repetitions
from workbench.training import TrainConfig, train

RHOS = (1.0, 0.9, 0.8, 0.6, 0.4)
REPETITIONS = (4, 16, 64, 256)


def run(mixer: str, quick: bool, seed: int = 0) -> dict:
    steps, batch = (40, 40) if quick else (2000, 32)
    task = Canaries(vocab_size=64, seq_len=32, canary_len=24, repetitions=REPETITIONS, canaries_per_level=4,
                    n_sequences=steps * batch, seed=seed)
    cfg = ModelConfig(d_vocab=64, d_model=64, n_layers=2, n_heads=4, d_head=16, d_mlp=256, n_ctx=32, mixer=mixer,
                      chunk_size=16, seed=seed)
    tcfg = TrainConfig(steps=steps, batch_size=batch, lr=3e-3, weight_decay=0.0, warmup_steps=min(100, steps // 5),
                       eval_every=steps, seed=seed)
    t0 = time.perf_counter()
    result = train(cfg, task, tcfg, progress=False)
    model, last = result.model, result.history[-1]
    train_s = time.perf_counter() - t0
    counts = realized_repetitions(task, steps, batch, seed)
    meta = counts[["repetitions", "realized"]]

    n_kfac, n_eval = (2, 2) if quick else (32, 32)
    gen = torch.Generator().manual_seed(10_000 + seed)
    kfac_batches = [task.sample(batch, gen).tokens for _ in range(n_kfac)]  # the training distribution
    held_gen = torch.Generator().manual_seed(20_000 + seed)
    held_out = [task.background(batch, held_gen) for _ in range(n_eval)]  # fresh chain text, no canaries
    sites = tuple(s.param for s in linear_sites(model, kinds=["mlp_in", "mlp_out"]))
    factors = collect_kfac(model, kfac_batches, KFACConfig(sites=sites, labels="sampled", seed=seed), progress=False)

    canaries = task.canaries()
    rows, offsets = [], []

    def measure(method: str, rho: float, edited, report) -> None:
        tab = recitation_table(edited, canaries, prefix_lens=[8], suffix_len=16, meta=meta)
        by = summarize(tab, ["repetitions"])
        row = {"method": method, "rho": rho, "ppl": held_out_perplexity(edited, held_out),
               "top10_agreement": topk_agreement(model, edited, held_out),
               "weight_rel_change": float(report.weight_rel_change.mean()) if report is not None else 0.0,
               "kept_fraction": float(report.kept_fraction.mean()) if report is not None else 1.0}
        for r in by.itertuples():
            row[f"strict@{r.repetitions}"] = r.strict_acc
            row[f"loose@{r.repetitions}"] = r.loose_acc
        rows.append(row)

    measure("none", 1.0, model, None)
    for rho in (RHOS[1:] if not quick else (0.6,)):
        measure("kfac", rho, *kfac_edit(model, factors, rho))
        measure("svd", rho, *svd_edit(model, sites, rho, budget="energy"))
    # positional fragility of the unedited model: prefix taken at offset o into the canary (fed at position 0)
    off = recitation_table(model, canaries, prefix_lens=[4], suffix_len=12, offsets=[0, 8] if quick else [0, 2, 4, 8],
                           meta=meta)
    offsets = summarize(off, ["offset", "repetitions"]).to_dict("records")
    return {"mixer": mixer, "model": cfg.to_dict(), "task": task.to_dict(), "train": tcfg.to_dict(),
            "train_seconds": train_s, "final_train_loss": last["train_loss"], "final_eval_loss": last["eval_loss"],
            "sites": list(sites),
            "kfac_tokens": factors[sites[0]].n_tokens, "realized_repetitions": counts.to_dict("records"),
            "sweep": rows, "offsets": offsets}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for results.json")
    parser.add_argument("--mixers", default="delta,softmax")
    parser.add_argument("--quick", action="store_true", help="a few training steps: checks the pipeline only")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [run(m, args.quick, args.seed) for m in args.mixers.split(",")]
    (out / "results.json").write_text(json.dumps({"quick": args.quick, "runs": results}, indent=1))
    pd.set_option("display.width", 200)
    for r in results:
        print(f"\n## {r['mixer']}  (trained {r['train_seconds']:.0f} s; K-FAC on {r['kfac_tokens']} tokens)")
        print(pd.DataFrame(r["sweep"]).round(3).to_string(index=False))
        print(pd.DataFrame(r["offsets"]).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
