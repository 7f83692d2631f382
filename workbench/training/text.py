"""Train a small language model on real text and report validation perplexity at every checkpoint.

    python -m workbench.training.text --out runs/text-delta-op --mixer delta --block outlier_protected \\
        --steps 600 --save-every 200

Any mixer (softmax, linear, delta, gated_delta) and either block style (pre_norm, outlier_protected).
Writes into ``--out``: ``step_{N}/`` and ``final/`` checkpoints, ``history.json``, ``recipe.json`` (the
run config: model, task, train), ``tokenizer.json`` and ``text_metrics.json`` (validation loss,
perplexity and bits per byte of every checkpoint, by step).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Optional

from ..checkpoint import load
from ..config import ModelConfig
from ..tasks.text import TextLM
from .trainer import TrainConfig, train
from ..text.evaluate import evaluate_text


def checkpoint_steps(out: Path) -> list[tuple[int, Path]]:
    """(step, directory) of the intermediate checkpoints ``step_{N}/`` in ``out``, by step."""
    found = [(int(d.name[5:]), d) for d in out.glob("step_*") if d.name[5:].isdigit()]
    return sorted(found)


def run_text(model_cfg: ModelConfig, task: TextLM, train_cfg: TrainConfig, out: Optional[str] = None,
             progress: bool = True) -> dict[str, Any]:
    """Train ``model_cfg`` on ``task``; evaluate the validation split at each saved checkpoint and at the
    end. Returns ``{"final": {...}, "by_step": {step: {...}}, "history": [...]}`` and, with ``out``,
    writes the files listed in the module docstring."""
    if model_cfg.d_vocab < task.d_vocab:
        raise ValueError(f"ModelConfig.d_vocab is {model_cfg.d_vocab} but the tokenizer has {task.d_vocab} tokens; "
                         f"set d_vocab={task.d_vocab}")
    if model_cfg.positional == "learned" and model_cfg.n_ctx < task.seq_len:
        raise ValueError(f"ModelConfig.n_ctx {model_cfg.n_ctx} < seq_len {task.seq_len}; raise n_ctx")
    if out is not None:
        train_cfg = TrainConfig.from_dict({**train_cfg.to_dict(), "out_dir": str(out)})
    result = train(model_cfg, task, train_cfg, progress=progress)
    by_step: dict[int, dict] = {}
    if out is not None:
        out = Path(out)
        for step, d in checkpoint_steps(out):
            by_step[step] = evaluate_text(load(d), task)
    final = evaluate_text(result.model, task)
    by_step[train_cfg.steps] = final
    report = {"final": final, "by_step": by_step, "history": result.history}
    if out is not None:
        (out / "tokenizer.json").write_text(task.data.tokenizer.to_json())
        train_dict = {k: v for k, v in train_cfg.to_dict().items() if k != "out_dir"}  # a valid run config
        recipe = {"model": model_cfg.to_dict(), "task": task.to_dict(), "train": train_dict}
        (out / "recipe.json").write_text(json.dumps(recipe, indent=2))
        (out / "text_metrics.json").write_text(json.dumps({"final": final, "by_step": by_step}, indent=1))
    return report


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Train a small LM on real text (python -m workbench.training.text --help)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics)")
    p.add_argument("--mixer", default="delta", choices=["softmax", "linear", "delta", "gated_delta"])
    p.add_argument("--block", default="pre_norm", choices=["pre_norm", "outlier_protected"])
    p.add_argument("--corpus", default="python-topics", help="python-topics or file:PATH")
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
    report = run_text(model_cfg, task, train_cfg, out=args.out)
    for step, m in sorted(report["by_step"].items()):
        print(f"step {step:6d}  val loss {m['val_loss']:.4f}  ppl {m['val_ppl']:.2f}  bits/byte {m['val_bpb']:.4f}")


if __name__ == "__main__":
    main()
