"""What the Steering page shows: residual (CAA) and fast-weight-state steering of one sequence, side by side.

Direction sources: contrastive prompts from the model's task (n sequences of the task with their last token set to
token A, against the same sequences ending in token B: the residual CAA vector and the state's contrastive
direction at that last position), or a token's unembedding (a residual direction only: the state has no
canonical image of it, and the page says so). The model is never changed: every steered run is a context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd
import torch

from ..analysis.knockout import logit_difference
from ..analysis.steering import (caa_vector, contrastive_state_direction, residual_steering, state_steering,
                                 steering_sweep, unembedding_direction)
from .sequences import fit_task

SOURCES = ("Contrastive prompts from the model's task", "A token's unembedding")


@dataclass(frozen=True)
class Directions:
    """A residual steering vector ``[d_model]`` and a state direction ``[head, d_k, d_v]`` (None, with the reason
    in ``state_note``, where the layer keeps no state or the source gives none)."""

    residual: torch.Tensor
    state: Optional[torch.Tensor]
    state_note: Optional[str]
    label: str


def contrastive_prompts(cfg, task: dict, n: int, seed: int, token_a: int, token_b: int
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` sequences of ``task`` (seeded) ending in ``token_a`` (positive) and the same ending in ``token_b``."""
    for name, t in (("token A", token_a), ("token B", token_b)):
        if not isinstance(t, int) or not 0 <= t < cfg.d_vocab:
            raise ValueError(f"{name} must be a token id in [0, {cfg.d_vocab - 1}], got {t!r}")
    if token_a == token_b:
        raise ValueError("tokens A and B are the same: a contrastive direction needs two different tokens")
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"the number of prompts must be a positive integer, got {n!r}")
    tokens = fit_task(cfg, task).sample(n, torch.Generator().manual_seed(seed)).tokens.clone()
    positive, negative = tokens.clone(), tokens.clone()
    positive[:, -1], negative[:, -1] = token_a, token_b
    return positive, negative


def directions(model, layer: int, source: str, task: Optional[dict] = None, n: int = 16, seed: int = 0,
               token_a: int = 0, token_b: int = 1) -> Directions:
    """The residual and state directions of ``source`` (one of :data:`SOURCES`) at ``layer``."""
    attn = model.mixer(layer)
    if source == SOURCES[1]:
        note = ("a token's unembedding is a direction of the residual stream; the state has no canonical image of "
                "it, so state steering takes contrastive prompts")
        return Directions(unembedding_direction(model, token_a), None, note, f"unembedding of token {token_a}")
    if source != SOURCES[0]:
        raise ValueError(f"the direction source must be one of {SOURCES}, got {source!r}")
    if task is None:
        raise ValueError("no synthetic task fits this model, so there are no contrastive prompts; use a token's "
                         "unembedding")
    positive, negative = contrastive_prompts(model.cfg, task, n, seed, token_a, token_b)
    vector = caa_vector(model, positive, negative, layer)
    state, note = None, None
    if attn.has_fast_weights:
        state = contrastive_state_direction(model, positive, negative, layer)
    else:
        note = f"layer {layer} ({attn.label(attn.cfg)}) keeps no fast-weight state to steer"
    return Directions(vector, state, note, f"{n} task prompts ending in {token_a} vs {token_b}")


@torch.no_grad()
def next_token_table(model, tokens: list[int], layer: int, dirs: Directions, positions: list[int], strength: float,
                     mode: str, top_k: int = 8) -> pd.DataFrame:
    """The next-token probabilities at the last position without steering, with residual steering and with state
    steering (a column each; no state column where ``dirs.state`` is None), for the union of each run's top
    ``top_k`` tokens, most probable first (clean)."""
    ids = model.check_tokens(tokens)
    runs = {"clean": model(ids)[0, -1]}
    with residual_steering(model, layer, dirs.residual, strength, positions=positions):
        runs["residual"] = model(ids)[0, -1]
    if dirs.state is not None:
        state_positions = positions[:1] if mode == "carry" else positions
        with state_steering(model, layer, state_positions, direction=dirs.state, strength=strength, mode=mode):
            runs["state"] = model(ids)[0, -1]
    probs = {name: logits.double().softmax(-1) for name, logits in runs.items()}
    chosen: list[int] = []
    for p in probs.values():
        chosen += [int(i) for i in p.topk(min(top_k, p.numel())).indices if int(i) not in chosen]
    table = pd.DataFrame({"token": chosen, **{name: [float(p[i]) for i in chosen] for name, p in probs.items()}})
    return table.sort_values("clean", ascending=False, ignore_index=True)


def strength_sweep(model, tokens: list[int], layer: int, dirs: Directions, positions: list[int], mode: str,
                   strengths: list[float], token_a: int, token_b: int, heldout: torch.Tensor,
                   heldout_mask: Optional[torch.Tensor] = None) -> pd.DataFrame:
    """:func:`~workbench.analysis.steering_sweep` of residual and state steering on the sequence, scored by
    logit(A) − logit(B) at its last position, with perplexity on ``heldout`` (over ``heldout_mask``'s predictions)."""
    ids = model.check_tokens(tokens)
    steerers = {"residual": lambda s: residual_steering(model, layer, dirs.residual, s, positions=positions)}
    if dirs.state is not None:
        state_positions = positions[:1] if mode == "carry" else positions
        steerers["state"] = lambda s: state_steering(model, layer, state_positions, direction=dirs.state, strength=s,
                                                     mode=mode)
    return steering_sweep(model, ids, steerers, strengths, metric=logit_difference(token_a, token_b), heldout=heldout,
                          heldout_mask=heldout_mask)
