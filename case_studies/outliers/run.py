"""One run of the outlier study: train with checkpoints, trace every checkpoint, quantise the final model."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch

from workbench.analysis.outliers import matmul_input_table, trace_matmul_inputs, trace_over_training
from workbench.analysis.outliers.quantize import quantize_w8a8
from workbench.text.evaluate import evaluate_text, validation_windows
from workbench.training import train

from .config import ControlRun, Protocol, RunConfig

SITES = ("resid_post", "mlp_hidden", "attn_out", "mlp_out", "q", "k", "v")
METRICS = ("kurtosis", "max_median_ratio", "max_abs", "signal_propagation")
QUANTISATIONS = {  # results key → quantize_w8a8 arguments; weights int8 per output channel unless said
    "per_tensor": dict(activations="per_tensor"),  # W8A8, He et al.'s setting
    "per_token": dict(activations="per_token"),
    "per_tensor_activations_only": dict(activations="per_tensor", weights=False),  # A8, float weights
    "per_tensor_a6": dict(activations="per_tensor", activation_bits=6),  # W8A6: harsher, same activations
    "per_tensor_a4": dict(activations="per_tensor", activation_bits=4),  # W8A4
}


def trace_batches(protocol: Protocol, task) -> list[torch.Tensor]:
    """The first ``trace_windows`` full validation windows, in batches of 8 (the same for every run)."""
    windows = [w for w in validation_windows(task.data.val_ids, task.seq_len) if len(w) == task.seq_len]
    if len(windows) < protocol.trace_windows:
        raise ValueError(f"the validation split has {len(windows)} full windows; lower Protocol.trace_windows")
    windows = windows[: protocol.trace_windows]
    return [torch.stack(windows[i: i + 8]) for i in range(0, len(windows), 8)]


def _round(x: float, digits: int = 6) -> float:
    return float(f"{x:.{digits}g}")


def execute(run: RunConfig, protocol: Protocol, checkpoints: Path, progress: bool = True,
            quantisations: tuple[str, ...] = tuple(QUANTISATIONS), matmul_inputs: bool = False,
            name: str | None = None) -> dict[str, Any]:
    """Train ``run`` (its run directory is ``checkpoints/<name>``, ``name`` by default the run's), then measure
    it; returns its results entry. ``quantisations``: the keys of :data:`QUANTISATIONS` to evaluate;
    ``matmul_inputs``: also trace every matmul input of the final model (``matmul_inputs`` rows and
    ``final_matmul_kurtosis``, the largest over layers per site) and add ``final_signal_propagation``."""
    unknown = sorted(set(quantisations) - set(QUANTISATIONS))
    if unknown:
        raise ValueError(f"unknown quantisations {unknown}; choose from {sorted(QUANTISATIONS)}")
    task = protocol.task()
    name = name or run.name
    out = Path(checkpoints) / name
    train_cfg = run.train_config(protocol)
    start = time.perf_counter()
    result = train(run.model_config(protocol, task.d_vocab), task, dataclasses.replace(train_cfg, out_dir=str(out)),
                   progress=progress)  # the run directory out: final model, step_N/ checkpoints, recipe.json
    train_seconds = time.perf_counter() - start
    table = trace_over_training(out, trace_batches(protocol, task), sites=SITES, progress=False)
    over_training = {"step": table.step.tolist(), "layer": table.layer.tolist(), "site": table.site.tolist(),
                     **{m: [_round(v) for v in table[m].tolist()] for m in METRICS}}
    float_ppl = evaluate_text(result.model, task)["val_ppl"]
    quant = {}
    for key in quantisations:
        kwargs = QUANTISATIONS[key]
        ppl = evaluate_text(quantize_w8a8(result.model, **kwargs), task)["val_ppl"]
        quant[key] = {"ppl_float": float_ppl, "ppl_w8a8": ppl, "ppl_ratio": ppl / float_ppl}
    last = table[table.step == table.step.max()]
    extra: dict[str, Any] = {}
    if matmul_inputs:
        mm = matmul_input_table(trace_matmul_inputs(result.model, trace_batches(protocol, task), progress=False),
                                result.model.cfg.n_layers)
        extra["matmul_inputs"] = [{"layer": int(r.layer), "site": r.site, "module": r.module,
                                   **{m: _round(float(getattr(r, m))) for m in METRICS}} for r in mm.itertuples()]
        extra["final_matmul_kurtosis"] = {site: _round(float(g["kurtosis"].max())) for site, g in mm.groupby("site")}
        extra["final_signal_propagation"] = {site: _round(float(last[last.site == site]["signal_propagation"].max()))
                                             for site in SITES if (last.site == site).any()}
    return {
        "name": name,
        "run": run.to_dict(),
        "train_seconds": round(train_seconds, 1),
        "train_loss": [_round(h["train_loss"]) for h in result.history],
        "eval_loss_by_step": {str(h["step"]): _round(h["eval_loss"]) for h in result.history if "eval_loss" in h},
        "val_ppl": _round(float_ppl),
        "w8a8": {g: {k: (_round(v) if isinstance(v, float) else v) for k, v in q.items()} for g, q in quant.items()},
        "final_kurtosis": {site: _round(float(last[last.site == site]["kurtosis"].max()))
                           for site in SITES if (last.site == site).any()},
        "over_training": over_training,
        **extra,
    }


def execute_control_run(run: ControlRun, protocol: Protocol, checkpoints: Path, progress: bool = True,
                        **measure: Any) -> dict[str, Any]:
    """:func:`execute` for a run of the parts that set an arm's lr and seed (``control``, ``seeds``): the entry with
    the run (``control``), its arm's name and ``run_seconds``; ``measure``: :func:`execute`'s measurement options."""
    start = time.perf_counter()
    entry = execute(run.arm, run.protocol(protocol), checkpoints, progress=progress, name=run.name, **measure)
    return {**entry, "control": run.to_dict(), "arm": run.arm.name, "run_seconds": round(time.perf_counter() - start, 1)}
