"""Read a layer's fast-weight matrices W_t at chosen positions without storing the whole trajectory."""

from __future__ import annotations

from typing import Sequence, Union

import torch

from ..components.fast_weight_state import states_at
from .layer_inputs import recurrence_inputs


def check_positions(positions: Union[int, Sequence[int], torch.Tensor], n_pos: int) -> list[int]:
    """Positions as a list of ints in [0, n_pos); negative ones count from the end."""
    if isinstance(positions, torch.Tensor):
        positions = positions.tolist()
    if isinstance(positions, int) and not isinstance(positions, bool):
        positions = [positions]
    try:
        positions = list(positions)
    except TypeError:
        raise ValueError(f"positions must be an int or a list of ints, got {positions!r}") from None
    if not positions:
        raise ValueError("positions is empty; pass at least one position")
    out = []
    for p in positions:
        if not isinstance(p, int) or isinstance(p, bool) or not -n_pos <= p < n_pos:
            raise ValueError(f"position {p!r} is outside the sequence of {n_pos} tokens (valid: 0..{n_pos - 1})")
        out.append(p % n_pos)
    return out


@torch.no_grad()
def fast_weights(model, tokens, layer: int, positions) -> torch.Tensor:
    """The fast-weight matrix of every head of ``layer`` after the write at each of ``positions``.

    Returns ``[batch, n_positions, head, d_key, d_v]`` float32 with ``o_t = W_tᵀ (scale·q_t)``: a key
    indexes a row. For sum-normalised linear attention the last value column is the normaliser z_t.
    Memory: O(pos/C · head · d_key · d_v) for the chunk-start states plus the requested states, never
    the O(pos · head · d_key · d_v) trajectory (C = ``model.cfg.chunk_size``). Raises ValueError for a
    softmax layer, a bad layer or a position outside the sequence.
    """
    tokens = model.check_tokens(tokens)
    positions = check_positions(positions, tokens.shape[1])
    inp = recurrence_inputs(model, tokens, layer)
    return states_at(inp.rule, inp.q, inp.k, inp.v, inp.beta, inp.g, inp.normalize, positions,
                     model.cfg.chunk_size, model.cfg.backend)
