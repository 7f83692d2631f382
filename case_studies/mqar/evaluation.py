"""The model's own recall, query by query: accuracy per setting, by lag, and what each head reads out.

For an MQAR batch, a *query* is a position t whose next token is scored (``loss_mask[t]``): tokens[t] is a
key, tokens[t + 1] its value. Its pair is the context pair (key_pos, value_pos) holding the same key;
``lag = t − value_pos`` — the same lag the probe uses (t is where the memory is read). The readout of a
head at the query is ``cos(hook_z[t], hook_v[value_pos])``: how close what the head returned is to the
value vector it saw with the key (defined for every mixer, softmax included).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from workbench.tasks import TaskBatch


def lag_bin(lag: "pd.Series | int"):
    """Power-of-two bins labelled by their lower edge: 0, 1, 2–3 → 2, 4–7 → 4, …"""
    if isinstance(lag, pd.Series):
        values = lag.to_numpy(dtype=np.int64)
        if (values < 0).any():
            raise ValueError(f"a lag is ≥ 0, got {values.min()}")
        _, exponent = np.frexp(values.astype(np.float64))  # v = m·2^e with m in [0.5, 1): e = bit length
        return pd.Series(np.where(values == 0, 0, np.left_shift(np.int64(1), np.maximum(exponent, 1) - 1)), index=lag.index)
    lag = int(lag)
    if lag < 0:
        raise ValueError(f"a lag is ≥ 0, got {lag}")
    return 0 if lag == 0 else 1 << (lag.bit_length() - 1)


def find_queries(batch: TaskBatch) -> pd.DataFrame:
    """One row per scored prediction: seq, query_pos, pair, key_pos, value_pos, lag, target."""
    if batch.pairs is None:
        raise ValueError("the batch has no pairs; sample it from an MQAR task")
    tokens = batch.tokens
    rows = []
    for s, t in batch.loss_mask.nonzero().tolist():
        key = int(tokens[s, t])
        matches = [i for i, (a, _) in enumerate(batch.pairs[s]) if int(tokens[s, a]) == key]
        if len(matches) != 1:
            raise ValueError(f"sequence {s}: the query at {t} (token {key}) matches {len(matches)} context keys")
        i = matches[0]
        a, b = batch.pairs[s][i]
        rows.append(dict(seq=s, query_pos=t, pair=i, key_pos=a, value_pos=b, lag=t - b, target=int(tokens[s, t + 1])))
    return pd.DataFrame(rows)


@torch.no_grad()
def score_queries(model, batch: TaskBatch) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(queries, readout): ``find_queries`` plus the model's ``predicted`` token and ``correct``; and one
    row per (query, layer, head) with ``readout_cos`` and the query's ``correct``."""
    queries = find_queries(batch)
    names = {f"blocks.{i}.attn.hook_{n}" for i in range(model.cfg.n_layers) for n in ("z", "v")}
    logits, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
    s, t, b = (torch.tensor(queries[c].to_numpy()) for c in ("seq", "query_pos", "value_pos"))
    predicted = logits[s, t].argmax(-1)
    queries["predicted"] = predicted.tolist()
    queries["correct"] = (predicted == torch.tensor(queries["target"].to_numpy())).tolist()
    parts = []
    for layer in range(model.cfg.n_layers):
        z = cache[f"blocks.{layer}.attn.hook_z"][s, t].float()  # [query, head, d_head]
        v = cache[f"blocks.{layer}.attn.hook_v"][s, b].float()  # [query, head, d_head]
        cos = F.cosine_similarity(z, v, dim=-1)  # [query, head]
        for head in range(cos.shape[1]):
            part = queries[["seq", "query_pos", "lag", "correct"]].copy()
            part["layer"], part["head"], part["readout_cos"] = layer, head, cos[:, head].tolist()
            parts.append(part)
    return queries, pd.concat(parts, ignore_index=True)


def score_task(model, task, n_sequences: int, seed: int, batch_size: int = 64) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`score_queries` over ``n_sequences`` fresh sequences of ``task`` (generator seeded with
    ``seed``, drawn ``batch_size`` at a time); ``seq`` numbers run over all of them."""
    if n_sequences < 1:
        raise ValueError(f"n_sequences must be ≥ 1, got {n_sequences}")
    gen = torch.Generator().manual_seed(seed)
    qs, rs = [], []
    for start in range(0, n_sequences, batch_size):
        q, r = score_queries(model, task.sample(min(batch_size, n_sequences - start), gen))
        q["seq"] += start
        r["seq"] += start
        qs.append(q)
        rs.append(r)
    return pd.concat(qs, ignore_index=True), pd.concat(rs, ignore_index=True)


def accuracy_by_lag(queries: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and query count per power-of-two lag bin."""
    d = queries.assign(lag_bin=lag_bin(queries["lag"]))
    out = d.groupby("lag_bin", as_index=False).agg(accuracy=("correct", "mean"), n=("correct", "size"))
    return out.astype({"accuracy": float, "n": int})


def accuracy_by_pair(queries: pd.DataFrame) -> pd.DataFrame:
    """Accuracy and query count per pair index (0 = the first pair of the context)."""
    out = queries.groupby("pair", as_index=False).agg(accuracy=("correct", "mean"), n=("correct", "size"))
    return out.astype({"accuracy": float, "n": int})


def readout_by_lag(readout: pd.DataFrame) -> pd.DataFrame:
    """Mean readout cosine per (layer, head, lag bin): over all queries, the correct ones and the wrong ones."""
    d = readout.assign(lag_bin=lag_bin(readout["lag"]))
    keys = ["layer", "head", "lag_bin"]
    out = d.groupby(keys, as_index=False).agg(readout_cos=("readout_cos", "mean"), n=("readout_cos", "size"))
    for flag, name in ((True, "readout_cos_correct"), (False, "readout_cos_wrong")):
        part = d[d["correct"] == flag].groupby(keys, as_index=False)["readout_cos"].mean()
        out = out.merge(part.rename(columns={"readout_cos": name}), on=keys, how="left")
    return out
