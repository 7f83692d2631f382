"""One run of the study: train the retriever on (setting, S), evaluate it, probe its memory."""

from __future__ import annotations

import dataclasses
import time

import torch

from workbench.retrieval.probe import probe_memory, summarize_probe
from workbench.retrieval.training import evaluate_retriever, train_retriever
from workbench.tasks import Retrieval

from .config import Run, Study


def execute(run: Run, study: Study, progress: bool = True) -> dict:
    """Train by the paper's protocol, then on ``study.probe_sequences`` fresh sequences (all queries) measure
    the model's loss/accuracy and, for fast-weight models, the probe of its memory (overall and, in
    setting 2, by how often the queried key was written)."""
    task = Retrieval(num_keys=run.num_keys, setting=run.setting)
    seed = study.seed if run.seed is None else run.seed
    train = study.train if run.seed is None else dataclasses.replace(study.train, seed=run.seed)
    cfg = run.model.retriever(run.num_keys, seed)
    cpu = time.process_time()
    result = train_retriever(cfg, task, train, progress=progress)
    cpu = time.process_time() - cpu
    model = result.model
    batch = task.sample(study.probe_sequences, torch.Generator().manual_seed(seed + 7), all_queries=True)
    entry = {
        "name": run.name, "setting": run.setting, "num_keys": run.num_keys, "label": run.model.label,
        "feature_map": run.model.feature_map, "update": run.model.update, "model": run.model.name,
        "seed": seed, "favor_choices": list(cfg.favor_choices) if cfg.feature_map == "favor" else None,
        "d_key": cfg.d_key, "steps": result.steps, "stop": result.stop, "train_seconds": round(result.seconds, 1),
        "train_cpu_seconds": round(cpu, 1),
        "final_eval_loss": result.final["eval_loss"], "final_eval_acc": result.final["eval_acc"],
        "best_eval_loss": min(h["eval_loss"] for h in result.history),
        "history": [{k: h[k] for k in ("step", "train_loss", "eval_loss", "eval_acc")} for h in result.history],
        "heldout": evaluate_retriever(model, batch), "probe": None,
    }
    if run.setting == 2:  # evaluated as the paper's code does: length-S sequences (it trains on length 2S)
        short = Retrieval(num_keys=run.num_keys, setting=2, length=run.num_keys)
        gen = torch.Generator().manual_seed(seed + 11)
        entry["paper_eval"] = evaluate_retriever(model, short.sample(study.train.eval_sequences, gen, all_queries=True))
    if run.model.feature_map != "softmax":
        df = probe_memory(model, batch)
        probe = summarize_probe(df)
        if run.setting == 2:
            bucket = df["occurrences"].clip(upper=3).map({1: "1", 2: "2", 3: "3+"})
            probe["by_occurrences"] = {
                key: {"n": int(len(g)), "probe_decodes": float(g["probe_decodes"].mean()),
                      "model_accuracy": float(g["model_correct"].mean())}
                for key, g in df.groupby(bucket)
            }
        entry["probe"] = probe
    return entry
