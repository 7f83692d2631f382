"""Verbatim recitation: greedy continuation of a prefix, scored against the true suffix.

For a suffix of length L and a greedy continuation of the same length, with d the token-level
Levenshtein distance (:func:`.distance.token_levenshtein`):

    strict = (continuation == suffix)        loose = (1 − d/L ≥ 0.75)        norm_distance = d / L

(Merullo et al. 2025 use a 64-token prefix and a 48-token suffix.) The positional probe of Xu,
Bosselut & Schlag (2025) takes the prefix at an offset o into the memorized sequence:
prefix = seq[o : o+P], suffix = seq[o+P : o+P+L] (:func:`probe_windows`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import pandas as pd
import torch

from .distance import token_levenshtein

LOOSE_THRESHOLD = 0.75


def _check_2d(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.dtype.is_floating_point or x.shape[1] == 0:
        raise ValueError(f"{name} must be an integer tensor [n, length] with length ≥ 1, "
                         f"got {tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    return x.long()


@torch.no_grad()
def greedy_continue(model, prefixes: torch.Tensor, n_tokens: int, batch_size: int = 64) -> torch.Tensor:
    """Greedy (argmax; ties → the lowest id) continuation ``[n, n_tokens]`` of ``prefixes [n, P]``."""
    prefixes = _check_2d(prefixes, "prefixes")
    if not isinstance(n_tokens, int) or n_tokens < 1:
        raise ValueError(f"n_tokens must be a positive int, got {n_tokens!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    cfg = model.cfg
    if cfg.positional == "learned" and prefixes.shape[1] + n_tokens - 1 > cfg.n_ctx:
        raise ValueError(f"prefix ({prefixes.shape[1]}) + continuation ({n_tokens}) − 1 exceeds the model's "
                         f"n_ctx = {cfg.n_ctx}; shorten the prefix or the suffix")
    device = model.unembed.W_U.device
    out = []
    for start in range(0, prefixes.shape[0], batch_size):
        tokens = prefixes[start:start + batch_size].to(device)
        new = []
        for _ in range(n_tokens):
            nxt = model(tokens)[:, -1].argmax(-1, keepdim=True)
            new.append(nxt)
            tokens = torch.cat([tokens, nxt], 1)
        out.append(torch.cat(new, 1).cpu())
    return torch.cat(out, 0)


def recitation_scores(generated: torch.Tensor, suffixes: torch.Tensor,
                      loose_threshold: float = LOOSE_THRESHOLD) -> pd.DataFrame:
    """One row per sequence: ``strict, loose, distance, norm_distance`` of ``generated`` vs ``suffixes``
    (both ``[n, L]``)."""
    generated, suffixes = _check_2d(generated, "generated"), _check_2d(suffixes, "suffixes")
    if generated.shape != suffixes.shape:
        raise ValueError(f"generated {tuple(generated.shape)} and suffixes {tuple(suffixes.shape)} must match")
    L = suffixes.shape[1]
    d = [token_levenshtein(g, s) for g, s in zip(generated.tolist(), suffixes.tolist())]
    norm = [x / L for x in d]
    return pd.DataFrame({"strict": (generated == suffixes).all(1).tolist(),
                         "loose": [1 - x >= loose_threshold for x in norm], "distance": d, "norm_distance": norm})


def probe_windows(sequences: torch.Tensor, prefix_len: int, suffix_len: int, offset: int = 0
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(seq[:, o:o+P], seq[:, o+P:o+P+L])`` for ``sequences [n, length]``."""
    sequences = _check_2d(sequences, "sequences")
    for name, v, low in (("prefix_len", prefix_len, 1), ("suffix_len", suffix_len, 1), ("offset", offset, 0)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise ValueError(f"{name} must be an int ≥ {low}, got {v!r}")
    end = offset + prefix_len + suffix_len
    if end > sequences.shape[1]:
        raise ValueError(f"offset + prefix_len + suffix_len = {end} exceeds the sequence length {sequences.shape[1]}")
    return sequences[:, offset:offset + prefix_len], sequences[:, offset + prefix_len:end]


def recitation_table(model, sequences: torch.Tensor, prefix_lens: Sequence[int], suffix_len: int,
                     offsets: Sequence[int] = (0,), meta: Optional[pd.DataFrame] = None, batch_size: int = 64,
                     loose_threshold: float = LOOSE_THRESHOLD) -> pd.DataFrame:
    """Recitation of every sequence for every (prefix length, offset): one row each, with columns
    ``seq, prefix_len, offset, strict, loose, distance, norm_distance`` plus ``meta``'s columns (one row
    per sequence, e.g. ``repetitions``)."""
    sequences = _check_2d(sequences, "sequences")
    if meta is not None and len(meta) != sequences.shape[0]:
        raise ValueError(f"meta has {len(meta)} rows for {sequences.shape[0]} sequences; give one row per sequence")
    frames = []
    for P in prefix_lens:
        for o in offsets:
            prefixes, suffixes = probe_windows(sequences, P, suffix_len, o)
            scores = recitation_scores(greedy_continue(model, prefixes, suffix_len, batch_size), suffixes,
                                       loose_threshold)
            scores.insert(0, "seq", range(sequences.shape[0]))
            scores.insert(1, "prefix_len", P)
            scores.insert(2, "offset", o)
            if meta is not None:
                scores = pd.concat([scores, meta.reset_index(drop=True)], axis=1)
            frames.append(scores)
    return pd.concat(frames, ignore_index=True)


def summarize(table: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """Strict and loose accuracy, mean normalised distance and count, grouped by ``by`` (e.g.
    ``["repetitions"]``, ``["prefix_len"]``, ``["offset"]``); all rows together when ``by`` is empty."""
    missing = [c for c in by if c not in table.columns]
    if missing:
        raise ValueError(f"cannot group by {missing}: the table has columns {list(table.columns)}")
    agg = dict(strict_acc=("strict", "mean"), loose_acc=("loose", "mean"),
               mean_norm_distance=("norm_distance", "mean"), n=("strict", "size"))
    if not by:
        return table.assign(_all=0).groupby("_all").agg(**agg).reset_index(drop=True)
    return table.groupby(list(by)).agg(**agg).reset_index()
