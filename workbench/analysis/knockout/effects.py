"""The per-(source, target) effect of path knockouts on a metric, as a DataFrame.

For each source s the knocked-out read-out is computed once (one effective-attention product or one re-run of the
layer), then every target t ≥ s is spliced in its own copy of the batch and all of them run in one forward pass
(the metric still sees one copy, ``[batch, pos, vocab]``, at a time).
Pairs with t < s are left out: a causal layer reads nothing at t that s writes later.
"""

from __future__ import annotations

from typing import Optional

import pandas as pd
import torch
from tqdm.auto import tqdm

from .metrics import Metric, check_metric, default_metric
from .paths import Heads, clean_parts, knocked_readout, pick_route, positions_or_empty, resolve_heads

COLUMNS = ["layer", "head", "source", "target", "route", "metric", "clean_metric", "effect", "effect_sem"]


@torch.no_grad()
def knockout_effects(model, tokens, layer: int, head: Heads = 0, metric: Optional[Metric] = None, sources=None,
                     targets=None, route: str = "auto", progress: bool = False) -> pd.DataFrame:
    """One row per (source, target) pair with target ≥ source: ``metric`` of the knocked-out run averaged over the
    batch, the clean run's, ``effect`` = knocked − clean (batch mean) and ``effect_sem`` its standard error over
    the batch (NaN for one sequence). ``metric`` maps logits ``[batch, pos, vocab]`` to ``[batch]``; default: the
    log-probability of the clean run's last prediction. ``head``: an int, a list or None (every head knocked out
    together); ``sources``/``targets``: positions, None for all. Columns: :data:`COLUMNS`."""
    tokens = model.check_tokens(tokens)
    layer = layer % model.cfg.n_layers
    heads = resolve_heads(model, head)
    batch, n_pos = tokens.shape
    src = positions_or_empty(sources, n_pos)
    tgt = positions_or_empty(targets, n_pos)
    route = pick_route(model, tokens, layer, route)
    metric = default_metric(model, tokens, metric)
    clean = check_metric(metric(model(tokens)), batch)
    head_label = heads[0] if len(heads) == 1 else ",".join(map(str, heads))
    hook_name = f"blocks.{layer}.attn.hook_z"
    parts = clean_parts(model, tokens, layer, route)
    rows = []
    for s in tqdm(src, desc="knockout sources", disable=not progress):
        ts = [t for t in tgt if t >= s]
        if not ts:
            continue
        z_new = knocked_readout(model, tokens, layer, heads, [s], route, parts)  # [batch, pos, head, d_v]

        def splice(z: torch.Tensor, hook, ts=ts, z_new=z_new) -> torch.Tensor:  # z: [len(ts)·batch, pos, head, d_v]
            out = z.clone().view(len(ts), batch, *z.shape[1:])
            for i, t in enumerate(ts):
                for h in heads:
                    out[i, :, t, h] = z_new[:, t, h].to(z.dtype)
            return out.view_as(z)

        logits = model.run_with_hooks(tokens.repeat(len(ts), 1), fwd_hooks=[(hook_name, splice)])
        values = torch.stack([check_metric(metric(part), batch) for part in logits.split(batch)])  # [len(ts), batch]
        for i, t in enumerate(ts):
            diff = values[i] - clean
            sem = float(diff.std(unbiased=True) / batch ** 0.5) if batch > 1 else float("nan")
            rows.append(dict(layer=layer, head=head_label, source=s, target=t, route=route,
                             metric=float(values[i].mean()), clean_metric=float(clean.mean()),
                             effect=float(diff.mean()), effect_sem=sem))
    return pd.DataFrame(rows, columns=COLUMNS)
