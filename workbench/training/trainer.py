"""A small, generic training loop: AdamW or SOAP, warmup + cosine, clipping, seeded data, periodic eval.

``train`` never changes the model it is given: it trains a deep copy and returns it. Two runs with the
same model, task and config give bit-identical weights on CPU at one torch thread (with two threads
repeats differ, by ~1e-6 with AdamW and ~2e-2 with SOAP; see the README's "Reliability"). With a ``resume_dir`` (or a
``writer``) the training state is saved at every eval, checkpoint and the last step
(:mod:`~workbench.training.resume`): a run killed at any point and started again continues from the last
saved step and ends with the same weights and history as a run never interrupted.
"""

from __future__ import annotations

import copy
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Union

import torch
from tqdm.auto import tqdm

from ..config import ModelConfig
from ..dataclass_io import JsonConfig, check_int_fields
from ..model import HookedFastWeightLM, lm_loss
from ..run_dir import RunWriter, step_checkpoints
from ..tasks.base import Task, TaskBatch
from . import resume


OPTIMIZERS = ("adamw", "soap")


@dataclass(frozen=True)
class TrainConfig(JsonConfig):
    """steps of ``optimizer`` (lr, betas, weight_decay) with linear warmup over ``warmup_steps`` then cosine
    decay to ``lr·min_lr_ratio``; gradients clipped to norm ``grad_clip`` (0 = off); eval on ``eval_batches``
    fixed batches every ``eval_every`` steps; with ``out_dir`` (None = none) the run directory is written
    there (:mod:`workbench.run_dir`), with checkpoints every ``save_every`` steps (0 = only the final one).
    Weight decay (decoupled) applies to matrices only, not to biases, norm weights, embeddings or decay
    parameters.

    ``optimizer``: ``"adamw"`` (``torch.optim.AdamW``) or ``"soap"`` (Vyas et al. 2024, Adam in the
    eigenbasis of Shampoo's preconditioner; ``pytorch_optimizer.SOAP`` with eigenbases refreshed every
    ``precondition_frequency`` steps; like that implementation, SOAP's first step only sets up the
    preconditioner and moves no weight). He et al. (2024) find SOAP-trained models have fewer outlier
    features than Adam-trained ones.

    Early stopping (:func:`stop_reason`, checked at every eval step; off by default): with ``stop_acc`` the
    run stops at the first eval whose ``eval_acc`` is ≥ ``stop_acc`` ("target"); with ``patience`` > 0 it
    stops when the last ``patience`` evals have not raised the best earlier ``eval_acc`` by more than
    ``min_delta`` ("plateau"). ``steps`` is then the cap ("max_steps"), and the schedule is still laid out
    over ``steps``: a run stopped early never reaches the end of its cosine."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    eval_every: int = 100
    eval_batches: int = 4
    seed: int = 0
    save_every: int = 0
    out_dir: Optional[str] = None
    optimizer: str = "adamw"
    precondition_frequency: int = 10  # SOAP only
    stop_acc: Optional[float] = None
    patience: int = 0
    min_delta: float = 0.0

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"TrainConfig.optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        check_int_fields(self, ("steps", "batch_size", "eval_every", "eval_batches", "precondition_frequency"))
        check_int_fields(self, ("warmup_steps", "save_every", "seed"), minimum=0)
        if not self.lr > 0:
            raise ValueError(f"TrainConfig.lr must be positive, got {self.lr}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise ValueError(f"TrainConfig.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.weight_decay < 0 or self.grad_clip < 0:
            raise ValueError("TrainConfig.weight_decay and grad_clip must be ≥ 0")
        object.__setattr__(self, "betas", tuple(self.betas))
        check_int_fields(self, ("patience",), minimum=0)
        if self.stop_acc is not None and not 0 < self.stop_acc <= 1:
            raise ValueError(f"TrainConfig.stop_acc must be in (0, 1] or None (no target), got {self.stop_acc}")
        if not self.min_delta >= 0:
            raise ValueError(f"TrainConfig.min_delta must be ≥ 0, got {self.min_delta}")


STOP_REASONS = ("target", "plateau", "max_steps")


@dataclass
class TrainResult:
    """The trained model, its history and why training stopped (one of :data:`STOP_REASONS`)."""

    model: HookedFastWeightLM
    history: list[dict[str, float]]
    stop: str = "max_steps"


def stop_reason(history: list[dict[str, float]], cfg: TrainConfig) -> Optional[str]:
    """Whether the early-stopping rule of ``cfg`` stops a run whose history so far is ``history``:
    "target" (the last ``eval_acc`` ≥ ``cfg.stop_acc``), "plateau" (the best ``eval_acc`` of the last
    ``cfg.patience`` evals is at most ``cfg.min_delta`` above the best before them), else None."""
    accs = [h["eval_acc"] for h in history if "eval_acc" in h]
    if not accs:
        return None
    if cfg.stop_acc is not None and accs[-1] >= cfg.stop_acc:
        return "target"
    if cfg.patience and len(accs) > cfg.patience:
        if max(accs[-cfg.patience:]) <= max(accs[:-cfg.patience]) + cfg.min_delta:
            return "plateau"
    return None


def run_record(model: ModelConfig, task: Task, cfg: TrainConfig) -> dict[str, Any]:
    """The ``model``, ``task`` and ``train`` sections of a run directory's ``recipe.json`` (a run config:
    ``out_dir`` is not part of a run)."""
    return {"model": model.to_dict(), **stage_record(task, cfg)}


def stage_record(task: Task, cfg: TrainConfig) -> dict[str, Any]:
    """The ``task`` and ``train`` sections of a run config (``out_dir`` is not part of a run)."""
    return {"task": task.to_dict(), "train": {**cfg.to_dict(), "out_dir": None}}


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Learning rate used for update ``step`` (0-based): linear warmup, then cosine to lr·min_lr_ratio."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    span = max(cfg.steps - cfg.warmup_steps, 1)
    progress = min((step - cfg.warmup_steps) / span, 1.0)
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + (cfg.lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def masked_loss(model: HookedFastWeightLM, batch: TaskBatch) -> torch.Tensor:
    """Mean next-token cross-entropy over the predictions the batch's loss_mask selects."""
    return lm_loss(model(batch.tokens), batch.tokens, mask=batch.loss_mask)


@torch.no_grad()
def evaluate(model: HookedFastWeightLM, batches: list[TaskBatch]) -> dict[str, float]:
    """Masked loss and top-1 accuracy on the scored predictions."""
    was_training = model.training
    model.eval()
    loss_sum, n, correct = 0.0, 0, 0
    for b in batches:
        logits = model(b.tokens)
        mask = b.loss_mask
        loss_sum += float(lm_loss(logits, b.tokens, mask=mask, reduction="sum"))
        correct += int((logits[:, :-1][mask].argmax(-1) == b.tokens[:, 1:][mask]).sum())
        n += int(mask.sum())
    model.train(was_training)
    return {"eval_loss": loss_sum / max(n, 1), "eval_acc": correct / max(n, 1)}


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        leaf = name.rsplit(".", 1)[-1]
        is_matrix = p.dim() >= 2 and leaf not in ("W_E", "W_pos", "weight")
        (decay if is_matrix else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The optimizer ``cfg.optimizer`` over ``model``'s parameters (two groups: decayed matrices, the rest)."""
    groups = _param_groups(model, cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
    try:
        from pytorch_optimizer import SOAP
    except ImportError:
        raise ImportError("optimizer='soap' needs pytorch-optimizer: pip install pytorch-optimizer") from None
    return SOAP(groups, lr=cfg.lr, betas=cfg.betas, precondition_frequency=cfg.precondition_frequency)


def train(
    model_or_config: Union[HookedFastWeightLM, ModelConfig],
    task: Task,
    cfg: TrainConfig = TrainConfig(),
    *,
    progress: bool = True,
    batches: Optional[Callable[[int], TaskBatch]] = None,
    writer: Optional[RunWriter] = None,
    resume_dir: Optional[Union[str, Path]] = None,
) -> TrainResult:
    """Train a copy of the model (or a fresh model from a config) on ``task``; return it with its history.

    ``batches``: optional ``step → TaskBatch`` giving the training batch of every step in place of
    ``task.sample`` (a fixed training set seen in order, e.g. :meth:`TextCanaries.train_batch`); the
    eval batches still come from ``task.sample``.

    The history is a list of dicts (step, train_loss, lr, and at eval steps eval_loss, eval_acc,
    seconds). With ``cfg.out_dir`` the run directory (final model, ``recipe.json``, ``history.json``,
    ``step_{N}/`` every ``save_every`` steps) is written there atomically. ``writer``: an open
    :class:`~workbench.run_dir.RunWriter` that receives the ``step_{N}/`` checkpoints; its caller writes
    the run when it has added what it measures (``cfg.out_dir`` is then not used).

    ``resume_dir``: where the training state is kept (default: the writer's staging directory, else the
    directory of an enclosing :func:`~workbench.training.resume.resuming` block, else nowhere). A state of
    this same run found there is resumed: the steps it holds are not run again. The state is saved at
    every eval step, every ``save_every`` step and the last step, and is left in place (its owner removes it).
    """
    if writer is None and cfg.out_dir:
        with RunWriter(cfg.out_dir) as writer:
            result = train(model_or_config, task, cfg, progress=progress, batches=batches, writer=writer)
            writer.write(result.model, run_record(result.model.cfg, task, cfg), result.history)
        return result
    if isinstance(model_or_config, ModelConfig):
        model = HookedFastWeightLM(model_or_config)
    elif isinstance(model_or_config, HookedFastWeightLM):
        model = copy.deepcopy(model_or_config)
    else:
        raise TypeError(f"train needs a HookedFastWeightLM or a ModelConfig, got {type(model_or_config).__name__}")
    if task.d_vocab > model.cfg.d_vocab:
        raise ValueError(f"the task uses {task.d_vocab} token ids but the model's d_vocab is {model.cfg.d_vocab}")
    data_gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    eval_batches = [task.sample(cfg.batch_size, eval_gen) for _ in range(cfg.eval_batches)]
    opt = make_optimizer(model, cfg)
    model.train()
    history: list[dict[str, float]] = []
    first, elapsed = 0, 0.0
    state_dir = Path(resume_dir) if resume_dir is not None else writer.path if writer is not None else resume.scoped_dir()
    state_file, state = resume.open_state(state_dir, run_record(model.cfg, task, cfg), model)
    if state is not None:
        first, history, elapsed = resume.restore(state, model, opt, data_gen)
        torch.set_rng_state(state["torch_rng"])
    if state_dir is not None and writer is not None:  # checkpoints past the resumed step are written again
        for n, d in step_checkpoints(writer.path).items():
            if n > first:
                shutil.rmtree(d)
    stop = stop_reason(history, cfg)  # a resumed run may have stopped early already
    start = time.perf_counter() - elapsed
    bar = tqdm(range(first if stop is None else cfg.steps, cfg.steps), desc="train", disable=not progress, leave=False, initial=first,
               total=cfg.steps)
    for step in bar:
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr
        batch = task.sample(cfg.batch_size, data_gen) if batches is None else batches(step)
        loss = masked_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        record = {"step": step + 1, "train_loss": float(loss.detach()), "lr": lr}
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            record.update(evaluate(model, eval_batches), seconds=time.perf_counter() - start)
            bar.set_postfix(loss=f"{record['train_loss']:.3f}", eval=f"{record['eval_loss']:.3f}")
        history.append(record)
        if "eval_acc" in record:
            stop = stop_reason(history, cfg)
        saving = cfg.save_every and (step + 1) % cfg.save_every == 0
        if writer is not None and saving:
            writer.save_step(model, step + 1)
        if state_file is not None and ("eval_loss" in record or saving):
            resume.save_state(state_file, model, opt, step + 1, data_gen, history, time.perf_counter() - start)
        if stop is not None:
            break
    model.eval()
    return TrainResult(model=model, history=history, stop=stop or "max_steps")
