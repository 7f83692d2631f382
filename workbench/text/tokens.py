"""Text ↔ tokens with a model's tokenizer, as TransformerLens' ``to_tokens``, ``to_str_tokens``, ``to_string``
and ``to_single_token`` behave (read in transformer_lens 4.3 ``model_bridge/transformer_bridge.py``; written
here for our tokenizers: bytes, byte-level BPE, a checkpoint's ``tokenizer.json``, a task's vocabulary).

A tokenizer here is anything with ``encode(text) -> ids`` and ``decode(ids) -> text``; ``token_strings(ids)``
(one string per id), ``bos_token_id`` and ``pad_token_id`` are used when it has them. ``prepend_bos``
defaults to False: our models are trained without a BOS token (TransformerLens' default is True, from
its models' configs); pass True for an imported checkpoint that expects one.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import torch

PADDING_SIDES = ("left", "right")


def _bos(tokenizer) -> int:
    bos = getattr(tokenizer, "bos_token_id", None)
    if bos is None:
        raise ValueError("prepend_bos=True, but this tokenizer has no bos_token_id (our models are trained without "
                         "one: leave prepend_bos at its default)")
    return int(bos)


def encode(tokenizer, text: str, prepend_bos: Optional[bool] = None) -> list[int]:
    """One text → its ids (BOS first with ``prepend_bos``)."""
    if not isinstance(text, str):
        raise TypeError(f"expected a str, got {type(text).__name__}")
    ids = list(tokenizer.encode(text))
    return [_bos(tokenizer)] + ids if prepend_bos else ids


def to_tokens(tokenizer, input: Union[str, Sequence[str]], prepend_bos: Optional[bool] = None,
              padding_side: Optional[str] = None, n_ctx: Optional[int] = None) -> torch.Tensor:
    """A text or a list of texts → ``[batch, pos]`` ids (long). Texts of different lengths are padded on
    ``padding_side`` ("right" by default, as TransformerLens) with the tokenizer's ``pad_token_id``; a
    tokenizer without one refuses them. ``n_ctx``: keep the first n_ctx tokens of each."""
    if padding_side is not None and padding_side not in PADDING_SIDES:
        raise ValueError(f"padding_side must be None, 'left' or 'right', got {padding_side!r}")
    texts = [input] if isinstance(input, str) else input
    if not isinstance(texts, (list, tuple)) or not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError(f"to_tokens takes a str or a non-empty list of str, got {input!r}")
    rows = [encode(tokenizer, t, prepend_bos)[:n_ctx] for t in texts]
    if any(not r for r in rows):
        raise ValueError(f"text {texts[[bool(r) for r in rows].index(False)]!r} encodes to no tokens")
    width = max(len(r) for r in rows)
    if any(len(r) != width for r in rows):
        pad = getattr(tokenizer, "pad_token_id", None)
        if pad is None:
            raise ValueError(f"the texts encode to different lengths {[len(r) for r in rows]} and this tokenizer has "
                             "no pad_token_id; pass texts of equal token length, or one at a time")
        left = padding_side == "left"
        rows = [[pad] * (width - len(r)) + r if left else r + [pad] * (width - len(r)) for r in rows]
    return torch.tensor(rows, dtype=torch.long)


def token_strings(tokenizer, ids: Sequence[int]) -> list[str]:
    """Each id as its own string (the tokenizer's ``token_strings`` when it has one)."""
    strings = getattr(tokenizer, "token_strings", None)
    return list(strings(ids)) if strings is not None else [tokenizer.decode([i]) for i in ids]


def single_token(tokenizer, string: str) -> int:
    """The id of a string that is exactly one token; ValueError that shows how it splits otherwise."""
    ids = encode(tokenizer, string)
    if len(ids) != 1:
        pieces = token_strings(tokenizer, ids)
        raise ValueError(f"{string!r} is not a single token: it encodes to {len(ids)} tokens {pieces}")
    return ids[0]
