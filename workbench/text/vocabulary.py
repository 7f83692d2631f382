"""A tokenizer for the synthetic tasks: each token id has a name (``k12``, ``v7``, ``[MAX``, ``=``) and a text
is those names separated by spaces.

    tok = VocabularyTokenizer(MQAR(vocab_size=64).vocab)
    tok.encode("k3 v40 k3")        # [3, 40, 3]    (keys k1…k31 are ids 1…31, values v0…v31 ids 32…63)
    tok.token_strings([3, 40])     # ["k3", "v8"]

``load`` attaches one to a checkpoint whose ``recipe.json`` names a task with a vocabulary (every synthetic
language-model task: :func:`task_vocabulary`), so ``to_str_tokens`` gives readable token strings.
"""

from __future__ import annotations

import json
from typing import Optional, Sequence


class VocabularyTokenizer:
    """Names ↔ ids for a fixed vocabulary (``tokens[i]`` names id i); ``encode`` splits on whitespace."""

    kind = "vocabulary"
    encodes_free_text = False  # only its token names: the app offers task sequences and token ids, not typed text

    def __init__(self, tokens: Sequence[str]):
        tokens = tuple(tokens)
        if not tokens or not all(isinstance(t, str) and t and not any(c.isspace() for c in t) for t in tokens):
            raise ValueError("a vocabulary is a non-empty list of token names without whitespace")
        if len(set(tokens)) != len(tokens):
            dup = sorted({t for t in tokens if tokens.count(t) > 1})
            raise ValueError(f"the vocabulary names tokens {dup[:5]} more than once")
        self.tokens = tokens
        self.vocab_size = len(tokens)
        self._ids = {t: i for i, t in enumerate(tokens)}

    def encode(self, text: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"encode takes a str, got {type(text).__name__}")
        ids = []
        for word in text.split():
            if word not in self._ids:
                raise ValueError(f"{word!r} is not a token of this vocabulary of {self.vocab_size} "
                                 f"(e.g. {', '.join(self.tokens[:6])}, …); write tokens separated by spaces")
            ids.append(self._ids[word])
        return ids

    def decode(self, ids: Sequence[int]) -> str:
        return " ".join(self.token_strings(ids))

    def token_strings(self, ids: Sequence[int]) -> list[str]:
        return [self.tokens[int(i)] for i in ids]

    def to_json(self) -> str:
        return json.dumps({"kind": self.kind, "tokens": list(self.tokens)})

    @classmethod
    def from_json(cls, text: str) -> "VocabularyTokenizer":
        return cls(json.loads(text)["tokens"])


def task_vocabulary(task) -> Optional[VocabularyTokenizer]:
    """The tokenizer of a task that names its tokens (a ``vocab`` of token names), else None."""
    vocab = getattr(task, "vocab", None)
    return None if vocab is None else VocabularyTokenizer(vocab)
