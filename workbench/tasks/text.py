"""Next-token prediction on real English text (``workbench.text``): random windows of the training
documents; validation is the held-out documents (see :func:`workbench.text.evaluate_text`)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import TaskBatch, TaskConfig

TOKENIZERS = ("bytes", "bpe")


@dataclass(frozen=True)
class TextData:
    tokenizer: object  # ByteTokenizer or BPETokenizer
    train_ids: torch.Tensor  # [n_train] long: the training documents, joined by blank lines
    val_ids: torch.Tensor  # [n_val] long
    val_bytes: int  # UTF-8 bytes of the validation text


@functools.lru_cache(maxsize=8)
def text_data(corpus: str, tokenizer: str, vocab_size: int, val_fraction: float) -> TextData:
    """Tokenised train/validation streams (cached per setting; the BPE is trained on train only)."""
    from ..text.corpus import load_corpus, split_documents
    from ..text.tokenizer import BPETokenizer, ByteTokenizer

    train_docs, val_docs = split_documents(load_corpus(corpus), val_fraction)
    train_text = "\n\n".join(d.text for d in train_docs)
    val_text = "\n\n".join(d.text for d in val_docs)
    tok = ByteTokenizer() if tokenizer == "bytes" else BPETokenizer.train([d.text for d in train_docs], vocab_size)
    return TextData(tok, torch.tensor(tok.encode(train_text), dtype=torch.long),
                    torch.tensor(tok.encode(val_text), dtype=torch.long), len(val_text.encode("utf-8")))


@dataclass(frozen=True)
class TextLM(TaskConfig):
    """Language modelling on ``corpus`` (``python-topics``, ``python-docstrings`` or ``file:PATH``, see :mod:`workbench.text.corpus`)
    with a ``bytes`` or ``bpe`` tokenizer (``vocab_size`` tokens, trained on the training documents);
    sequences of ``seq_len`` tokens; every next-token prediction counts. With ``bytes``, vocab_size is 256."""

    NAME: ClassVar[str] = "text"

    corpus: str = "python-topics"
    tokenizer: str = "bpe"
    vocab_size: int = 1024
    seq_len: int = 128
    val_fraction: float = 0.1

    def __post_init__(self) -> None:
        if self.tokenizer not in TOKENIZERS:
            raise ValueError(f"tokenizer must be one of {TOKENIZERS}, got {self.tokenizer!r}")
        if self.tokenizer == "bytes" and self.vocab_size != 256:
            object.__setattr__(self, "vocab_size", 256)
        if not isinstance(self.vocab_size, int) or (self.tokenizer == "bpe" and self.vocab_size <= 256):
            raise ValueError(f"vocab_size must be an int > 256 for the BPE tokenizer, got {self.vocab_size!r}")
        if not isinstance(self.seq_len, int) or self.seq_len < 2:
            raise ValueError(f"seq_len must be an int ≥ 2, got {self.seq_len!r}")

    @property
    def data(self) -> TextData:
        return text_data(self.corpus, self.tokenizer, self.vocab_size, self.val_fraction)

    @property
    def d_vocab(self) -> int:
        return self.data.tokenizer.vocab_size

    def sample(self, batch_size: int, generator: torch.Generator) -> TaskBatch:
        ids = self.data.train_ids
        if len(ids) < self.seq_len:
            raise ValueError(f"the training text has {len(ids)} tokens, fewer than seq_len = {self.seq_len}")
        starts = torch.randint(0, len(ids) - self.seq_len + 1, (batch_size,), generator=generator)
        tokens = ids[starts[:, None] + torch.arange(self.seq_len)]
        return TaskBatch(tokens, torch.ones(batch_size, self.seq_len - 1, dtype=torch.bool))
