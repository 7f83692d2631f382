"""Training a tuned lens: minimise Σ_ℓ KL(final ‖ lens_ℓ) over a token stream, the model frozen.

The recipe of the authors' code (AlignmentResearch/tuned-lens, read, not copied):
``tuned_lens/scripts/train_loop.py`` — loss KL from the final layer's log-probabilities at the same position
(shift 0), one term per translator summed, gradient norm clipped to 1 over the whole lens, 250 steps;
``tuned_lens/scripts/ingredients.py`` (``Optimizer``) — SGD with Nesterov momentum 0.9 at lr ``1.0 · (1 − 0.9)``
(PyTorch's SGD does not damp the momentum, so this is an effective step of 1.0), weight decay 1e-3, the lr
decayed linearly to 0 with no warm-up; or Adam at 1e-3 with a linear warm-up over min(1000, steps / 5);
``--bias_only`` trains only the translators' biases (A stays 0). What does not fit a 2-core CPU is the batch:
their 2¹⁸ tokens per step become whatever ``batches`` hold (one batch per step, cycling through them).

The model is never changed: gradients are taken with respect to the translators only (``torch.autograd.grad``),
so no ``.grad`` lands on the model's final norm or unembedding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Literal, Optional, Union

import pandas as pd
import torch
from tqdm.auto import trange

from ...dataclass_io import JsonConfig, check_int_fields
from .logit_lens import decode
from .metrics import kl_to_final, token_batches
from .residuals import residual_stream
from .tuned_lens import TunedLens

Optimizer = Literal["sgd", "adam"]


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and abs(v) != float("inf")


@dataclass(frozen=True)
class LensTrainConfig(JsonConfig):
    """How a tuned lens is trained (defaults: the authors' recipe, module docstring).

    ``lr``: the authors' ``lr_scale`` (SGD steps at ``lr · (1 − momentum)`` with Nesterov momentum; Adam at
    ``lr · 1e-3``); ``warmup_steps`` None: 0 for SGD, min(1000, steps // 5) for Adam; ``bias_only``: train b only;
    ``bias``: translators with a bias (a new lens); ``seed``: the order in which the batches are visited."""

    steps: int = 250
    lr: float = 1.0
    optimizer: Optimizer = "sgd"
    momentum: float = 0.9
    weight_decay: float = 1e-3
    clip_grad_norm: float = 1.0
    warmup_steps: Optional[int] = None
    bias_only: bool = False
    bias: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        check_int_fields(self, ("steps",))
        check_int_fields(self, ("seed",), minimum=0)
        if self.warmup_steps is not None:
            check_int_fields(self, ("warmup_steps",), minimum=0)
            if self.warmup_steps >= self.steps:
                raise ValueError(f"LensTrainConfig.warmup_steps ({self.warmup_steps}) must be < steps ({self.steps})")
        if self.optimizer not in ("sgd", "adam"):
            raise ValueError(f"LensTrainConfig.optimizer must be 'sgd' or 'adam', got {self.optimizer!r}")
        bounds = {"lr": (0.0, None, "> 0"), "momentum": (0.0, 1.0, "in (0, 1)"), "clip_grad_norm": (0.0, None, "> 0")}
        for name, (lo, hi, say) in bounds.items():
            v = getattr(self, name)
            if not _number(v) or not v > lo or (hi is not None and not v < hi):
                raise ValueError(f"LensTrainConfig.{name} must be a number {say}, got {v!r}")
        if not _number(self.weight_decay) or not self.weight_decay >= 0:
            raise ValueError(f"LensTrainConfig.weight_decay must be a number ≥ 0, got {self.weight_decay!r}")
        for name in ("bias_only", "bias"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LensTrainConfig.{name} must be a bool, got {getattr(self, name)!r}")
        if self.bias_only and not self.bias:
            raise ValueError("LensTrainConfig: bias_only needs translators with a bias (bias=True)")

    def warmup(self) -> int:
        if self.warmup_steps is not None:
            return self.warmup_steps
        return min(1000, self.steps // 5) if self.optimizer == "adam" else 0

    def lr_factor(self, step: int) -> float:
        """The schedule at ``step`` (0-based): linear warm-up, then linear decay to 0 at ``steps`` (the authors'
        ``get_linear_schedule_with_warmup(opt, warmup, steps − warmup)``)."""
        w = self.warmup()
        if step < w:
            return step / w
        return max(0.0, (self.steps - step) / (self.steps - w))


def _optimizer(params: list[torch.Tensor], cfg: LensTrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr * (1 - cfg.momentum), momentum=cfg.momentum, nesterov=True,
                               weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr * 1e-3, betas=(cfg.momentum, 0.999), weight_decay=cfg.weight_decay)


def train_tuned_lens(model, batches: Union[torch.Tensor, Iterable[torch.Tensor]],
                     config: LensTrainConfig = LensTrainConfig(), lens: Optional[TunedLens] = None,
                     progress: bool = True) -> tuple[TunedLens, pd.DataFrame]:
    """Train ``lens`` (default: a new identity lens for ``model``) for ``config.steps`` steps, one batch of
    ``batches`` (token tensors ``[batch, pos]``) per step in a seeded order, cycling. Returns the lens (the one
    passed in, trained in place, or the new one) and the history: one row per step with ``step``, ``lr``,
    ``loss`` (Σ over translators of the mean KL, nats) and ``kl_{ℓ}`` per translator."""
    if not isinstance(config, LensTrainConfig):
        raise ValueError(f"config must be a LensTrainConfig, got {type(config).__name__}")
    batches = token_batches(batches)
    if lens is None:
        lens = TunedLens.for_model(model, bias=config.bias)
    elif not isinstance(lens, TunedLens):
        raise ValueError(f"lens must be a TunedLens or None, got {type(lens).__name__}")
    lens.check_model(model)
    if config.bias_only and not lens.cfg.bias:
        raise ValueError("bias_only training needs a lens whose translators have a bias")
    groups = [[t.bias] if config.bias_only else list(t.parameters()) for t in lens.translators]
    params = [p for g in groups for p in g]
    if not params:
        raise ValueError("the model has no layer before the last: a tuned lens has nothing to train")
    opt = _optimizer(params, config)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, config.lr_factor)
    order = torch.randperm(len(batches), generator=torch.Generator().manual_seed(config.seed)).tolist()
    lens.train()
    history = []
    for step in trange(config.steps, desc="tuned lens", disable=not progress):
        tokens = model.check_tokens(batches[order[step % len(order)]])
        resid = residual_stream(model, tokens)  # no grad: the model is frozen
        with torch.no_grad():
            final = decode(model, resid[-1])
        row = {"step": step + 1, "lr": opt.param_groups[0]["lr"]}
        with torch.enable_grad():
            for layer, group in enumerate(groups):  # translator ℓ's loss depends on translator ℓ only
                kl = kl_to_final(final, lens.decode(model, resid[layer], layer)).mean()
                for p, g in zip(group, torch.autograd.grad(kl, group)):
                    p.grad = g
                row[f"kl_{layer}"] = float(kl.detach())
        torch.nn.utils.clip_grad_norm_(params, config.clip_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        row["loss"] = sum(row[f"kl_{i}"] for i in range(len(groups)))
        history.append(row)
    lens.eval()
    columns = ["step", "lr", "loss"] + [f"kl_{i}" for i in range(len(groups))]
    return lens, pd.DataFrame(history, columns=columns)
