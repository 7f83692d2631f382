"""One run of the study: train ``mqar-<mixer>-d<d_model>``, score it per setting and on the capacity sweep,
probe its fast weights, and save it as a workbench checkpoint with its recipe."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd

from workbench import HookedFastWeightLM, TrainConfig, train
from workbench.run_dir import write_run
from workbench.tasks import MQARMixture
from workbench.training import run_record

from .._report import records
from .config import Protocol, RunConfig, Setting
from .evaluation import accuracy_by_lag, accuracy_by_pair, readout_by_lag, score_task
from .probe import by_lag, by_n_stored, by_pair, probe_task, write_strength


def eval_seed(protocol: Protocol, setting: Setting) -> int:
    """The seed of the evaluation sample of one setting (distinct from training's and from every other)."""
    return protocol.seed + 1_000_000 + 1_000 * setting.seq_len + setting.num_kv_pairs


def columns(df: pd.DataFrame, digits: int = 6) -> dict[str, list]:
    """A (large) DataFrame as JSON-ready columns, floats rounded to ``digits`` significant digits
    (NaN → None); ``pd.DataFrame(columns(df))`` reads it back."""
    out = {}
    for name in df.columns:
        values = df[name].tolist()
        out[str(name)] = [None if isinstance(v, float) and math.isnan(v) else
                          float(f"{v:.{digits}g}") if isinstance(v, float) else v for v in values]
    return out


def score_setting(model: HookedFastWeightLM, protocol: Protocol, setting: Setting, n_sequences: int):
    queries, readout = score_task(model, protocol.task(setting), n_sequences, eval_seed(protocol, setting))
    summary = {"seq_len": setting.seq_len, "num_kv_pairs": setting.num_kv_pairs,
               "accuracy": float(queries["correct"].mean()), "n_queries": int(len(queries)),
               "n_sequences": n_sequences, "seed": eval_seed(protocol, setting)}
    return summary, queries, readout


def execute(run: RunConfig, protocol: Protocol, checkpoint_dir: Optional[Path], command: str,
            progress: bool = True) -> dict[str, Any]:
    """Train, score and probe one run; save its checkpoint under ``checkpoint_dir / run.name`` if given.
    Returns the run's entry of results.json."""
    mixture = MQARMixture(tuple(protocol.tasks()))
    cfg = protocol.train
    start, cpu_start = time.perf_counter(), time.process_time()
    result = train(run.model_config(protocol), mixture, cfg, progress=progress)
    train_seconds, train_cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    model = result.model.eval()

    accuracy, lag_tables = [], {}
    for setting in protocol.train_settings:
        summary, queries, readout = score_setting(model, protocol, setting, protocol.eval_sequences)
        accuracy.append(summary)
        if setting == protocol.probe_lag_setting:
            lag_tables = {"accuracy_by_lag": records(accuracy_by_lag(queries)),
                          "readout_by_lag": records(readout_by_lag(readout))}
    if not lag_tables:  # the lag setting is not a training setting: score it on its own
        _, queries, readout = score_setting(model, protocol, protocol.probe_lag_setting, protocol.eval_sequences)
        lag_tables = {"accuracy_by_lag": records(accuracy_by_lag(queries)),
                      "readout_by_lag": records(readout_by_lag(readout))}
    cap = protocol.probe_capacity_setting
    sweep, cap_queries = [], None
    for kv in protocol.sweep_kv:
        setting = Setting(protocol.sweep_seq_len, kv)
        summary, queries, _ = score_setting(model, protocol, setting, protocol.sweep_sequences)
        sweep.append(summary)
        if setting == cap:
            cap_queries = queries
    if cap_queries is None:  # the capacity setting is not on the sweep: score it on its own
        cap_queries = score_setting(model, protocol, cap, protocol.sweep_sequences)[1]

    probe = None
    if model.fast_weight_layers:
        lag_df = probe_task(model, protocol.task(protocol.probe_lag_setting), protocol.probe_sequences,
                            eval_seed(protocol, protocol.probe_lag_setting) + 1, progress=progress)
        cap_seed = eval_seed(protocol, cap) + 1
        cap_df = probe_task(model, protocol.task(cap), protocol.probe_sequences, cap_seed, progress=progress)
        beta = write_strength(model, protocol.task(cap), protocol.probe_sequences, cap_seed)
        probe = {"by_lag": columns(by_lag(lag_df)), "by_n_stored": columns(by_n_stored(cap_df, cap.num_kv_pairs)),
                 "by_pair_at_write": columns(by_pair(cap_df, "write")), "by_pair_at_end": columns(by_pair(cap_df, "end")),
                 "beta_by_pair": None if beta is None else columns(beta),
                 "lag_setting": protocol.probe_lag_setting.__dict__, "capacity_setting": cap.__dict__,
                 "n_sequences": protocol.probe_sequences}

    history = [h for h in result.history if "eval_acc" in h]
    entry = {"name": run.name, "run": run.to_dict(), "model": model.cfg.to_dict(), "params": model.num_params(),
             "train_seconds": round(train_seconds, 1), "train_cpu_seconds": round(train_cpu_seconds, 1),
             "history": history, "accuracy": accuracy,
             "capacity_sweep": sweep, **lag_tables, "accuracy_by_pair": records(accuracy_by_pair(cap_queries)),
             "probe": probe}
    if checkpoint_dir is not None:
        write_checkpoint(model, Path(checkpoint_dir) / run.name, entry, mixture, cfg, command)
    return entry


def write_checkpoint(model: HookedFastWeightLM, directory: Path, entry: dict, mixture: MQARMixture,
                     cfg: TrainConfig, command: str) -> Path:
    """The run directory (:mod:`workbench.run_dir`) of a run: the model, its ``recipe.json`` — a run config
    (model, task = the mixture it was trained on, train) with its final training record and ``command``,
    so ``workbench train recipe.json`` retrains the same weights — ``history.json`` (the evaluation steps
    of training) and ``evaluation.json`` (accuracy per setting and on the capacity sweep, with the seeds
    and sample sizes)."""
    evaluation = {"accuracy": entry["accuracy"], "capacity_sweep": entry["capacity_sweep"],
                  "train_seconds": entry["train_seconds"], "train_cpu_seconds": entry["train_cpu_seconds"],
                  "command": command,
                  "note": "MQAR case study (case_studies/mqar/README.md): accuracy over n_sequences fresh sequences "
                          "per setting, drawn with the given seed"}
    write_run(directory, model, run_record(model.cfg, mixture, cfg), entry["history"], name=entry["name"],
              command=command, files={"evaluation.json": evaluation})
    return directory
