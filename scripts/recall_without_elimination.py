"""Do the bundled fast-weight memories bind keys to values when no answer follows by elimination?

The bundled SRWM, FWM and Delta LSTM answer the toy MQAR task mostly by elimination: every key is asked once, so
a model that only knows which values were written and which were already asked scores ≈ 0.41 with 6 pairs
(README, "Notebooks"). This script retrains each bundled recipe (``workbench.training.recipes``: the same model,
learning rate, batch and seed) on :class:`~workbench.tasks.AssociativeRecall` instead — 6 pairs of 32 keys and
32 values, 6 queries drawn *with replacement* — where elimination gives nothing and copying a stored value at
random scores (1 + 5/32)/6 ≈ 0.193 (printed beside the results). ``--steps`` steps
each, one seed; the final eval accuracy per memory goes to ``--out`` (JSON, after every memory).

    python scripts/recall_without_elimination.py --out docs/recall_without_elimination.json   # 6 memories × 2000 steps
    python scripts/recall_without_elimination.py --out /tmp/r.json --steps 5 --only toy-srwm   # a smoke run, seconds

``--lr`` and ``--seed`` replace the recipes' learning rate and seed (model initialisation, training and eval data).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from workbench.tasks.associative_recall import AssociativeRecall
from workbench.training.recipes import RECIPES
from workbench.training.run_config import RunConfig, train_run

TASK = AssociativeRecall(num_pairs=6, num_keys=32, num_values=32, num_queries=6)  # 64 tokens, as toy MQAR's
# the three memories that answered MQAR by elimination first, then the three that recall it
MEMORIES = ("toy-srwm", "toy-fwm", "toy-delta-lstm", "toy-delta", "toy-rec-delta", "toy-delta-rnn")


def recipe(name: str, steps: int, lr: float | None = None, seed: int | None = None) -> RunConfig:
    """The bundled recipe ``name`` with the task replaced by :data:`TASK` and ``steps`` steps (and, when given, the
    learning rate ``lr`` and the ``seed`` of the model's initialisation and of the training and eval data)."""
    base = RECIPES[name]
    seed = base.train.seed if seed is None else seed
    model = dataclasses.replace(base.model, d_vocab=TASK.d_vocab, n_ctx=TASK.seq_len, seed=seed)
    return RunConfig(model, TASK, dataclasses.replace(base.train, steps=steps, seed=seed,
                                                      lr=base.train.lr if lr is None else lr))


def copy_baseline() -> float:
    """Expected accuracy of answering each query with one of the stored values drawn uniformly: the queried pair's
    own value, or another pair's that happens to be equal (values are drawn with replacement):
    (1 + (n − 1) / num_values) / n."""
    n = TASK.num_pairs
    return (1 + (n - 1) / TASK.num_values) / n


def markdown(rows: list[dict], baseline: float) -> str:
    with_lr = any("lr" in r for r in rows)  # rows written before --lr existed have the recipe's
    lines = [f"| memory | recipe | {'lr | seed | ' if with_lr else ''}steps | accuracy (queries with replacement) "
             "| eval loss | CPU s |", "|---|---|---|---|---|---|" + ("---|---|" if with_lr else "")]
    for r in rows:
        lr_seed = f"{r['lr']:g} | {r['seed']} | " if with_lr else ""
        lines.append(f"| {r['mixer']} | `{r['recipe']}` | {lr_seed}{r['steps']} | {r['eval_acc']:.3f} "
                     f"| {r['eval_loss']:.3f} | {r['cpu_seconds']:.0f} |")
    lines.append(f"| copying a stored value at random | {'— | — | ' if with_lr else ''}— | — | {baseline:.3f} | — | — |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--only", nargs="*", choices=MEMORIES, help="run only these recipes")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: each recipe's)")
    ap.add_argument("--seed", type=int, default=None, help="seed (default: each recipe's, 0)")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    if args.lr is not None and not args.lr > 0:
        ap.error(f"--lr must be > 0, got {args.lr}")
    if args.seed is not None and args.seed < 0:
        ap.error(f"--seed must be ≥ 0, got {args.seed}")
    torch.set_num_threads(1)
    command = "python scripts/recall_without_elimination.py " + " ".join(sys.argv[1:] if argv is None else argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    baseline = copy_baseline()
    start, rows = time.time(), []
    for name in args.only or list(MEMORIES):
        run = recipe(name, args.steps, args.lr, args.seed)
        cpu = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            final = train_run(run, tmp, progress=False, name=name)["final"]
        rows.append({"recipe": name, "mixer": run.model.mixer.kind, "lr": run.train.lr, "seed": run.train.seed,
                     "steps": args.steps, "eval_acc": final["eval_acc"],
                     "eval_loss": final["eval_loss"], "cpu_seconds": time.process_time() - cpu})
        print(f"{name}: accuracy {final['eval_acc']:.3f}, eval loss {final['eval_loss']:.3f}", flush=True)
        result = {"command": command, "wall_seconds": time.time() - start, "seed": run.train.seed,
                  "task": TASK.to_dict(), "copy_baseline": baseline, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1))  # after every memory: a stopped run keeps what finished
    print(markdown(rows, baseline))


if __name__ == "__main__":
    main()
