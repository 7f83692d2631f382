"""The associative-recall probe over one or many sequences (the app averages curves over samples)."""

from __future__ import annotations

from typing import Callable, Optional

import pandas as pd

from ..analysis import probe_associations
from .sequences import TokenSequence, task_sequence


def probe_sequence(model, seq: TokenSequence, layer: int, pairs=None) -> pd.DataFrame:
    """probe_associations on one sequence, with its own pairs unless ``pairs`` are given."""
    pairs = seq.pairs if pairs is None else pairs
    if not pairs:
        raise ValueError("the probe needs (key_pos, value_pos) pairs: this sequence has none; enter some, e.g. 0:1 2:3")
    return probe_associations(model, list(seq.tokens), layer, [list(pairs)])


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
