"""Named training recipes: a model config, a task and a train config, as data.

    python -m workbench.training.recipes toy-delta --out workbench/checkpoints/toy-delta

writes the checkpoint (``final/`` contents moved to ``--out``) plus ``recipe.json`` and ``history.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..config import ModelConfig
from ..tasks import MQAR
from .trainer import TrainConfig, train


@dataclass(frozen=True)
class Recipe:
    model: ModelConfig
    task: MQAR
    train: TrainConfig

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "task": self.task.to_dict(), "train": self.train.to_dict()}


def _mqar_recipe(mixer: str, **model_kw) -> Recipe:
    task = MQAR(vocab_size=64, seq_len=48, num_kv_pairs=6)
    model = ModelConfig(d_vocab=64, d_model=64, n_layers=2, n_heads=2, d_head=32, d_mlp=128, n_ctx=task.seq_len,
                        mixer=mixer, chunk_size=16, **model_kw)
    return Recipe(model, task, TrainConfig(steps=1500, batch_size=32, lr=3e-3, warmup_steps=50, eval_every=250,
                                           eval_batches=8, seed=0))


RECIPES = {
    "toy-delta": _mqar_recipe("delta"),
    "toy-gated-delta": _mqar_recipe("gated_delta"),
    "toy-linear": _mqar_recipe("linear"),
    "toy-softmax": _mqar_recipe("softmax"),
}


def run_recipe(name: str, out: Path, progress: bool = True) -> dict:
    if name not in RECIPES:
        raise ValueError(f"unknown recipe {name!r}; known: {sorted(RECIPES)}")
    recipe = RECIPES[name]
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(**{**recipe.train.to_dict(), "out_dir": tmp})
        result = train(recipe.model, recipe.task, cfg, progress=progress)
        out.mkdir(parents=True, exist_ok=True)
        for f in ("config.json", "model.safetensors"):
            shutil.copy(Path(tmp) / "final" / f, out / f)
    summary = {"recipe": name, **recipe.to_dict(), "final": result.history[-1],
               "command": f"python -m workbench.training.recipes {name} --out {out}"}
    (out / "recipe.json").write_text(json.dumps(summary, indent=2))
    (out / "history.json").write_text(json.dumps(result.history))
    return summary


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("name", choices=sorted(RECIPES))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    summary = run_recipe(args.name, args.out)
    print(json.dumps(summary["final"], indent=1))


if __name__ == "__main__":
    main()
