"""Activation patching sweeps over (layer × position × site [× head]).

TransformerLens' sites go through ``transformer_lens.patching.generic_activation_patch`` with its own patch setters
(``layer_pos_patch_setter``, ``layer_pos_head_vector_patch_setter``); the fast-weight sites it does not know (the
state W_t in ``readout`` and ``carry`` mode, the write, β, the decay; see :mod:`.sites`) are patched here with the
same setters, one ``run_with_hooks`` per cell, the state through ``expose_states``. See :mod:`.grid` for the
directions and the normalisation.
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens.patching import (generic_activation_patch, layer_pos_head_vector_patch_setter,
                                       layer_pos_patch_setter)

from .grid import Sweep, prepare, source_states
from .metrics import evaluate
from .sites import STATE_SITES, TL_SITES, head_resolved


def activation_patching(model, clean, corrupted, metric, *, sites: Optional[Sequence[str]] = None,
                        layers: Optional[Sequence[int]] = None, positions=None, per_head: bool = False,
                        direction: str = "denoising", progress: bool = True) -> pd.DataFrame:
    """Patch each (site, layer, position) of one run with the other run's activation and measure ``metric``.

    clean, corrupted: token ids ``[batch, pos]`` of the same shape. metric: a callable logits ``[batch, pos, vocab]``
    -> ``[batch]``, or a pair ``(answer, distractor)`` of token ids (:func:`.metrics.logit_diff` at the last
    position). sites: default every site of :data:`.sites.DEFAULT_SITES` the model has. per_head: one row per head
    on head-resolved sites. direction: ``"denoising"`` (clean into corrupted) or ``"noising"`` (corrupted into
    clean). progress: a bar over the fast-weight sites' runs (TransformerLens draws its own for each of its sites). Returns a DataFrame with columns site, layer, position, head (<NA> for a whole site), patched (the
    metric), effect (patched − unpatched target) and normalized (:mod:`.grid`); ``df.attrs`` holds the clean and
    corrupted metrics. The model is never changed.
    """
    sweep = prepare(model, clean, corrupted, metric, sites, layers, positions, per_head, direction)
    with torch.no_grad():
        sweep.measure(model)
        _tl_sites(model, sweep)
        _own_sites(model, sweep, progress)
    return sweep.frame()


def _index_frame(sweep: Sweep, site: str, layers_heads: dict[int, int]) -> pd.DataFrame:
    rows = [(layer, p, h) for layer, n_heads in layers_heads.items() for p in sweep.positions
            for h in sweep.heads(site, n_heads)]
    if any(h is not None for _, _, h in rows):
        return pd.DataFrame(rows, columns=["layer", "pos", "head_index"])
    return pd.DataFrame([r[:2] for r in rows], columns=["layer", "pos"])


def _tl_sites(model, sweep: Sweep) -> None:
    """TransformerLens' sites: one ``generic_activation_patch`` call per site over its (layer, pos[, head]) rows."""
    for site in TL_SITES:
        cells = [c for c in sweep.cells if c.site == site]
        if not cells:
            continue
        names = {c.hook for c in cells}
        _, cache = model.run_with_cache(sweep.source, names_filter=lambda n: n in names)
        index = _index_frame(sweep, site, {c.layer: cache[c.hook].shape[2] if cache[c.hook].ndim > 3 else 1
                                           for c in cells})
        setter = layer_pos_head_vector_patch_setter if "head_index" in index else layer_pos_patch_setter
        # TransformerLens stores float32: hand it the change from the unpatched run, so that small effects keep
        # float32's relative precision instead of the metric's
        values = generic_activation_patch(model, sweep.target, cache, lambda logits: evaluate(sweep.metric, logits)
                                          - sweep.target_values, setter, site, index_df=index, reduce="mean")
        for row, value in zip(index.itertuples(index=False), values.tolist()):
            head = int(row.head_index) if "head_index" in index else None
            sweep.add(site, int(row.layer), int(row.pos), head, sweep.target_value + float(value))


def _own_sites(model, sweep: Sweep, progress: bool) -> None:
    """The fast-weight sites: the state through ``expose_states``, the mixer's write/β/decay hooks directly."""
    cells = [c for c in sweep.cells if c.site not in TL_SITES]
    if not cells:
        return
    mixer_names = {c.hook for c in cells if c.site not in STATE_SITES}
    _, cache = model.run_with_cache(sweep.source, names_filter=lambda n: n in mixer_names)
    states = {c.layer: source_states(model, sweep.source, c.layer, sweep.positions)
              for c in cells if c.site in STATE_SITES}
    work = []
    for c in cells:
        for p in sweep.positions:
            src = states[c.layer][p] if c.site in STATE_SITES else cache[c.hook]  # [batch, head, ...] / [batch, pos, ...]
            work += [(c, p, h, src) for h in sweep.heads(c.site, src.shape[1 if c.site in STATE_SITES else 2])]
    for c, p, h, src in tqdm(work, desc="patching fast-weight sites", disable=not progress):
        if c.site in STATE_SITES:
            logits = patch_state(model, sweep.target, c.layer, p, h, src, STATE_SITES[c.site])
        else:
            logits = patch_hook(model, sweep.target, c.hook, p, h, src)
        sweep.add(c.site, c.layer, p, h, float(evaluate(sweep.metric, logits).mean()))


def patch_hook(model, tokens, hook: str, position: int, head: Optional[int], source: torch.Tensor) -> torch.Tensor:
    """Logits of ``tokens`` with ``hook`` at ``position`` (and ``head``) replaced from ``source`` (the hook's tensor
    on the other run), with TransformerLens' patch setters."""
    def fn(act, hook):
        act = act.clone()
        if head is None:
            return layer_pos_patch_setter(act, [None, position], source)
        return layer_pos_head_vector_patch_setter(act, [None, position, head], source)

    return model.run_with_hooks(tokens, fwd_hooks=[(hook, fn)])


def patch_state(model, tokens, layer: int, position: int, head: Optional[int], state: torch.Tensor,
                mode: str) -> torch.Tensor:
    """Logits of ``tokens`` with W_t of ``layer`` at ``position`` (one ``head``, or all) replaced by ``state``
    ``[batch, head, ...]`` (e.g. the other run's, :func:`.grid.source_states`), applied in ``mode`` (``readout``:
    only the read-out at t; ``carry``: the rest of the sequence continues from it)."""
    def fn(states, hook):  # [batch, 1, head, ...]
        new = states.clone()
        if head is None:
            new[:, 0] = state.to(new)
        else:
            new[:, 0, head] = state[:, head].to(new)
        return new

    with model.expose_states([position], mode=mode, layers=[layer]):
        return model.run_with_hooks(tokens, fwd_hooks=[(f"blocks.{layer}.attn.hook_state", fn)])


def head_breakdown(model, clean, corrupted, metric, site: str, layer: int, position: int,
                   direction: str = "denoising") -> pd.DataFrame:
    """The per-head effects of one cell of a sweep (a head-resolved ``site`` at ``layer``, ``position``): the rows of
    :func:`activation_patching` with ``per_head=True`` for that cell alone."""
    if not head_resolved(site):
        raise ValueError(f"site {site!r} has no head axis; the head-resolved sites are z, q, k, v and the "
                         "fast-weight sites")
    return activation_patching(model, clean, corrupted, metric, sites=[site], layers=[layer], positions=[position],
                               per_head=True, direction=direction, progress=False)
