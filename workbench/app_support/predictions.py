"""What the model predicts at every position of a sequence, and how well it recalls the scored answers."""

from __future__ import annotations

from typing import Optional

import pandas as pd
import torch


@torch.no_grad()
def predictions(model, tokens, scored=()) -> pd.DataFrame:
    """One row per position t: the token, the top-1 prediction for t+1 and its probability, the true next
    token and its probability ``p_next``, whether the task scores t (``scored``) and whether the prediction is
    right; with a tokenizer, the token's and the prediction's strings too."""
    tokens = model.check_tokens(tokens)
    probs = model(tokens)[0].float().softmax(-1)  # [pos, vocab]
    p, top = probs.max(-1)
    ids = tokens[0].tolist()
    scored = set(int(t) for t in scored)
    rows = []
    for t, tok in enumerate(ids):
        nxt = ids[t + 1] if t + 1 < len(ids) else None
        rows.append(dict(pos=t, token=tok, predicted=int(top[t]), p_predicted=float(p[t]), next_token=nxt,
                         p_next=None if nxt is None else float(probs[t, nxt]), scored=t in scored,
                         correct=None if nxt is None else int(top[t]) == nxt))
    table = pd.DataFrame(rows).astype({"next_token": "Int64", "p_next": float, "correct": "boolean"})
    if getattr(model, "tokenizer", None) is not None:  # the tokenizer's strings beside the ids
        strings = model.to_str_tokens(torch.tensor(ids + [int(x) for x in top]))
        table.insert(2, "token_str", strings[: len(ids)])
        table.insert(4, "predicted_str", strings[len(ids):])
    return table


def recall_accuracy(table: pd.DataFrame) -> Optional[float]:
    """Share of the scored positions predicted right, or None when nothing is scored."""
    s = table[table["scored"]]
    return None if s.empty else float(s["correct"].astype(bool).mean())


def position_roles(n_pos: int, pairs=(), scored=()) -> list[str]:
    """What each of ``n_pos`` positions is in its task: ``key`` and ``value`` of a stored pair (key position,
    value position); where the task scores the next token, ``query`` (a recall task: it has pairs) or
    ``scored`` (e.g. next-token prediction of memorized text); else ``""``."""
    roles = [""] * n_pos
    for a, b in pairs:
        roles[a], roles[b] = "key", "value"
    for t in scored:
        roles[t] = roles[t] or ("query" if pairs else "scored")
    return roles
