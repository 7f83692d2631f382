"""The rank-one state writes of one layer, read from the model's own hooks through the mixer
(:meth:`workbench.mixers.Mixer.state_write`): W_t = A_t(W_{t-1}) + k_t u_tᵀ."""

from __future__ import annotations

from typing import Optional

import torch
from jaxtyping import Float

from ...mixers import NotDefinedForMixer


def write_mixer(model, layer: int):
    """The layer's mixer if its state is a ``[d_k, d_v]`` matrix written once per position as k uᵀ; otherwise
    NotDefinedForMixer saying why (the mixer's own reason)."""
    attn = model.fast_weight_mixer(layer)
    if (why := attn.key_value_state()) is not None:
        raise NotDefinedForMixer(f"layer {layer} ({attn.label(attn.cfg)}) has no [d_k, d_v] state to write into: {why}")
    if not attn.write_hooks:
        attn.state_write(lambda name: None)  # raises the mixer's reason
        raise NotDefinedForMixer(f"layer {layer}: the mixer names no write_hooks for its state_write")
    return attn


@torch.no_grad()
def state_writes(model, tokens, layer: int) -> tuple[Float[torch.Tensor, "batch pos head d_k"],
                                                     Float[torch.Tensor, "batch pos head d_v"]]:
    """(keys, values): the write at every position and head of ``layer`` is keys[b, t, h] ⊗ values[b, t, h]."""
    attn = write_mixer(model, layer)
    get = model.layer_cache(model.check_tokens(tokens), layer, attn.write_hooks)
    return attn.state_write(get)


def check_head(model, head: int) -> int:
    n = model.cfg.n_heads
    if not isinstance(head, int) or isinstance(head, bool) or not 0 <= head < n:
        raise ValueError(f"head must be an int in [0, {n - 1}], got {head!r}")
    return head


@torch.no_grad()
def collect_writes(model, batches, layer: int, head: int, mask: Optional[torch.Tensor] = None,
                   ) -> tuple[Float[torch.Tensor, "n d_k"], Float[torch.Tensor, "n d_v"]]:
    """The writes of one head over a token stream: ``batches`` an iterable of token tensors ``[batch, pos]``
    (e.g. a list of task batches' tokens); ``mask`` (for a single batch) keeps only marked ``[batch, pos]``
    positions. Returns keys ``[n, d_k]`` and values ``[n, d_v]`` in the stream's order."""
    check_head(model, head)
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    keys, values = [], []
    for tokens in batches:
        k, u = state_writes(model, tokens, layer)
        k, u = k[:, :, head], u[:, :, head]
        if mask is not None:
            k, u = k[mask], u[mask]
        keys.append(k.reshape(-1, k.shape[-1]))
        values.append(u.reshape(-1, u.shape[-1]))
    if not keys:
        raise ValueError("batches is empty; pass at least one [batch, pos] token tensor")
    return torch.cat(keys), torch.cat(values)
