"""Which trainings are bit-identical: each (optimizer, mixer, torch thread count) trained twice, each time
in a fresh process, and the final weights compared bitwise — with each other (same thread count) and
with the 1-thread run (other thread counts).

    python benchmarks/determinism.py              # AdamW and SOAP × delta and softmax × 1 and 2 threads
    python benchmarks/determinism.py --quick      # fewer steps (the test runs this)

The model (2 layers, d_model 64, 4 heads), the task (MQAR, 64 positions, 96 token ids) and the training (batch 16, seed 0)
are fixed; only the optimizer, the mixer and ``torch.set_num_threads`` change.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import torch

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, torch
from safetensors.torch import save_file
from workbench import ModelConfig, TrainConfig, train
from workbench.tasks import MQAR
optimizer, mixer, threads, steps, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.set_num_threads(threads)
task = MQAR(vocab_size=96, seq_len=64, num_kv_pairs=8)
model = ModelConfig(d_vocab=96, d_model=64, n_heads=4, n_layers=2, mixer=mixer, seed=0)
cfg = TrainConfig(steps=steps, batch_size=16, lr=3e-3, warmup_steps=2, eval_every=steps, eval_batches=1,
                  optimizer=optimizer, precondition_frequency=5)
result = train(model, task, cfg, progress=False)
save_file({k: v.contiguous() for k, v in result.model.state_dict().items()}, out)
print(json.dumps({"threads": torch.get_num_threads()}))
"""


def train_once(optimizer: str, mixer: str, threads: int, steps: int, out: Path) -> dict[str, torch.Tensor]:
    """Train in a fresh process (its own thread pool) and return the final weights."""
    from safetensors.torch import load_file

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run([sys.executable, "-c", CHILD, optimizer, mixer, str(threads), str(steps), str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"training with {optimizer}/{mixer} at {threads} threads failed:\n{proc.stderr[-2000:]}")
    if json.loads(proc.stdout.strip().splitlines()[-1])["threads"] != threads:
        raise RuntimeError(f"torch did not use {threads} threads")
    return load_file(str(out))


def max_difference(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """The largest absolute difference over all weights (0.0: bit-identical)."""
    return max(float((a[k] - b[k]).abs().max()) for k in a)


def identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def measure(optimizers=("adamw", "soap"), mixers=("delta", "softmax"), threads=(1, 2), steps: int = 20) -> Iterator[dict]:
    """One row per (optimizer, mixer, threads), as each is measured: same-thread-count repeat bit-identical?,
    and the largest weight difference from the 1-thread run."""
    with tempfile.TemporaryDirectory() as tmp:
        for optimizer in optimizers:
            for mixer in mixers:
                first = None
                for t in threads:
                    a = train_once(optimizer, mixer, t, steps, Path(tmp) / "a.safetensors")
                    b = train_once(optimizer, mixer, t, steps, Path(tmp) / "b.safetensors")
                    first = a if first is None else first
                    yield {"optimizer": optimizer, "mixer": mixer, "threads": t, "steps": steps,
                           "repeat_identical": identical(a, b), "repeat_max_diff": max_difference(a, b),
                           "max_diff_vs_1_thread": max_difference(a, first)}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="6 steps instead of 20")
    ap.add_argument("--steps", type=int, default=None)
    args = ap.parse_args(argv)
    steps = args.steps or (6 if args.quick else 20)
    print("command: python benchmarks/determinism.py" + (" --quick" if args.quick else "")
          + (f" --steps {args.steps}" if args.steps else ""), flush=True)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs", flush=True)
    print("| optimizer | mixer | threads | repeat bit-identical | max |Δw| repeat | max |Δw| vs 1 thread |")
    print("|---|---|---|---|---|---|")
    for r in measure(steps=steps):
        print(f"| {r['optimizer']} | {r['mixer']} | {r['threads']} | {r['repeat_identical']} | {r['repeat_max_diff']:.3g} | "
              f"{r['max_diff_vs_1_thread']:.3g} |", flush=True)


if __name__ == "__main__":
    main()
