"""English text that is on every machine without a download, split into train and validation documents.

Corpora (``load_corpus(name)``):

  ``python-topics``  the topic pages of Python's language reference, ``pydoc_data.topics`` — the text
                     ``help("if")`` shows. It ships with CPython (nothing to install); 79 documents,
                     about 465,000 characters of English technical prose with code examples on
                     Python 3.11. Licence: Python Software Foundation License 2.0 (the Python
                     documentation's licence; its code examples are also Zero-Clause BSD).
  ``file:PATH``      your own UTF-8 text: a ``.txt`` file (one document) or a folder of ``*.txt``
                     files (one document each, sorted by name).

The split is by whole documents, so no passage is in both: documents are ordered by the SHA-256 of
their title and taken into validation until it holds ``val_fraction`` of the characters.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

CORPORA = ("python-topics", "file:PATH")


@dataclass(frozen=True)
class Document:
    title: str
    text: str


def load_corpus(name: str = "python-topics") -> tuple[Document, ...]:
    """The documents of corpus ``name`` (see the module docstring), in a fixed order."""
    if name == "python-topics":
        from pydoc_data.topics import topics

        return tuple(Document(k, topics[k]) for k in sorted(topics))
    if isinstance(name, str) and name.startswith("file:"):
        path = Path(name[5:])
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(path.glob("*.txt"))
            if not files:
                raise ValueError(f"the folder {path} has no *.txt files")
        else:
            raise ValueError(f"corpus {name!r}: no such file or folder {path}")
        return tuple(Document(f.name, f.read_text(encoding="utf-8")) for f in files)
    raise ValueError(f"unknown corpus {name!r}; choose one of {CORPORA}")


def split_documents(docs: tuple[Document, ...], val_fraction: float = 0.1
                    ) -> tuple[tuple[Document, ...], tuple[Document, ...]]:
    """(train, validation): whole documents, ordered by SHA-256 of the title, validation first until it
    holds ``val_fraction`` of all characters. A one-document corpus is split inside its text instead
    (the last ``val_fraction`` of it is validation)."""
    if not 0 < val_fraction < 1:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction!r}")
    if not docs:
        raise ValueError("the corpus has no documents")
    if len(docs) == 1:
        text = docs[0].text
        cut = int(len(text) * (1 - val_fraction))
        return (Document(docs[0].title + " [train]", text[:cut]),), (Document(docs[0].title + " [val]", text[cut:]),)
    order = sorted(docs, key=lambda d: hashlib.sha256(d.title.encode()).hexdigest())
    total = sum(len(d.text) for d in docs)
    val, size = [], 0
    for d in order:
        if size >= val_fraction * total or len(val) == len(docs) - 1:
            break
        val.append(d)
        size += len(d.text)
    chosen = {d.title for d in val}
    return tuple(d for d in docs if d.title not in chosen), tuple(d for d in docs if d.title in chosen)
