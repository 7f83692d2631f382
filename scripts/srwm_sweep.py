"""Which SRWM setting learns the toy MQAR task? One seed per setting, the toy-srwm recipe otherwise.

The bundled ``toy-srwm`` (identity input map, no extras, lr 3e-3) answers MQAR mostly by elimination (README,
"Notebooks"). This sweep varies one thing at a time from that recipe — the learning rate, DeltaNet's output norm,
its short convolution, 2 heads of 32 instead of 4 of 16, the initial β — trains each for ``--steps`` steps
(seed 0) and writes the final eval accuracy and loss per setting to ``--out`` (JSON, after every setting) and
prints them as a markdown table.

    python scripts/srwm_sweep.py --out docs/srwm_sweep_results.json            # 7 settings × 2000 steps, 1 thread
    python scripts/srwm_sweep.py --out /tmp/srwm.json --steps 5 --only base    # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from workbench.mixers.srwm import SRWMConfig
from workbench.training.recipes import _mqar_recipe
from workbench.training.run_config import train_run

SETTINGS = {  # name: (mixer config, recipe overrides, what changes from toy-srwm)
    "base": (SRWMConfig(input_softmax=False), {}, "the toy-srwm recipe (lr 3e-3, 4 × 16)"),
    "lr 1e-2": (SRWMConfig(input_softmax=False), {"lr": 1e-2}, "learning rate 1e-2"),
    "lr 1e-3": (SRWMConfig(input_softmax=False), {"lr": 1e-3}, "learning rate 1e-3"),
    "output norm": (SRWMConfig(input_softmax=False, output_norm=True), {}, "DeltaNet's per-head output RMSNorm"),
    "short conv": (SRWMConfig(input_softmax=False, conv_size=4), {}, "DeltaNet's short convolution (4)"),
    "2 × 32": (SRWMConfig(input_softmax=False), {"n_heads": 2, "d_head": 32}, "2 heads of 32"),
    "beta_init 0": (SRWMConfig(input_softmax=False, beta_init=0.0), {}, "initial β columns at 0 (σ = 0.5)"),
}


def markdown(rows: list[dict]) -> str:
    lines = ["| setting | change from toy-srwm | steps | MQAR accuracy | eval loss | CPU s |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['setting']} | {r['change']} | {r['steps']} | {r['eval_acc']:.3f} | {r['eval_loss']:.3f} "
                     f"| {r['cpu_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--only", nargs="*", choices=sorted(SETTINGS), help="run only these settings")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    torch.set_num_threads(1)
    command = "python scripts/srwm_sweep.py " + " ".join(sys.argv[1:] if argv is None else argv)
    start, rows = time.time(), []
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.only or list(SETTINGS):
        mixer, overrides, change = SETTINGS[name]
        overrides = dict(overrides)
        sizes = {"n_heads": overrides.pop("n_heads", 4), "d_head": overrides.pop("d_head", 16)}  # toy-srwm's 4 × 16
        run = _mqar_recipe(mixer, steps=args.steps, lr=overrides.pop("lr", 3e-3), **sizes, **overrides)
        cpu = time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            final = train_run(run, tmp, progress=False, name=name)["final"]
        rows.append({"setting": name, "change": change, "steps": args.steps, "eval_acc": final["eval_acc"],
                     "eval_loss": final["eval_loss"], "cpu_seconds": time.process_time() - cpu})
        print(f"{name}: accuracy {final['eval_acc']:.3f}, eval loss {final['eval_loss']:.3f}", flush=True)
        # written after every setting, so a stopped sweep keeps what it finished
        result = {"command": command, "wall_seconds": time.time() - start, "seed": 0, "rows": rows}
        args.out.write_text(json.dumps(result, indent=1))
    print(markdown(rows))


if __name__ == "__main__":
    main()
