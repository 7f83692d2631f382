"""A sweep of steering strength against a metric and against perplexity on held-out text.

``steerers`` names each kind of steering by a function strength → context manager, e.g.

    steerers = {"residual": lambda s: residual_steering(model, 2, v, s),
                "state": lambda s: state_steering(model, 2, [-1], direction=D, strength=s)}

so residual and state steering are measured on the same prompts, strengths and held-out tokens.
"""

from __future__ import annotations

import math
from typing import Callable, ContextManager, Mapping, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from ...model import lm_loss
from ..knockout.metrics import Metric, check_metric, default_metric

COLUMNS = ["steering", "strength", "metric", "metric_sem", "clean_metric", "effect", "heldout_loss", "perplexity",
           "clean_perplexity"]


def _heldout_loss(model, heldout: Optional[torch.Tensor], mask: Optional[torch.Tensor]) -> float:
    return float("nan") if heldout is None else float(lm_loss(model(heldout), heldout, mask=mask))


@torch.no_grad()
def steering_sweep(model, tokens, steerers: Mapping[str, Callable[[float], ContextManager]],
                   strengths: Sequence[float], metric: Optional[Metric] = None,
                   heldout: Optional[torch.Tensor] = None, heldout_mask: Optional[torch.Tensor] = None,
                   progress: bool = False) -> pd.DataFrame:
    """One row per (steering, strength): ``metric`` on ``tokens`` under that steering (batch mean and its
    standard error, NaN for one sequence), the clean value and the effect (steered − clean), and the mean
    next-token loss and perplexity on ``heldout`` tokens ``[batch, pos]`` under the same steering (NaN without
    them; ``heldout_mask`` ``[batch, pos-1]``: only the predictions it marks, e.g. a task's ``loss_mask``). ``metric`` maps logits to ``[batch]``; default: log p of the clean run's last prediction.
    Columns: :data:`COLUMNS`."""
    tokens = model.check_tokens(tokens)
    if heldout is not None:
        heldout = model.check_tokens(heldout)
    if not steerers:
        raise ValueError("steerers is empty: name at least one steering (name → strength → context manager)")
    strengths = [float(s) for s in strengths]
    if not strengths or not all(math.isfinite(s) for s in strengths):
        raise ValueError(f"strengths must be a non-empty list of finite numbers, got {strengths!r}")
    metric = default_metric(model, tokens, metric)
    batch = tokens.shape[0]
    clean = check_metric(metric(model(tokens)), batch)
    if heldout_mask is not None and heldout is None:
        raise ValueError("heldout_mask goes with heldout tokens")
    clean_ppl = math.exp(_heldout_loss(model, heldout, heldout_mask))
    rows = []
    jobs = [(name, s) for name in steerers for s in strengths]
    for name, s in tqdm(jobs, desc="steering sweep", disable=not progress):
        with steerers[name](s):
            values = check_metric(metric(model(tokens)), batch)
            loss = _heldout_loss(model, heldout, heldout_mask)
        diff = values - clean
        rows.append(dict(steering=name, strength=s, metric=float(values.mean()),
                         metric_sem=float(values.std() / batch ** 0.5) if batch > 1 else float("nan"),
                         clean_metric=float(clean.mean()), effect=float(diff.mean()), heldout_loss=loss,
                         perplexity=math.exp(loss), clean_perplexity=clean_ppl))
    return pd.DataFrame(rows, columns=COLUMNS)
