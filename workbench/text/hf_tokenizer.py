"""A checkpoint's own tokenizer: ``tokenizer.json`` (the Hugging Face ``tokenizers`` format), read with
``tokenizers`` — no transformers, no pickle.

    tok = HFTokenizer.from_file("model_dir/tokenizer.json")
    tok.encode("Hello world")            # [15496, 995]
    tok.token_strings([15496, 995])      # ["Hello", " world"]  (byte-level markers decoded)

``to_json()`` gives the file back unchanged in meaning, so a converted checkpoint carries it along
(:mod:`workbench.checkpoint` writes it as ``tokenizer.json`` next to the weights).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

FILE_NAME = "tokenizer.json"


class HFTokenizer:
    """Text ↔ token ids with a ``tokenizers.Tokenizer``. ``encode`` adds no special tokens unless asked."""

    kind = "hf"

    def __init__(self, tokenizer, bos_token_id: Optional[int] = None):
        self._tok = tokenizer
        self.vocab_size = tokenizer.get_vocab_size(with_added_tokens=True)
        self.bos_token_id = bos_token_id

    @classmethod
    def from_file(cls, path: Union[str, Path], bos_token_id: Optional[int] = None) -> "HFTokenizer":
        return cls.from_json(Path(path).read_text(encoding="utf-8"), bos_token_id, where=str(path))

    @classmethod
    def from_json(cls, text: str, bos_token_id: Optional[int] = None, where: str = FILE_NAME) -> "HFTokenizer":
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise ImportError("reading tokenizer.json needs tokenizers: pip install tokenizers") from None
        try:
            tok = Tokenizer.from_str(text)
        except Exception as e:  # tokenizers raises its own Exception type for a malformed file
            raise ValueError(f"{where} is not a tokenizer.json that tokenizers can read ({e})") from None
        return cls(tok, bos_token_id)

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        return self._tok.encode(text, add_special_tokens=add_special_tokens).ids

    def decode(self, ids: Sequence[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        """Each id as the text it stands for (byte-level BPE markers such as ``Ġ`` decoded to spaces)."""
        return [self.decode([i]) for i in ids]

    def to_json(self) -> str:
        return self._tok.to_str()
