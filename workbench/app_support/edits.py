"""Edit or wipe a layer's fast-weight memory at one position and compare the predictions.

Both return an :class:`EditOutcome`; the model is never changed (the edit lives inside one run).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pandas as pd
import torch

from ..analysis import edit_association, patch_fast_weights
from ..analysis.fast_weights import check_positions
from ..analysis.layer_inputs import fast_weight_mixer
from ..mixers import NotDefinedForMixer


@dataclass(frozen=True)
class EditOutcome:
    position: int
    before: pd.DataFrame  # top-k at `position` without the edit: token, prob
    after: pd.DataFrame  # the same with the edit
    changed: pd.DataFrame  # every position whose top-1 prediction changed: pos, before, after
    target: Optional[int] = None  # the token the edit aims for (redirect), if any
    # every position: pos, next_token, top_before, top_after, p_next_before, p_next_after (the probability of the
    # true next token without and with the edit; next_token and both p_next are missing at the last position)
    positions: Optional[pd.DataFrame] = None

    @property
    def top_before(self) -> int:
        return int(self.before["token"].iloc[0])

    @property
    def top_after(self) -> int:
        return int(self.after["token"].iloc[0])


def top_k(logits: torch.Tensor, k: int = 5) -> pd.DataFrame:
    """``logits: [vocab]`` → the k likeliest tokens with their probabilities."""
    p = logits.float().softmax(-1)
    v, i = p.topk(min(k, p.shape[-1]))
    return pd.DataFrame({"token": i.tolist(), "prob": v.tolist()})


def compare(before: torch.Tensor, after: torch.Tensor, position: int, target: Optional[int] = None,
            tokens: Optional[torch.Tensor] = None) -> EditOutcome:
    """``before``/``after``: logits ``[batch=1, pos, vocab]`` of the plain and the edited run; with
    ``tokens [batch=1, pos]`` the outcome has its per-position table too."""
    b, a = before[0].argmax(-1), after[0].argmax(-1)
    idx = (b != a).nonzero()[:, 0].tolist()
    changed = pd.DataFrame({"pos": idx, "before": b[idx].tolist(), "after": a[idx].tolist()})
    table = None
    if tokens is not None:
        ids = tokens[0].tolist()
        nxt = torch.tensor(ids[1:])
        p_b = before[0, :-1].float().softmax(-1).gather(-1, nxt[:, None])[:, 0].tolist() + [None]
        p_a = after[0, :-1].float().softmax(-1).gather(-1, nxt[:, None])[:, 0].tolist() + [None]
        table = pd.DataFrame({"pos": list(range(len(ids))), "next_token": ids[1:] + [None], "top_before": b.tolist(),
                              "top_after": a.tolist(), "p_next_before": p_b, "p_next_after": p_a}).astype(
            {"next_token": "Int64", "p_next_before": float, "p_next_after": float})
    return EditOutcome(position, top_k(before[0, position]), top_k(after[0, position]), changed, target, table)


def _head(model, head: Optional[int]) -> Optional[int]:
    if head is not None and not (isinstance(head, int) and 0 <= head < model.cfg.n_heads):
        raise ValueError(f"head must be in [0, {model.cfg.n_heads - 1}] or None (all heads), got {head!r}")
    return head


@torch.no_grad()
def redirect_recall(model, tokens, layer: int, position: int, source: int, head: Optional[int] = None,
                    strength: float = 1.0, mode: str = "carry") -> EditOutcome:
    """Rank-one edit of the memory written by ``position``: the key read at ``position`` now returns what
    the memory returns for the key read at ``source`` (so a recall at ``position`` answers like one at
    ``source``). ``head=None`` edits every head. ``target`` is the model's own prediction at ``source``."""
    if (why := fast_weight_mixer(model, layer).key_value_state()) is not None:
        raise NotDefinedForMixer(f"redirecting a recall edits a [d_k, d_v] state read as Wᵀq; layer {layer}: {why}")
    tokens = model.check_tokens(tokens)
    position, source = check_positions([position, source], tokens.shape[1])
    head = _head(model, head)
    q_name = f"blocks.{layer % model.cfg.n_layers}.attn.hook_q"
    logits, cache = model.run_with_cache(tokens, names_filter=lambda n: n == q_name)
    q = cache[q_name][0]  # [pos, head, d_k]: the keys the memory is read with (before the read scale)
    W = model.fast_weights(tokens, layer, [source])[0, 0]  # [head, d_k, d_v]
    value = torch.einsum("hkv,hk->hv", W, q[source].float())  # what the memory answers at `source`
    key = q[position] if head is None else q[position, head]
    value = value if head is None else value[head]
    edited = edit_association(model, tokens, layer, position, key, value, head=head, strength=strength, mode=mode)
    return compare(logits, edited, position, target=int(logits[0, source].argmax()), tokens=tokens)


@torch.no_grad()
def wipe_memory(model, tokens, layer: int, position: int, head: Optional[int] = None,
                mode: str = "readout") -> EditOutcome:
    """Patch W_t = 0 at ``position`` (one head or all) and compare."""
    fast_weight_mixer(model, layer)
    tokens = model.check_tokens(tokens)
    (position,) = check_positions([position], tokens.shape[1])
    head = _head(model, head)

    def zero(W: torch.Tensor) -> torch.Tensor:  # [batch, head, d_k, d_v]
        if head is None:
            return torch.zeros_like(W)
        out = W.clone()
        out[:, head] = 0
        return out

    logits = model(tokens)
    patched = patch_fast_weights(model, tokens, layer, position, zero, mode=mode)
    return compare(logits, patched, position, tokens=tokens)
