"""The associative-recall probe over one or many sequences (the app averages curves over samples), against
its control, and the layer where recall happens.

Which key does a pair use? (case_studies/mqar/probe.py explains and measures both.)
  - ``written``: key and value both read at the value position b_i — what the layer writes there (with a
    short convolution the key written at b_i carries the key token from b_i − 1);
  - ``task``: key read at the key token a_i, value at b_i — the task's pairs taken literally.
The control pairs each key with the *next* pair's value: a score means something only where it beats its
control (a memory that returns nearly the same vector for every key scores high fidelity on both).
"""

from __future__ import annotations

from typing import Callable, Optional

import pandas as pd

from ..analysis import aggregate, probe_associations
from .sequences import TokenSequence, task_sequence

CONVENTIONS = ("written", "task")
METRICS = ("fidelity", "retrieval_error", "decodes")


def probe_sequence(model, seq: TokenSequence, layer: int, pairs=None) -> pd.DataFrame:
    """probe_associations on one sequence, with its own pairs unless ``pairs`` are given."""
    pairs = seq.pairs if pairs is None else pairs
    if not pairs:
        raise ValueError("the probe needs (key_pos, value_pos) pairs: this sequence has none; enter some, e.g. 0:1 2:3")
    return probe_associations(model, list(seq.tokens), layer, [list(pairs)])


def convention_pairs(pairs, convention: str) -> tuple[tuple[int, int], ...]:
    """The (key position, value position) pairs to probe for a task's (key token, value) ``pairs``."""
    if convention == "written":
        return tuple((b, b) for _, b in pairs)
    if convention == "task":
        return tuple((a, b) for a, b in pairs)
    raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")


def control_pairs(pairs) -> tuple[tuple[int, int], ...]:
    """Each pair's key with the next pair's value (the last pair has none): () for fewer than two pairs."""
    pairs = list(pairs)
    return tuple((pairs[i][0], pairs[i + 1][1]) for i in range(len(pairs) - 1))


def with_control(probe: Callable[[tuple], pd.DataFrame], pairs) -> tuple[pd.DataFrame, Optional[pd.DataFrame]]:
    """``probe(pairs)`` on the pairs and on their control pairs (None for fewer than two pairs); the
    control's ``n_stored`` is shifted by one so that it counts the real pairs stored, like the pairs'."""
    df = probe(tuple(pairs))
    ctrl = control_pairs(pairs)
    if not ctrl:
        return df, None
    control = probe(ctrl)
    return df, control.assign(n_stored=control["n_stored"] + 1)


def layer_summary(probes: dict[int, tuple[pd.DataFrame, Optional[pd.DataFrame]]]) -> pd.DataFrame:
    """One row per (layer, head): mean fidelity, its control's, the margin between them and the decode
    rate, from ``{layer: with_control(...)}``."""
    rows = []
    for layer, (df, control) in probes.items():
        for head, part in df.groupby("head"):
            ctrl = None if control is None else float(control.loc[control["head"] == head, "fidelity"].mean())
            fid = float(part["fidelity"].mean())
            rows.append(dict(layer=layer, head=int(head), fidelity=fid, control_fidelity=ctrl,
                             margin=fid - (ctrl if ctrl is not None else 0.0),
                             decodes=float(part["decodes"].astype(float).mean())))
    return pd.DataFrame(rows)


def recall_layer(summary: pd.DataFrame) -> int:
    """The layer whose best head's fidelity beats its control the most (ties: the higher decode rate) —
    the criterion of the MQAR case study's probe tables."""
    if summary.empty:
        raise ValueError("no probe results to choose a layer from")
    best = summary.sort_values(["margin", "decodes"], ascending=False).iloc[0]
    return int(best["layer"])


def aggregate_samples(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """:func:`aggregate` per sample (column ``seq``), then the mean over samples with its standard error
    (columns ``<metric>_sem``; NaN where only one sample has the group) and ``n_samples``."""
    per = pd.concat([aggregate(part, by).assign(seq=s) for s, part in df.groupby("seq")], ignore_index=True)
    metrics = [m for m in METRICS if m in per]
    grouped = per.groupby(["head", by])
    out = grouped[metrics].mean()
    sem = grouped[metrics].sem().add_suffix("_sem")
    return pd.concat([out, sem, grouped.size().rename("n_samples")], axis=1).reset_index()


def probe_samples(model, task: dict, seeds, layer: int,
                  progress: Optional[Callable[[int, int], None]] = None,
                  probe: Optional[Callable] = None) -> pd.DataFrame:
    """The probe on one task sample per seed, concatenated with ``seq`` numbering the samples.

    ``probe(seq, layer)`` computes one sample (default :func:`probe_sequence`; the app passes a cached
    version); ``progress(done, total)`` is called after each.
    """
    seeds = list(seeds)
    if not seeds:
        raise ValueError("no seeds: probe at least one sequence")
    probe = probe or (lambda s, lay: probe_sequence(model, s, lay))
    frames = []
    for i, seed in enumerate(seeds):
        df = probe(task_sequence(model.cfg, task, seed), layer)
        frames.append(df.assign(seq=i))
        if progress is not None:
            progress(i + 1, len(seeds))
    return pd.concat(frames, ignore_index=True)
