"""One run of a part (:mod:`case_studies.mqar.parts`): train until the convergence rule stops it, then score
the model on every training setting (and, where the part asks, on the capacity sweep). No probe and no
checkpoint: the parts measure accuracy only, and the main study's models stay the shipped ones."""

from __future__ import annotations

import time
from typing import Any

from workbench import train
from workbench.tasks import MQARMixture

from .._stats import wilson
from .config import Setting
from .parts import PartRun, PartStudy
from .run import score_setting


def _score(model, protocol, setting: Setting, n_sequences: int) -> dict[str, Any]:
    summary = score_setting(model, protocol, setting, n_sequences)[0]
    correct = round(summary["accuracy"] * summary["n_queries"])
    summary["lo"], summary["hi"] = wilson(correct, summary["n_queries"])  # over queries, not over seeds
    return summary


def execute_part(run: PartRun, study: PartStudy, progress: bool = True) -> dict[str, Any]:
    """Train and score one run of ``study``; returns its entry of the part's results.json: the run, its
    parameters, why and where training stopped, the evaluation history, the accuracy per setting (with a
    95 % Wilson interval over the scored queries) and, with ``study.capacity_sweep``, per number of pairs."""
    protocol = study.protocol
    mixture = MQARMixture(tuple(protocol.tasks()))
    cfg = run.train_config(protocol)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(run.model_config(protocol), mixture, cfg, progress=progress)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model = result.model.eval()
    accuracy = [_score(model, protocol, s, protocol.eval_sequences) for s in protocol.train_settings]
    sweep = [_score(model, protocol, Setting(protocol.sweep_seq_len, kv), protocol.sweep_sequences)
             for kv in protocol.sweep_kv] if study.capacity_sweep else None
    history = [h for h in result.history if "eval_acc" in h]
    return {"name": run.name, "run": run.to_dict(), "mixer_config": model.cfg.to_dict()["mixer"],
            "d_head": model.cfg.d_head, "params": model.num_params(), "stop": result.stop,
            "steps": result.history[-1]["step"], "final_eval_acc": history[-1]["eval_acc"],
            "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
            "history": history, "accuracy": accuracy, "capacity_sweep": sweep,
            "mean_accuracy": sum(a["accuracy"] for a in accuracy) / len(accuracy)}
