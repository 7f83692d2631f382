"""Stepping a mixer: what one layer carries from one forward call to the next, so generation continues a
sequence instead of re-running its prefix.

A mixer that can continue sets ``supports_step = True`` and writes its forward with the helpers on
:class:`~workbench.mixers.base.Mixer` (``run_recurrence``, ``causal_conv``, ``carried_output``,
``step_position``); while a :class:`StepCache` is attached (``mixer.step_cache``, set only for one call
of ``HookedFastWeightLM.forward(..., past_kv_cache=cache)``), its forward reads the new positions only
and continues from what the cache holds:

  - the recurrence's state after the last position seen (``state``) and, for a recurrence that feeds
    back its output, that output (``last_output``): fast weights cost O(1) per new token;
  - the last ``K − 1`` inputs of every short causal convolution (``buffers[conv]``);
  - whatever else the mixer keeps under its own keys (softmax attention: its keys and values; the FWM:
    its LSTM's h and c).

``n_seen`` counts the positions seen before the current call (rotary and learned positions start
there); :class:`ModelStepCache` holds one :class:`StepCache` per layer and advances every ``n_seen``
after a call. Hooks fire as in any forward, on the new positions only (``pos`` = 1 per generated token).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator, Optional, Sequence

import torch


class CannotStep(ValueError):
    """A mixer cannot continue from a cache (the message says why); generation re-runs the prefix instead."""


@dataclass
class StepCache:
    """One layer's carried state (see the module docstring). Empty until the layer's first call."""

    n_seen: int = 0
    state: Optional[torch.Tensor] = None  # the recurrence's state after position n_seen − 1
    last_output: Optional[torch.Tensor] = None  # its output there [batch, head, d_out] (feeds_back_output)
    buffers: dict[Any, Any] = field(default_factory=dict)  # conv histories, k/v caches, LSTM states, …
    batch: Optional[int] = None

    def check_batch(self, batch: int) -> None:
        if self.batch is None:
            self.batch = batch
        elif batch != self.batch:
            raise ValueError(f"this cache holds {self.batch} sequences; the new tokens have a batch of {batch} "
                             "(start a new cache for another batch)")


class ModelStepCache:
    """One :class:`StepCache` per layer plus the position count of the whole model (TransformerLens'
    ``past_kv_cache``: pass it to ``model(tokens, past_kv_cache=cache)`` repeatedly, each call with the
    tokens that follow the previous call's)."""

    def __init__(self, n_layers: int):
        self.layers = [StepCache() for _ in range(n_layers)]
        self.n_seen = 0

    def advance(self, n_new: int) -> None:
        self.n_seen += n_new
        for layer in self.layers:
            layer.n_seen = self.n_seen

    def __len__(self) -> int:
        return len(self.layers)


@contextmanager
def attached(layer_mixers: Sequence, cache: ModelStepCache) -> Iterator[None]:
    """Attach ``cache.layers[i]`` to layer i's mixer for one forward call (None: a layer without a mixer, e.g.
    an MLP-only block); always detached afterwards."""
    if len(layer_mixers) != len(cache.layers):
        raise ValueError(f"this cache has {len(cache.layers)} layers; the model has {len(layer_mixers)}")
    pairs = [(m, c) for m, c in zip(layer_mixers, cache.layers) if m is not None]
    mixers = [m for m, _ in pairs]
    for m in mixers:
        if m.state_request is not None:
            raise ValueError("a step cache cannot be used inside expose_states (its positions index the whole "
                             "sequence); read or patch states on the full sequence instead")
        if m.step_cache is not None:
            raise RuntimeError("a step cache is already attached to this model (nested cached calls)")
    try:
        for m, c in pairs:
            m.step_cache = c
        yield
    finally:
        for m in mixers:
            m.step_cache = None
