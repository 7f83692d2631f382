"""One run of the study: train a model on its task, test it, probe it, and save it as a workbench run
directory (model, recipe, history, test accuracy)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

import torch

from workbench import train
from workbench.run_dir import write_run
from workbench.training import run_record

from .._report import records
from .config import Protocol, RunConfig
from .evaluation import test_accuracy
from .probe import decode_state, key_recurrence

KIND_NAMES = {
    "code_execution": {1: "word (= ; ++ -- print if < > :)", 2: "variable name", 3: "number"},
    "listops": {1: "]", 2: "operator", 3: "digit"},
}


def execute(run: RunConfig, protocol: Protocol, checkpoint_dir: Optional[Path], command: str,
            progress: bool = True) -> dict[str, Any]:
    """Train, test and probe one run; save it under ``checkpoint_dir / run.name`` if given. Returns the
    run's entry of results.json."""
    task = protocol.task(run.task)
    cfg = run.train_config(protocol)
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(run.model_config(protocol), task, cfg, progress=progress)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model = result.model.eval()
    test = test_accuracy(model, task, protocol.test_sequences, protocol.test_seed(run.task))
    probe_tokens = task.sample(protocol.probe_sequences, torch.Generator().manual_seed(protocol.probe_seed(run.task))).tokens
    decoding = decode_state(model, task, probe_tokens)
    keys = key_recurrence(model, task, probe_tokens[: min(64, len(probe_tokens))], KIND_NAMES[run.task])
    history = [h for h in result.history if "eval_acc" in h]
    entry = {"name": run.name, "run": run.to_dict(), "model": model.cfg.to_dict(), "params": model.num_params(),
             "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
             "history": history, "test": test, "state_decoding": records(decoding), "keys": records(keys)}
    if checkpoint_dir is not None:
        write_run(Path(checkpoint_dir) / run.name, model, run_record(model.cfg, task, cfg), result.history,
                  name=run.name, command=command,
                  files={"evaluation.json": {"test": test, "train_seconds": entry["train_seconds"], "command": command,
                                             "note": "recurrent_fwp case study (case_studies/recurrent_fwp/README.md)"}})
    return entry
