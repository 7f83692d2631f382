"""Tokenizers trained offline: raw UTF-8 bytes, or a byte-level BPE (``tokenizers``) trained on the
training documents only. Both map text → ids in [0, vocab_size) and back without loss."""

from __future__ import annotations

import json
from typing import Sequence


class ByteTokenizer:
    """Every UTF-8 byte is a token: vocab_size 256, nothing to train."""

    kind = "bytes"
    vocab_size = 256

    def encode(self, text: str) -> list[int]:
        return list(text.encode("utf-8"))

    def decode(self, ids: Sequence[int]) -> str:
        return bytes(ids).decode("utf-8", errors="replace")

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each byte as text: printable ASCII as itself, any other byte as ``\\xNN`` (a lone byte of a
        multi-byte character is not text)."""
        return [chr(i) if 32 <= i < 127 or chr(i) in "\n\t" else f"\\x{i:02x}" for i in ids]

    def to_json(self) -> str:
        return json.dumps({"kind": "bytes"})


class BPETokenizer:
    """Byte-level BPE (GPT-2 style pre-tokenisation, no special tokens) from ``tokenizers``.

    ``BPETokenizer.train(texts, vocab_size)`` learns merges on ``texts`` (deterministic for the same
    texts); ``to_json``/``from_json`` store it, e.g. next to a checkpoint.
    """

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size()

    @classmethod
    def train(cls, texts: Sequence[str], vocab_size: int = 1024) -> "BPETokenizer":
        if not isinstance(vocab_size, int) or vocab_size <= 256:
            raise ValueError(f"a byte-level BPE needs vocab_size > 256 (the byte alphabet), got {vocab_size!r}")
        try:
            from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
        except ImportError:
            raise ImportError("the BPE tokenizer needs tokenizers: pip install tokenizers") from None
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                      special_tokens=[], show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    def encode(self, text: str) -> list[int]:
        return self._tok.encode(text).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each id as the text it stands for (byte-level markers such as ``Ġ`` decoded to spaces)."""
        return [self.decode([i]) for i in ids]

    def to_json(self) -> str:
        return json.dumps({"kind": "bpe", "tokenizer": json.loads(self._tok.to_str())})

    @classmethod
    def from_json(cls, text: str) -> "BPETokenizer":
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_str(json.dumps(json.loads(text)["tokenizer"])))


def tokenizer_from_json(text: str):
    """A tokenizer written by one of ours' ``to_json`` (kind ``bytes``, ``bpe`` or ``vocabulary``)."""
    kind = json.loads(text).get("kind")
    if kind == "bytes":
        return ByteTokenizer()
    if kind == "bpe":
        return BPETokenizer.from_json(text)
    if kind == "vocabulary":
        from .vocabulary import VocabularyTokenizer

        return VocabularyTokenizer.from_json(text)
    raise ValueError(f"unknown tokenizer kind {kind!r}; expected 'bytes', 'bpe' or 'vocabulary'")
