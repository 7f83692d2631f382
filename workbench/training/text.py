"""Train a small language model on real text and report validation perplexity at every checkpoint.

    python -m workbench.training.text --out runs/text-delta-op --mixer delta --block outlier_protected \\
        --steps 600 --save-every 200

Any registered mixer (``workbench.mixers.names()``) and either block style (pre_norm, outlier_protected).
Writes the run directory ``--out`` (:mod:`workbench.run_dir`: the final checkpoint, ``step_{N}/``
checkpoints, ``recipe.json``, ``history.json``) plus ``tokenizer.json`` and ``text_metrics.json``
(validation loss, perplexity and bits per byte of every checkpoint, by step).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Optional, Union

from ..checkpoint import load
from ..config import ModelConfig
from ..mixers import names
from ..run_dir import RunWriter, step_checkpoints
from ..tasks.text import TextLM
from ..text.evaluate import evaluate_text
from .run_config import check_fits
from .trainer import TrainConfig, run_record, train


def run_text(model_cfg: ModelConfig, task: TextLM, train_cfg: TrainConfig, out: Optional[Union[str, Path]] = None,
             progress: bool = True, command: str = "") -> dict[str, Any]:
    """Train ``model_cfg`` on ``task``; evaluate the validation split at each saved checkpoint and at the
    end. Returns ``{"final": {...}, "by_step": {step: {...}}, "history": [...]}`` and, with ``out``,
    writes the run directory described in the module docstring (``command`` goes into its recipe)."""
    check_fits(model_cfg, task, "run_text")
    train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "out_dir": None})
    if out is None:
        result = train(model_cfg, task, train_cfg, progress=progress)
        final = evaluate_text(result.model, task)
        return {"final": final, "by_step": {train_cfg.steps: final}, "history": result.history}
    with RunWriter(out) as writer:
        result = train(model_cfg, task, train_cfg, progress=progress, writer=writer)
        by_step = {step: evaluate_text(load(d), task) for step, d in step_checkpoints(writer.path).items()}
        final = by_step[train_cfg.steps] = evaluate_text(result.model, task)
        writer.write(result.model, run_record(model_cfg, task, train_cfg), result.history, command=command,
                     files={"tokenizer.json": task.data.tokenizer.to_json(),
                            "text_metrics.json": {"final": final, "by_step": by_step}})
    return {"final": final, "by_step": by_step, "history": result.history}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train a small LM on real text (python -m workbench.training.text --help)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--mixer", default="delta", choices=names(), help="a registered mixer (workbench.mixers)")
    p.add_argument("--block", default="pre_norm", choices=["pre_norm", "outlier_protected"])
    p.add_argument("--corpus", default="python-topics", help="python-topics, python-docstrings, docstrings:NAMES (e.g. docstrings:stdlib+torch) or file:PATH")
    p.add_argument("--tokenizer", default="bpe", choices=["bpe", "bytes"])
    p.add_argument("--vocab-size", type=int, default=1024)
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--d-model", type=int, default=128)
    p.add_argument("--n-layers", type=int, default=2)
    p.add_argument("--n-heads", type=int, default=4)
    p.add_argument("--d-head", type=int, default=32)
    p.add_argument("--d-mlp", type=int, default=512)
    p.add_argument("--model-json", default="{}", help='more ModelConfig fields as JSON, e.g. \'{"norm": "rmsnorm"}\'')
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--save-every", type=int, default=200, help="keep a checkpoint every N steps (0: final only)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    task = TextLM(corpus=args.corpus, tokenizer=args.tokenizer, vocab_size=args.vocab_size, seq_len=args.seq_len)
    extra = json.loads(args.model_json)
    model_cfg = ModelConfig.from_dict({"d_vocab": task.d_vocab, "d_model": args.d_model, "n_layers": args.n_layers,
                                       "n_heads": args.n_heads, "d_head": args.d_head, "d_mlp": args.d_mlp,
                                       "n_ctx": args.seq_len, "mixer": args.mixer, "block": args.block,
                                       "seed": args.seed, **extra})
    train_cfg = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr, save_every=args.save_every,
                            seed=args.seed, eval_every=max(args.steps // 10, 1))
    command = " ".join(["python -m workbench.training.text", *(sys.argv[1:] if argv is None else argv)])
    report = run_text(model_cfg, task, train_cfg, out=args.out, command=command)
    for step, m in sorted(report["by_step"].items()):
        print(f"step {step:6d}  val loss {m['val_loss']:.4f}  ppl {m['val_ppl']:.2f}  bits/byte {m['val_bpb']:.4f}")


if __name__ == "__main__":
    main()
