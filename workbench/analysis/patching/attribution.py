"""Attribution patching: the first-order estimate of every activation patch from two forward passes and one
backward pass per group of sites (Nanda 2023, "Attribution patching"; Syed et al. 2023).

The effect of patching activation a of the target run with the source run's is estimated as
``(a_source − a_target) · ∂metric/∂a`` at the target run, summed over the cell's features (and the batch: the
metric is the batch mean). It equals the real patch exactly when the metric is linear in a, e.g. a logit
difference of a model with no nonlinearity after the site. The gradient is taken through the same path as the
real patch takes: a write, β or decay through the mixer's patched-writes path (the model sees an edited hook), the
state through ``expose_states`` in ``readout`` mode (all positions in one pass) or ``carry`` mode (one pass per
position, as the real patch). Gradients are taken with ``torch.autograd.grad``: parameters' ``.grad`` stay
untouched.

TransformerLens 4 has an attribution-patching tool (``transformer_lens/tools/analysis/attribution_patching.py``,
read for its conventions: denoising = gradient on the corrupted run, estimate ``(a_clean − a_corrupt) · g``), but it
targets ``TransformerBridge`` only; this is written here for ``HookedRootModule`` models and the fast-weight sites.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .grid import Sweep, prepare, source_states
from .metrics import evaluate
from .sites import STATE_SITES, TL_SITES


def attribution_patching(model, clean, corrupted, metric, *, sites: Optional[Sequence[str]] = None,
                         layers: Optional[Sequence[int]] = None, positions=None, per_head: bool = False,
                         direction: str = "denoising", progress: bool = True) -> pd.DataFrame:
    """The attribution-patching estimate of :func:`.activation.activation_patching` on the same grid, arguments and
    columns (``effect`` is the estimate, ``patched`` = target metric + estimate)."""
    sweep = prepare(model, clean, corrupted, metric, sites, layers, positions, per_head, direction)
    with torch.no_grad():
        sweep.measure(model)
    hook_cells = [c for c in sweep.cells if c.site not in STATE_SITES]
    groups = [[c for c in hook_cells if c.site in TL_SITES]] + [[c] for c in hook_cells if c.site not in TL_SITES]
    passes = [("hooks", g) for g in groups if g]
    for c in sweep.cells:
        if c.site in STATE_SITES:
            passes += [("state", c)] if STATE_SITES[c.site] == "readout" else [("carry", (c, p)) for p in sweep.positions]
    names = {c.hook for c in hook_cells}
    with torch.no_grad():
        _, cache = model.run_with_cache(sweep.source, names_filter=lambda n: n in names)
        states = {c.layer: source_states(model, sweep.source, c.layer, sweep.positions)
                  for c in sweep.cells if c.site in STATE_SITES}
    for kind, what in tqdm(passes, desc="attribution patching", disable=not progress):
        if kind == "hooks":
            grads = hook_gradients(model, sweep.target, sweep.metric, [c.hook for c in what])
            for c in what:
                act, grad = grads[c.hook]
                _add(sweep, c, cache[c.hook] - act, grad, [(p, p) for p in sweep.positions])
        elif kind == "state":
            act, grad = state_gradient(model, sweep.target, sweep.metric, what.layer, sweep.positions, "readout")
            src = torch.stack([states[what.layer][p] for p in sweep.positions], dim=1)
            _add(sweep, what, src - act, grad, [(p, i) for i, p in enumerate(sweep.positions)])
        else:
            c, p = what
            act, grad = state_gradient(model, sweep.target, sweep.metric, c.layer, [p], "carry")
            _add(sweep, c, states[c.layer][p][:, None] - act, grad, [(p, 0)])
    return sweep.frame(effect="estimate")


def _add(sweep: Sweep, cell, diff: torch.Tensor, grad: torch.Tensor, where) -> None:
    """Rows of one cell: Σ over batch and features of diff · grad at each (position, its index along pos)."""
    prod = (diff.double() * grad.double())  # [batch, pos, ...]
    for p, i in where:
        at = prod[:, i]
        for h in sweep.heads(cell.site, at.shape[1] if at.ndim > 1 else 1):
            sweep.add(cell.site, cell.layer, p, h, float(at.sum() if h is None else at[:, h].sum()))


def hook_gradients(model, tokens, metric, hooks: Sequence[str]) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{hook: (activation, ∂ mean metric / ∂ activation)}`` on ``tokens``. Each hook's output is replaced by
    ``activation + 0`` (a new tensor, so a mixer takes its patched path, e.g. re-reading from given writes)."""
    zeros: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}

    def fn(act, hook):
        zero = torch.zeros_like(act, requires_grad=True)
        zeros[hook.name] = (act.detach(), zero)
        return act + zero

    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(h, fn) for h in hooks])
        grads = _grad(evaluate(metric, logits).mean(), [zeros[h][1] for h in hooks])
    return {h: (zeros[h][0], g) for h, g in zip(hooks, grads)}


def state_gradient(model, tokens, metric, layer: int, positions: list[int], mode: str
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """(W_t at ``positions`` ``[batch, n_positions, head, ...]``, ∂ mean metric / ∂ W_t) with the states exposed in
    ``mode`` (readout: each W_t feeds only its read-out; carry: one position, the rest continues from it)."""
    held = {}

    def fn(states, hook):
        zero = torch.zeros_like(states, requires_grad=True)
        held["pair"] = (states.detach(), zero)
        return states + zero

    with torch.enable_grad(), model.expose_states(positions, mode=mode, layers=[layer]):
        logits = model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_state", fn)])
        (grad,) = _grad(evaluate(metric, logits).mean(), [held["pair"][1]])
    return held["pair"][0], grad


def _grad(out: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = torch.autograd.grad(out, inputs, allow_unused=True)
    return [torch.zeros_like(x) if g is None else g for x, g in zip(inputs, grads)]


def attribution_agreement(real: pd.DataFrame, estimate: pd.DataFrame, value: str = "effect") -> pd.DataFrame:
    """How well attribution patching (``estimate``) matches real patching (``real``), both DataFrames of the same
    grid: one row per site and one for ``"all"``, with n (cells), pearson (correlation of ``value``), slope
    (least-squares fit of estimate on real, through 0), max_abs_error and the real effect's largest magnitude."""
    keys = ["site", "layer", "position", "head"]
    merged = real[keys + [value]].merge(estimate[keys + [value]], on=keys, suffixes=("_real", "_estimate"))
    if len(merged) != len(real) or len(merged) != len(estimate):
        raise ValueError(f"the two sweeps are not of the same grid ({len(real)} and {len(estimate)} rows, "
                         f"{len(merged)} in common); run both with the same sites, layers, positions and per_head")
    rows = []
    for site, part in [*merged.groupby("site", sort=False), ("all", merged)]:
        x, y = part[f"{value}_real"].to_numpy(float), part[f"{value}_estimate"].to_numpy(float)
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        pearson = float(np.corrcoef(x, y)[0, 1]) if len(x) > 1 and x.std() > 0 and y.std() > 0 else float("nan")
        slope = float((x * y).sum() / (x * x).sum()) if (x * x).sum() > 0 else float("nan")
        rows.append(dict(site=site, n=len(x), pearson=pearson, slope=slope,
                         max_abs_error=float(np.abs(x - y).max()) if len(x) else float("nan"),
                         max_abs_real=float(np.abs(x).max()) if len(x) else float("nan")))
    return pd.DataFrame(rows)
