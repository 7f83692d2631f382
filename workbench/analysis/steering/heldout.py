"""Held-out text for a steering sweep's perplexity: windows of the validation documents of a corpus that ships
with Python (:mod:`workbench.text.corpus`), encoded with the model's tokenizer."""

from __future__ import annotations

import torch

from ...text import load_corpus, split_documents, validation_windows


def heldout_text(model, seq_len: int = 64, n_windows: int = 8, corpus: str = "python-topics") -> torch.Tensor:
    """``[n_windows, seq_len]`` token ids of the corpus' validation split (the first windows, in order); the model
    needs a tokenizer of free text (``model.tokenizer``). ValueError if the text is too short."""
    if getattr(model, "tokenizer", None) is None or not getattr(model.tokenizer, "encodes_free_text", True):
        raise ValueError("held-out text needs a model with a tokenizer of free text; for a model of a synthetic "
                         "task pass held-out sequences of its task instead")
    _, val = split_documents(load_corpus(corpus))
    ids = model.to_tokens("\n\n".join(d.text for d in val), truncate=False)[0]
    windows = [w for w in validation_windows(ids, seq_len) if len(w) == seq_len][:n_windows]
    if len(windows) < n_windows:
        raise ValueError(f"the validation text of {corpus!r} has only {len(windows)} windows of {seq_len} tokens")
    return torch.stack(windows)
