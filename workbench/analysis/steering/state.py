"""Steering the fast-weight state (Paulo et al. 2024's state steering, on the workbench's state hook).

    W_t ← W_t + strength · D              D ``[head, d_k, d_v]`` (or ``[d_k, d_v]`` for one head), any memory
    W_t ← W_t + strength · k vᵀ           a rank-one write (a ``[d_k, d_v]`` key→value memory)
    W_t ← rank_one_edit(W_t, k, v, strength)   with ``overwrite``: the memory returns v for k (editing.py)

at chosen positions, in ``readout`` mode (only the outputs that read W_t change) or ``carry`` mode (one
position; the edited state is carried through the rest of the sequence), through ``model.expose_states``.
``contrastive_state_direction`` is the state's CAA: mean W_t over positive prompts minus over negative ones.
A context manager: the model is never changed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Optional

import torch
from jaxtyping import Float

from ...mixers import NotDefinedForMixer, check_positions
from ..editing import rank_one_edit


def contrastive_state_direction(model, positive, negative, layer: int, position: int = -1
                                ) -> Float[torch.Tensor, "head d_k d_v"]:
    """Mean fast weights of ``layer`` after the write at ``position`` over ``positive`` minus over ``negative``."""
    def mean_state(tokens) -> torch.Tensor:
        tokens = model.check_tokens(tokens)
        return model.fast_weights(tokens, layer, check_positions(position, tokens.shape[1]))[:, 0].mean(0)

    return mean_state(positive) - mean_state(negative)


def _state_edit(attn, direction, key, value, strength: float, head: Optional[int], overwrite: bool):
    """A function W [batch, head, d_k, d_v] → W' for the given direction or rank-one write."""
    n_heads, d_k, d_v = attn.n_heads, attn.d_k, attn.d_v
    if head is not None and not (isinstance(head, int) and not isinstance(head, bool) and 0 <= head < n_heads):
        raise ValueError(f"head must be an int in [0, {n_heads - 1}] or None (every head), got {head!r}")
    if (direction is None) == (key is None or value is None):
        raise ValueError("give either a direction D (the state's shape) or both key and value (a rank-one write k vᵀ)")
    if direction is not None:
        if overwrite:
            raise ValueError("overwrite goes with a key and a value (an association edit), not with a direction")

        def edit(W: torch.Tensor) -> torch.Tensor:
            want = tuple(W.shape[1:]) if head is None else tuple(W.shape[2:])
            if tuple(direction.shape) != want:
                raise ValueError(f"the direction must have the state's shape {want} "
                                 f"({'[head, ' if head is None else '['}{', '.join(attn.state_axes)}]), "
                                 f"got {tuple(direction.shape)}")
            out = W.clone()
            if head is None:
                out += strength * direction.to(W)
            else:
                out[:, head] += strength * direction.to(W)
            return out

        return edit
    if (why := attn.key_value_state()) is not None:
        raise NotDefinedForMixer(f"a rank-one write k vᵀ needs a [d_k, d_v] key→value state; the "
                                 f"{attn.label(attn.cfg)} layer has none: {why}. Steer it with a direction of the "
                                 "state's shape instead")
    want_k, want_v = ((d_k,), (d_v,)) if head is not None else ((n_heads, d_k), (n_heads, d_v))
    if tuple(key.shape) != want_k or tuple(value.shape) != want_v:
        raise ValueError(f"key and value must have shapes {want_k} and {want_v}, got {tuple(key.shape)} and "
                         f"{tuple(value.shape)}")

    def write(W: torch.Tensor) -> torch.Tensor:  # W [batch, (head,) d_k, d_v]
        k, v = key.to(W), value.to(W)
        if overwrite:
            return rank_one_edit(W, k, v, strength).to(W)
        return W + strength * k[..., :, None] * v[..., None, :]

    def edit(W: torch.Tensor) -> torch.Tensor:
        if head is None:
            return write(W)
        out = W.clone()
        out[:, head] = write(W[:, head])
        return out

    return edit


@contextmanager
def state_steering(model, layer: int, positions, direction: Optional[torch.Tensor] = None,
                   key: Optional[torch.Tensor] = None, value: Optional[torch.Tensor] = None, strength: float = 1.0,
                   mode: str = "readout", head: Optional[int] = None, overwrite: bool = False) -> Iterator[None]:
    """Inside this context every run of ``model`` has the fast weights of ``layer`` steered right after the write
    at each of ``positions`` (see the module docstring): by ``strength · direction`` or by the rank-one write
    ``strength · key valueᵀ`` (``overwrite``: the association edit of :func:`~workbench.analysis.rank_one_edit`),
    for ``head`` (None: every head; then key ``[head, d_k]``, value ``[head, d_v]``, direction
    ``[head, d_k, d_v]``). ``mode``: "readout" or "carry" (one position). Strength 0 leaves runs exactly as they
    were. Raises NotDefinedForMixer for a layer without fast weights, or a rank-one write into a state that is
    not a key→value matrix."""
    attn = model.fast_weight_mixer(layer)
    layer = layer % model.cfg.n_layers
    edit = _state_edit(attn, direction, key, value, strength, head, overwrite)

    def hook(states: torch.Tensor, hook) -> torch.Tensor:  # [batch, n_positions, head, d_k, d_v]
        if strength == 0:
            return states
        return torch.stack([edit(states[:, i]) for i in range(states.shape[1])], dim=1).to(states.dtype)

    with model.expose_states(positions, mode=mode, layers=[layer]), \
            model.hooks(fwd_hooks=[(f"blocks.{layer}.attn.hook_state", hook)]):
        yield
