"""What keeps the FWM and the SRWM from binding keys to values? One change at a time, on the task with no shortcut.

The bundled FWM and SRWM answered MQAR by elimination and stayed near the copying baseline on associative recall
with queries drawn *with replacement* (``scripts/recall_without_elimination.py``; README, "Notebooks"). This
script trains each setting below for ``--steps`` steps on that task (6 pairs of 32 keys and 32 values, 6 queries;
the recipes' model, batch, learning rate and seed 0 otherwise) and writes the final accuracy per setting to
``--out`` (JSON, after every setting), then prints a markdown table.

* ``fwm ...``: the ``toy-fwm`` model (2 layers, one 16³ F per layer) in the authors' initialisation, with the
  LSTM skip (the authors' ``residual``: h_t added to the read-out) or without, and 1, 2 or 3 read hops.
* ``srwm ...``: the ``toy-srwm`` model (2 layers, 4 heads of 16) with its input variants.
* ``bare srwm ...``: one SRWM layer alone (embeddings → φ → SRWM → logits, no LSTM, no residual stream, Adam
  at the same rate), its input φ_t either a learned map of the previous and the current token's embeddings
  (``[E₁ x_{t−1}; E₂ x_t] W_in``, so key and value arrive through separate maps) or DeltaNet's depthwise
  short convolution (4) of one map ``conv(E x_t W_in)``, as the ``conv_size`` extra feeds the SRWM.

    python scripts/memory_binding.py --out docs/memory_binding.json                 # every setting, 1500 steps
    python scripts/memory_binding.py --out /tmp/b.json --steps 3 --only "fwm: no skip, 2 hops"   # a smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from recall_without_elimination import TASK, copy_baseline, recipe  # noqa: E402

from workbench.kernels import srwm  # noqa: E402
from workbench.mixers.fwm import FWMConfig  # noqa: E402
from workbench.mixers.srwm import SRWMConfig  # noqa: E402
from workbench.training.trainer import TrainConfig, train  # noqa: E402

EVAL_SEED = 1_000_003
EXTRAS = dict(conv_size=4, output_norm=True)


def _model_setting(name: str, mixer, **model_kw) -> Callable[[int], float]:
    def run(steps: int) -> float:
        base = recipe(name, steps)
        model = dataclasses.replace(base.model, mixer=mixer, **model_kw)
        return train(model, base.task, base.train, progress=False).history[-1]["eval_acc"]
    return run


class BareSRWM(nn.Module):
    """Embeddings → φ_t (``inputs``: "pair" [E₁ x_{t−1}; E₂ x_t] W_in, or "conv" depthwise-conv(E x_t W_in)) →
    the SRWM (W_0 ~ N(0, 1/d), β columns −1, as the mixer) → y W_O → logits."""

    def __init__(self, inputs: str, n_heads: int = 4, d_head: int = 16, d_embed: int = 64, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.inputs, self.h, self.d = inputs, n_heads, d_head
        v, hd = TASK.d_vocab, n_heads * d_head
        self.E, self.E_prev = nn.Embedding(v, d_embed), nn.Embedding(v, d_embed)
        self.W_in = nn.Linear(2 * d_embed if inputs == "pair" else d_embed, hd)
        self.conv = nn.Parameter(torch.empty(hd, 4).uniform_(-0.5, 0.5))
        W0 = torch.randn(n_heads, d_head, 3 * d_head + 4) / math.sqrt(d_head)
        W0[..., -4:] -= 1.0
        self.W_0 = nn.Parameter(W0)
        self.W_O = nn.Linear(hd, v)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if self.inputs == "pair":
            prev = F.pad(tokens[:, :-1], (1, 0))
            x = self.W_in(torch.cat([self.E_prev(prev), self.E(tokens)], -1))
        else:
            u = F.pad(self.W_in(self.E(tokens)).transpose(1, 2), (3, 0))
            x = F.conv1d(u, self.conv[:, None, :], groups=u.shape[1]).transpose(1, 2)
        phi = x.reshape(*tokens.shape, self.h, self.d)
        y = srwm(phi, self.W_0.expand(tokens.shape[0], -1, -1, -1)).output
        return self.W_O(y.flatten(2))


def _bare_setting(inputs: str) -> Callable[[int], float]:
    def run(steps: int) -> float:
        cfg = recipe("toy-srwm", steps).train
        model = BareSRWM(inputs, seed=cfg.seed)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        g = torch.Generator().manual_seed(cfg.seed)
        for _ in range(steps):
            batch = TASK.sample(cfg.batch_size, g)
            loss = F.cross_entropy(model(batch.tokens)[:, :-1][batch.loss_mask], batch.tokens[:, 1:][batch.loss_mask])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            batch = TASK.sample(cfg.eval_batches * cfg.batch_size, torch.Generator().manual_seed(EVAL_SEED))
            guess = model(batch.tokens)[:, :-1].argmax(-1)
            return float((guess[batch.loss_mask] == batch.tokens[:, 1:][batch.loss_mask]).float().mean())
    return run


SETTINGS: dict[str, tuple[str, Callable[[int], float]]] = {  # name: (what changes, run(steps) → accuracy)
    "fwm: authors'": ("the authors' FWM: 3 hops, LSTM skip (residual)",
                      _model_setting("toy-fwm", FWMConfig())),
    "fwm: 1 hop": ("1 hop, LSTM skip", _model_setting("toy-fwm", FWMConfig(n_reads=1))),
    "fwm: no skip, 1 hop": ("1 hop, no LSTM skip", _model_setting("toy-fwm", FWMConfig(n_reads=1, residual=False))),
    "fwm: no skip, 2 hops": ("2 hops, no LSTM skip (the new toy-fwm)",
                             _model_setting("toy-fwm", FWMConfig(n_reads=2, residual=False))),
    "fwm: no skip, 3 hops": ("3 hops, no LSTM skip", _model_setting("toy-fwm", FWMConfig(n_reads=3, residual=False))),
    "srwm: toy-srwm": ("the toy-srwm model: identity φ of a learned W_in", _model_setting("toy-srwm", SRWMConfig(
        input_softmax=False))),
    "srwm: authors' input": ("φ = softmax of the split residual (no W_in)", _model_setting(
        "toy-srwm", SRWMConfig(input_softmax=True, input_proj=False))),
    "srwm: split residual + extras": ("identity φ of the split residual, short conv + output norm", _model_setting(
        "toy-srwm", SRWMConfig(input_softmax=False, input_proj=False, **EXTRAS))),
    "srwm: 1 × 64 + extras": ("one head of 64, identity φ, short conv + output norm", _model_setting(
        "toy-srwm", SRWMConfig(input_softmax=False, **EXTRAS), n_heads=1, d_head=64)),
    "bare srwm: [prev; cur]": ("one SRWM layer alone, φ from the previous and current token by separate maps",
                               _bare_setting("pair")),
    "bare srwm: short conv": ("one SRWM layer alone, φ = depthwise short conv of one map", _bare_setting("conv")),
}


def markdown(rows: list[dict], baseline: float) -> str:
    lines = ["| setting | what changes | steps | accuracy (queries with replacement) | CPU s |", "|---|---|---|---|---|"]
    lines += [f"| {r['setting']} | {r['change']} | {r['steps']} | {r['eval_acc']:.3f} | {r['cpu_seconds']:.0f} |"
              for r in rows]
    lines.append(f"| copying a stored value at random | — | — | {baseline:.3f} | — |")
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="JSON file to write")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--only", nargs="*", choices=list(SETTINGS), help="run only these settings")
    args = ap.parse_args(argv)
    if args.steps < 1:
        ap.error(f"--steps must be at least 1, got {args.steps}")
    torch.set_num_threads(1)
    command = "python scripts/memory_binding.py " + " ".join(
        f'"{a}"' if " " in a else a for a in (sys.argv[1:] if argv is None else argv))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    start, rows = time.time(), []
    for name in args.only or list(SETTINGS):
        change, run = SETTINGS[name]
        cpu = time.process_time()
        acc = run(args.steps)
        rows.append({"setting": name, "change": change, "steps": args.steps, "eval_acc": acc,
                     "cpu_seconds": time.process_time() - cpu})
        print(f"{name}: accuracy {acc:.3f}", flush=True)
        args.out.write_text(json.dumps({"command": command, "wall_seconds": time.time() - start, "seed": 0,
                                        "task": TASK.to_dict(), "copy_baseline": copy_baseline(), "rows": rows},
                                       indent=1))
    print(markdown(rows, copy_baseline()))


if __name__ == "__main__":
    main()
