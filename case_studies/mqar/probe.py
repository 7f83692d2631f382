"""The associative-recall probe of every fast-weight layer, on MQAR sequences, summarised two ways.

Which key does a pair use? Two conventions, both reported:
  - ``write``: key and value read at the value position b_i — the association the layer actually
    writes there (with DeltaNet's short convolution the key written at b_i carries the key token
    from b_i − 1, which is how a 2-layer model binds k_i to v_i);
  - ``key_token``: key read at the key token a_i, value at b_i — Zoology's pairs taken literally;
  - ``control``: key written at b_i, value of the *next* pair b_{i+1} (the last pair has none). A score
    means something only where it beats its control: if a memory returns nearly the same vector for
    every key, fidelity is high for the control too. Its ``n_stored`` is shifted by one so that it
    counts the real pairs stored, like the others.

Summaries (means per layer, head and convention, via :func:`workbench.analysis.aggregate`):
  - by pairs stored: positions inside the key–value context only (t < 2·kv), where the number of
    stored pairs grows from 1 to kv — the memory's capacity curve;
  - by lag: every position t ≥ b_i, lags in power-of-two bins (labelled by their lower edge);
  - by pair index: right after the write (t = b_i) and at the last position, per pair of the context;
    beside it the write strength β_t at b_i (delta-rule layers), read from ``hook_beta``.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from workbench.analysis import aggregate, probe_associations

from .evaluation import lag_bin

CONVENTIONS = ("write", "key_token", "control")
METRICS = ("fidelity", "retrieval_error", "decodes")


def probe_pairs(pairs: list[list[tuple[int, int]]], convention: str) -> list[list[tuple[int, int]]]:
    """The (key position, value position) pairs to probe for a batch's context pairs."""
    if convention == "write":
        return [[(b, b) for _, b in row] for row in pairs]
    if convention == "key_token":
        return [[(a, b) for a, b in row] for row in pairs]
    if convention == "control":
        if any(len(row) < 2 for row in pairs):
            raise ValueError("the control pairs each key with the next pair's value: it needs ≥ 2 pairs per sequence")
        return [[(row[i][1], row[i + 1][1]) for i in range(len(row) - 1)] for row in pairs]
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def probe_task(model, task, n_sequences: int, seed: int, conventions: Sequence[str] = CONVENTIONS,
               chunk: int = 4, progress: bool = False) -> pd.DataFrame:
    """Raw probe rows (see :func:`workbench.analysis.probe_associations`) for every layer and convention
    on ``n_sequences`` fresh sequences of ``task`` (seeded), with columns ``layer`` and ``convention``.
    Sequences go ``chunk`` at a time: the fast weights of every position of a chunk are held at once."""
    gen = torch.Generator().manual_seed(seed)
    batch = task.sample(n_sequences, gen)
    parts = []
    jobs = [(layer, conv, start) for layer in range(model.cfg.n_layers) for conv in conventions
            for start in range(0, n_sequences, chunk)]
    for layer, conv, start in tqdm(jobs, desc="probe", disable=not progress, leave=False):
        rows = batch.pairs[start:start + chunk]
        df = probe_associations(model, batch.tokens[start:start + chunk], layer, probe_pairs(rows, conv))
        df["seq"] += start
        if conv == "control":  # b_{i+1} ≤ t for a control pair means pairs 0..i+1 are stored: one more
            df["n_stored"] += 1
        df["layer"], df["convention"] = layer, conv
        parts.append(df)
    return pd.concat(parts, ignore_index=True)


def by_pair(df: pd.DataFrame, at: str) -> pd.DataFrame:
    """Mean metrics per (layer, convention, head, pair) at the write (``at="write"``: t = value position)
    or at the last probed position (``at="end"``)."""
    if at == "write":
        d = df[df["pos"] == df["value_pos"]]
    elif at == "end":
        d = df[df["pos"] == df["pos"].max()]
    else:
        raise ValueError(f"at must be 'write' or 'end', got {at!r}")
    keys = ["layer", "convention", "head", "pair"]
    out = d.groupby(keys, as_index=False)[list(METRICS)].mean(numeric_only=False)
    return out.astype({m: float for m in METRICS})


@torch.no_grad()
def write_strength(model, task, n_sequences: int, seed: int) -> pd.DataFrame | None:
    """Mean β_t at each pair's value position, per (layer, head, pair), on the sequences
    :func:`probe_task` draws with the same seed; None for a mixer without β (linear attention)."""
    names = {f"blocks.{i}.attn.hook_beta" for i in range(model.cfg.n_layers)}
    batch = task.sample(n_sequences, torch.Generator().manual_seed(seed))
    _, cache = model.run_with_cache(batch.tokens, names_filter=lambda n: n in names)
    if not cache:
        return None
    value_pos = torch.tensor([[b for _, b in row] for row in batch.pairs])  # [batch, pair]
    rows = []
    for layer in range(model.cfg.n_layers):
        beta = cache[f"blocks.{layer}.attn.hook_beta"]  # [batch, pos, head]
        at = beta.gather(1, value_pos[..., None].expand(-1, -1, beta.shape[-1])).mean(0)  # [pair, head]
        rows += [dict(layer=layer, head=h, pair=i, beta=float(at[i, h]))
                 for i in range(at.shape[0]) for h in range(at.shape[1])]
    return pd.DataFrame(rows)


def _per_layer(df: pd.DataFrame, by: str) -> pd.DataFrame:
    out = []
    for (layer, conv), part in df.groupby(["layer", "convention"], sort=True):
        agg = aggregate(part, by, METRICS)
        agg.insert(0, "convention", conv)
        agg.insert(0, "layer", layer)
        out.append(agg)
    return pd.concat(out, ignore_index=True)


def by_n_stored(df: pd.DataFrame, num_kv_pairs: int) -> pd.DataFrame:
    """Capacity curve: mean metrics per (layer, convention, head, n_stored) over context positions."""
    return _per_layer(df[df["pos"] < 2 * num_kv_pairs], "n_stored")


def by_lag(df: pd.DataFrame) -> pd.DataFrame:
    """Mean metrics per (layer, convention, head, lag bin); the ``lag`` column holds the bin's lower edge."""
    return _per_layer(df.assign(lag=lag_bin(df["lag"])), "lag")
