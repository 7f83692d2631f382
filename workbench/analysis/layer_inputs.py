"""What enters a layer's recurrence, read from the model's own hooks (so active patches apply)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from ..components import DeltaNet, LinearAttention, SoftmaxAttention


@dataclass(frozen=True)
class RecurrenceInputs:
    """The exact arguments the layer passes to its kernel.

    q: [batch, pos, head, d_key]  already multiplied by the mixer's read scale
    k: [batch, pos, head, d_key];  v: [batch, pos, head, d_head]
    beta, g: [batch, pos, head] or None (delta rule only / gated only)
    rule: "sum" (linear attention) or "delta";  normalize: sum normalisation (linear attention)
    """

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    beta: Optional[torch.Tensor]
    g: Optional[torch.Tensor]
    rule: str
    normalize: bool


def check_layer(model, layer: int) -> None:
    n = model.cfg.n_layers
    if not isinstance(layer, int) or isinstance(layer, bool) or not -n <= layer < n:
        raise ValueError(f"layer must be an int in [0, {n - 1}] (or negative from the end), got {layer!r}")


def fast_weight_mixer(model, layer: int):
    """The layer's mixer, or a ValueError if it keeps no fast-weight memory."""
    check_layer(model, layer)
    attn = model.blocks[layer].attn
    if isinstance(attn, SoftmaxAttention):
        raise ValueError(
            f"layer {layer} is softmax attention: it keeps no fast-weight matrix (its memory is the "
            "key/value cache); fast weights exist for the 'linear', 'delta' and 'gated_delta' mixers"
        )
    return attn


@torch.no_grad()
def recurrence_inputs(model, tokens, layer: int) -> RecurrenceInputs:
    """Run the model up to ``layer`` and collect what its recurrence consumes (no grad)."""
    attn = fast_weight_mixer(model, layer)
    layer = layer % model.cfg.n_layers
    prefix = f"blocks.{layer}.attn."
    names = {prefix + f"hook_{n}" for n in ("q", "k", "v", "beta", "log_decay")}
    _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in names, stop_at_layer=layer + 1)
    get = lambda n: cache[prefix + n] if prefix + n in cache else None  # noqa: E731
    if isinstance(attn, LinearAttention):
        return RecurrenceInputs(get("hook_q") * attn.scale, get("hook_k"), get("hook_v"), None, None,
                                "sum", attn.cfg.sum_norm)
    assert isinstance(attn, DeltaNet)
    return RecurrenceInputs(get("hook_q") * attn.scale, get("hook_k"), get("hook_v"), get("hook_beta"),
                            get("hook_log_decay"), "delta", False)
