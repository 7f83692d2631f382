"""What every patching sweep shares: the two runs, the direction, the (site, layer, position, head) grid and the
DataFrame it returns.

Directions (Heimersheim & Nanda 2024, "How to use and interpret activation patching"): ``denoising`` runs the
corrupted input and patches in the clean activation (does this activation suffice to restore the answer?);
``noising`` runs the clean input and patches in the corrupted one (is it needed?). The run that is patched is the
*target*, the run the activation comes from the *source*. ``normalized`` is TransformerLens'
``PatchingResult.normalized`` for that pair, ``(patched − target) / (source − target)``: 0 = the patch changes
nothing, 1 = it moves the metric all the way to the source run's (denoising: recovers the clean metric; noising:
breaks it as the corruption does). Values are batch means of the metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import pandas as pd
import torch

from ...mixers.state import check_positions
from .metrics import Metric, as_metric, evaluate
from .sites import DEFAULT_SITES, available_sites, check_site, head_resolved, site_hook

DIRECTIONS = ("denoising", "noising")
COLUMNS = ["site", "layer", "position", "head", "patched", "effect", "normalized"]


@dataclass(frozen=True)
class Cell:
    """One swept site of one layer: ``hook`` its full name, patched at each of ``positions`` (and heads)."""

    site: str
    layer: int
    hook: str


@dataclass
class Sweep:
    target: torch.Tensor  # [batch, pos] the run that is patched
    source: torch.Tensor  # [batch, pos] the run the activations come from
    metric: Metric
    direction: str
    cells: list[Cell]
    positions: list[int]
    per_head: bool
    target_value: float = 0.0  # batch means of the metric on the unpatched runs
    source_value: float = 0.0
    target_values: Optional[torch.Tensor] = None  # [batch]
    rows: list[dict] = field(default_factory=list)

    def measure(self, model) -> None:
        """The metric on the two unpatched runs."""
        self.target_values = evaluate(self.metric, model(self.target))
        self.target_value = float(self.target_values.mean())
        self.source_value = float(evaluate(self.metric, model(self.source)).mean())

    def heads(self, site: str, n_heads: int) -> list[Optional[int]]:
        return list(range(n_heads)) if self.per_head and head_resolved(site) else [None]

    def add(self, site: str, layer: int, position: int, head: Optional[int], patched: float) -> None:
        self.rows.append(dict(site=site, layer=layer, position=position, head=head, patched=patched))

    def frame(self, effect: Optional[str] = None) -> pd.DataFrame:
        """The rows as a DataFrame. ``effect`` None: rows hold the patched metric (effect = patched − target);
        ``"estimate"``: rows hold an estimated effect (attribution patching) in ``patched``."""
        df = pd.DataFrame(self.rows, columns=["site", "layer", "position", "head", "patched"])
        if effect == "estimate":
            df["effect"] = df.pop("patched")
            df["patched"] = self.target_value + df["effect"]
        else:
            df["effect"] = df["patched"] - self.target_value
        scale = self.source_value - self.target_value
        df["normalized"] = df["effect"] / scale if scale != 0 else float("nan")
        df["head"] = df["head"].astype("Int64")
        df = df[COLUMNS].sort_values(["site", "layer", "position", "head"], kind="stable", ignore_index=True)
        df.attrs.update(direction=self.direction, target_metric=self.target_value, source_metric=self.source_value,
                        clean_metric=self.source_value if self.direction == "denoising" else self.target_value,
                        corrupted_metric=self.target_value if self.direction == "denoising" else self.source_value)
        return df


def prepare(model, clean, corrupted, metric, sites: Optional[Sequence[str]], layers: Optional[Sequence[int]],
            positions, per_head: bool, direction: str) -> Sweep:
    """Validate the arguments and lay out the grid (no model run yet)."""
    if model.training:
        raise ValueError("the model is in training mode; call model.eval() before patching (TransformerLens' patching "
                         "refuses a model in training mode, and so does this)")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
    clean, corrupted = model.check_tokens(clean), model.check_tokens(corrupted)
    if clean.shape != corrupted.shape:
        raise ValueError(f"clean and corrupted inputs must have the same shape (position by position), got "
                         f"{tuple(clean.shape)} and {tuple(corrupted.shape)}")
    n_layers, n_pos = model.cfg.n_layers, clean.shape[1]
    if layers is None:
        layers = list(range(n_layers))
    layers = [_check_layer(i, n_layers) for i in layers]
    positions = list(range(n_pos)) if positions is None else list(dict.fromkeys(check_positions(positions, n_pos)))
    if sites is None:
        sites = available_sites(model, DEFAULT_SITES)
    else:
        sites = [check_site(s) for s in ([sites] if isinstance(sites, str) else sites)]
    cells = [Cell(s, i, h) for s in sites for i in layers if (h := site_hook(model, s, i)) is not None]
    for s in sites:
        if not any(c.site == s for c in cells):
            raise ValueError(f"site {s!r} exists at none of layers {layers} of this model; the sites it has there "
                             f"are {[x for x in available_sites(model) if any(site_hook(model, x, i) for i in layers)]}")
    target, source = (corrupted, clean) if direction == "denoising" else (clean, corrupted)
    return Sweep(target, source, as_metric(metric), direction, cells, positions, bool(per_head))


def _check_layer(layer, n_layers: int) -> int:
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n_layers <= layer < n_layers:
        raise ValueError(f"layers must be ints in [0, {n_layers - 1}] (or negative from the end), got {layer!r}")
    return layer % n_layers


def source_states(model, tokens: torch.Tensor, layer: int, positions: list[int]) -> dict[int, torch.Tensor]:
    """W_t of ``layer`` after the write at each of ``positions``, ``{t: [batch, head, ...]}``: what ``hook_state``
    holds (only the swept positions are kept, never the whole trajectory)."""
    name = f"blocks.{layer}.attn.hook_state"
    with model.expose_states(list(positions), mode="readout", layers=[layer]):
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == name)
    return {p: cache[name][:, i] for i, p in enumerate(positions)}
