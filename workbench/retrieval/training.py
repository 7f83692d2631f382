"""Training the retrieval model as Schlag, Irie & Schmidhuber (2021) do (their ``synthetic/main.py``).

Adam(lr), ``batch_size`` fresh sequences per step with one query each, loss 0.5‖onehot(target) − ŷ‖²
(summed over values, averaged over queries). Every ``eval_every`` steps: ``eval_sequences`` fresh sequences,
each asked every distinct stored key; stop when the eval loss is ≤ ``target_loss`` or after ``patience``
evaluations in a row without a new best, or at ``max_steps``. Steps train in the attention form (exact, fast
for one query); evaluations read the memory built by the recurrence kernel (``form="memory"``).
``train_retriever`` trains a deep copy and never changes the model it is given; it is seeded and uses
no global RNG, so a run is repeatable bit for bit on one machine. With a ``resume_dir`` (or inside a
:func:`workbench.training.resuming` block) it saves its state at every evaluation and a run killed at any
point, started again, continues from its last evaluation to the same result.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .model import HookedRetriever, RetrieverConfig
from ..tasks.retrieval import Retrieval, RetrievalBatch
from ..dataclass_io import JsonConfig, check_int_fields
from ..training import resume


@dataclass(frozen=True)
class RetrieverTrainConfig(JsonConfig):
    lr: float = 1e-3
    batch_size: int = 32
    eval_every: int = 100
    eval_sequences: int = 20
    target_loss: float = 1e-3
    patience: int = 10
    max_steps: int = 100_000
    seed: int = 0

    def __post_init__(self) -> None:
        check_int_fields(self, ("batch_size", "eval_every", "eval_sequences", "patience", "max_steps"))
        check_int_fields(self, ("seed",), minimum=0)
        if not self.lr > 0 or not self.target_loss >= 0:
            raise ValueError(f"RetrieverTrainConfig needs lr > 0 and target_loss ≥ 0, got {self.lr}, {self.target_loss}")


@dataclass
class RetrieverTrainResult:
    """The trained copy; ``history``: one dict per evaluation (step, train_loss — the mean since the last
    evaluation —, eval_loss, eval_acc, seconds); ``stop``: "target", "patience" or "max_steps"."""

    model: HookedRetriever
    history: list[dict[str, float]]
    stop: str
    steps: int
    seconds: float

    @property
    def final(self) -> dict[str, float]:
        """The last evaluation (what the paper's figures plot)."""
        return self.history[-1]


def retrieval_loss(y_hat: torch.Tensor, targets: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean over (unmasked) queries of 0.5‖onehot(target) − ŷ‖²; ``y_hat [batch, query, d_v]``, targets
    ``[batch, query]`` value indices, mask ``[batch, query]`` bool or None."""
    err = 0.5 * (F.one_hot(targets, y_hat.shape[-1]).to(y_hat.dtype) - y_hat).pow(2).sum(-1)  # [batch, query]
    if mask is None:
        return err.mean()
    return (err * mask).sum() / mask.sum().clamp_min(1)


@torch.no_grad()
def evaluate_retriever(model: HookedRetriever, batch: RetrievalBatch, form: Optional[str] = None) -> dict[str, float]:
    """Loss and top-1 accuracy over the real queries of ``batch`` (sample it with ``all_queries=True``)."""
    y = model(batch.keys, batch.values, batch.queries, form=form)
    mask = batch.query_mask
    correct = (y.argmax(-1) == batch.targets) & mask
    return {"eval_loss": float(retrieval_loss(y, batch.targets, mask)),
            "eval_acc": float(correct.sum()) / max(int(mask.sum()), 1)}


def train_retriever(
    model_or_config: Union[HookedRetriever, RetrieverConfig],
    task: Retrieval,
    cfg: RetrieverTrainConfig = RetrieverTrainConfig(),
    *,
    progress: bool = True,
    resume_dir: Optional[Union[str, Path]] = None,
) -> RetrieverTrainResult:
    """Train a copy of the model (or a fresh one from a config) on ``task`` by the protocol above.
    ``resume_dir`` (default: the directory of an enclosing :func:`~workbench.training.resume.resuming`
    block, else nowhere): where the state is kept at every evaluation, and resumed from if this same run
    (config, initial weights, task, protocol) left one there."""
    if isinstance(model_or_config, RetrieverConfig):
        model = HookedRetriever(model_or_config)
    elif isinstance(model_or_config, HookedRetriever):
        model = copy.deepcopy(model_or_config)
    else:
        raise TypeError(f"train_retriever needs a HookedRetriever or RetrieverConfig, got {type(model_or_config).__name__}")
    if not isinstance(task, Retrieval):
        raise TypeError(f"train_retriever needs a Retrieval task, got {type(task).__name__}")
    if task.num_keys != model.cfg.num_keys:
        raise ValueError(f"the task has {task.num_keys} keys but the model {model.cfg.num_keys}; "
                         f"build the model with RetrieverConfig.paper({task.num_keys}, ...)")
    data_gen = torch.Generator().manual_seed(cfg.seed)
    eval_gen = torch.Generator().manual_seed(cfg.seed + 1_000_003)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    train_form = model.train_form  # the dual (attention) form, or the memory form where it is no faster (fwm)
    history: list[dict[str, float]] = []
    best, strikes, stop, running, n_running = float("inf"), 0, "max_steps", 0.0, 0
    first, elapsed = 0, 0.0
    state_dir = Path(resume_dir) if resume_dir is not None else resume.scoped_dir()
    record = {"retriever": model.cfg.to_dict(), "task": task.to_dict(), "train": cfg.to_dict()}
    state_file, state = resume.open_state(state_dir, record, model)
    if state is not None:
        first, history, elapsed = resume.restore(state, model, opt, data_gen)
        eval_gen.set_state(state["extra"]["eval_rng"])
        model.set_rng_state(state["extra"].get("model_rng"))
        for h in history:  # the patience count as it stood after each evaluation
            best, strikes = (h["eval_loss"], 0) if h["eval_loss"] < best else (best, strikes + 1)
    start = time.perf_counter() - elapsed
    bar = tqdm(range(first + 1, cfg.max_steps + 1), desc=f"S={task.num_keys} {model.cfg.label} {model.cfg.update}",
               disable=not progress, leave=False, initial=first, total=cfg.max_steps)
    step = first
    model.train()
    for step in bar:
        b = task.sample(cfg.batch_size, data_gen)
        loss = retrieval_loss(model(b.keys, b.values, b.queries, form=train_form), b.targets, b.query_mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        running, n_running = running + float(loss.detach()), n_running + 1
        if step % cfg.eval_every:
            continue
        model.eval()
        record = {"step": step, "train_loss": running / n_running,
                  **evaluate_retriever(model, task.sample(cfg.eval_sequences, eval_gen, all_queries=True)),
                  "seconds": time.perf_counter() - start}
        model.train()
        history.append(record)
        running, n_running = 0.0, 0
        bar.set_postfix(eval=f"{record['eval_loss']:.4f}", acc=f"{record['eval_acc']:.3f}")
        if record["eval_loss"] < best:
            best, strikes = record["eval_loss"], 0
        else:
            strikes += 1
        if record["eval_loss"] <= cfg.target_loss:
            stop = "target"
            break
        if strikes >= cfg.patience:
            stop = "patience"
            break
        if state_file is not None:
            resume.save_state(state_file, model, opt, step, data_gen, history, time.perf_counter() - start,
                              extra={"eval_rng": eval_gen.get_state(), "model_rng": model.rng_state()})
    bar.close()
    model.eval()
    if not history or history[-1]["step"] != step:  # max_steps not a multiple of eval_every: evaluate the end
        history.append({"step": step, "train_loss": running / max(n_running, 1),
                        **evaluate_retriever(model, task.sample(cfg.eval_sequences, eval_gen, all_queries=True)),
                        "seconds": time.perf_counter() - start})
    return RetrieverTrainResult(model=model, history=history, stop=stop, steps=step,
                                seconds=time.perf_counter() - start)
