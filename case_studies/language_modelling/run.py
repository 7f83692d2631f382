"""One run of the study: train ``<model>-s<seed>`` on the token budget, then score it on the held-out documents."""

from __future__ import annotations

import math
import time
from typing import Any

from workbench.text.evaluate import evaluate_text
from workbench.training import train

from .config import Protocol, RunConfig, rule_and_map


def _round(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}") if math.isfinite(x) else x


def execute(run: RunConfig, protocol: Protocol) -> dict[str, Any]:
    """Train ``run`` and evaluate it on every held-out validation token; returns its results entry
    (a diverged run is kept, with its non-finite loss: ``diverged`` True)."""
    task = protocol.task()
    model_cfg = run.model_config(protocol, task.d_vocab)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(model_cfg, task, run.train_config(protocol), progress=False)  # the study shows a bar over runs
    train_seconds, train_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    metrics = evaluate_text(result.model, task)
    rule, fmap = rule_and_map(run.model)
    return {
        "name": run.name,
        "run": run.to_dict(),
        "rule": rule,
        "feature_map": fmap,
        "mixer": model_cfg.layer_mixers[0].to_dict(),
        "label": model_cfg.mixer_label,
        "params": result.model.num_params(),
        "tokens": protocol.tokens_per_run,
        "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1),
        "val_loss": _round(metrics["val_loss"]),
        "val_ppl": _round(metrics["val_ppl"]),
        "val_bpb": _round(metrics["val_bpb"]),
        "val_tokens": metrics["val_tokens"],
        "diverged": not math.isfinite(metrics["val_loss"]),
        "train_loss": [_round(h["train_loss"]) for h in result.history],
        "eval_loss_by_step": {str(h["step"]): _round(h["eval_loss"]) for h in result.history if "eval_loss" in h},
    }
