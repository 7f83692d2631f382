"""Logit lens against tuned lens, layer by layer, on text models trained by ``workbench.training.text``.

For each run directory: a tuned lens is trained with the authors' recipe (LensTrainConfig defaults: SGD, Nesterov,
lr 1.0, 250 steps) on windows drawn from the *training* documents, then both lenses are measured on the
*validation* documents (``validation_windows``, every token predicted once), split into equal groups of windows:
each number is the mean over the groups ± its standard error (the spread over held-out text; one model and one lens
seed per run — the spread over training seeds is not measured here). The cross-entropy gain of the tuned lens over
the logit lens is paired (both lenses on the same windows), so its standard error is that of the difference.
Writes ``results.json`` (with the command, wall time and CPU seconds), ``tables.md``, ``lenses.html`` and each lens
(safetensors + JSON) under ``--out``.

    python -m workbench.training.text --out runs/delta-4l --mixer delta --n-layers 4 --d-model 64 --d-head 16 \\
        --d-mlp 256 --steps 600 --save-every 0
    python scripts/lens_text.py runs/delta-4l --out runs/lenses
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from workbench import atomic, load
from workbench.analysis.lenses import LensTrainConfig, lens_table, train_tuned_lens
from workbench.plots import lens_by_layer
from workbench.tasks import task_from_dict
from workbench.text import validation_windows

STATS = ("logit_ppl", "tuned_ppl", "gain_ce", "logit_kl", "tuned_kl")


def measure(run: Path, out: Path, steps: int, batch_size: int, groups: int, seed: int) -> pd.DataFrame:
    model = load(run)
    task = task_from_dict(json.loads((run / "recipe.json").read_text())["task"])
    if task.to_dict()["name"] != "text":
        raise ValueError(f"{run} was not trained on text (task {task.to_dict()['name']!r})")
    g = torch.Generator().manual_seed(seed)
    train = [task.sample(batch_size, g).tokens for _ in range(steps)]  # a fresh batch every step
    lens, history = train_tuned_lens(model, train, LensTrainConfig(steps=steps, seed=seed))
    lens.save(out / run.name)
    windows = [w for w in validation_windows(task.data.val_ids, task.seq_len) if len(w) == task.seq_len]
    per = len(windows) // groups
    if per < 1:
        raise ValueError(f"only {len(windows)} validation windows: ask for fewer --groups")
    tables = [lens_table(model, torch.stack(windows[i * per:(i + 1) * per]), lens).assign(group=i)
              for i in range(groups)]
    both = pd.concat(tables)
    both["gain_ce"] = both["logit_ce"] - both["tuned_ce"]  # paired: the same windows through both lenses
    mean = both.groupby("layer")[list(STATS)].mean()
    se = both.groupby("layer")[list(STATS)].std(ddof=1) / math.sqrt(groups)
    pooled = lens_table(model, torch.stack(windows[: groups * per]), lens)
    table = pooled[["layer", "hook"]].copy()
    for s in STATS:
        table[s] = mean[s].values
        table[f"{s}_se"] = se[s].values
    table.insert(0, "model", run.name)
    table["final_lens_loss"] = float(history["loss"].iloc[-20:].mean())
    table["val_tokens"] = groups * per * (task.seq_len - 1)
    return table


def markdown(table: pd.DataFrame) -> str:
    lines = ["| model | layer | logit-lens ppl | tuned-lens ppl | CE logit − tuned (nats, paired) | logit-lens KL (nats) "
             "| tuned-lens KL (nats) |", "|---|---|---|---|---|---|---|"]
    for _, r in table.iterrows():
        cells = [f"{r[s]:.4g} ± {r[s + '_se']:.2g}" for s in STATS]
        lines.append(f"| {r['model']} | {r['layer']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path, help="run directories of workbench.training.text")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=250, help="tuned-lens training steps (the authors' 250)")
    p.add_argument("--batch-size", type=int, default=16, help="training windows per step")
    p.add_argument("--groups", type=int, default=8, help="groups of validation windows for the standard error")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python scripts/lens_text.py " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))
    start, cpu = time.perf_counter(), time.process_time()
    table = pd.concat([measure(r, args.out, args.steps, args.batch_size, args.groups, args.seed) for r in args.runs])
    text = markdown(table)
    atomic.write_text(args.out / "tables.md", text)
    with atomic.replacing(args.out / "lenses.html") as tmp:
        lens_by_layer(table, "ppl", title="perplexity by layer on validation text").write_html(
            str(tmp), include_plotlyjs="cdn")
    atomic.write_json(args.out / "results.json", {
        "command": command, "wall_seconds": round(time.perf_counter() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu, 1), "args": {k: str(v) for k, v in vars(args).items()},
        "table": json.loads(table.to_json(orient="records"))}, indent=1)
    print(text)
    print(f"{command}: {time.perf_counter() - start:.0f} s wall")


if __name__ == "__main__":
    main()
