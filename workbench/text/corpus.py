"""English text that is on every machine without a download, split into train and validation documents.

Corpora (``load_corpus(name)``):

  ``python-topics``  the topic pages of Python's language reference, ``pydoc_data.topics`` — the text
                     ``help("if")`` shows. It ships with CPython (nothing to install); 79 documents,
                     about 465,000 characters of English technical prose with code examples on
                     Python 3.11. Licence: Python Software Foundation License 2.0 (the Python
                     documentation's licence; its code examples are also Zero-Clause BSD).
  ``python-docstrings``  the docstrings of Python's standard library — of every module, class and function
                     in its ``.py`` sources, read with ``ast`` (nothing is imported), one document per
                     module (titled by its dotted name), the docstrings in source order, separated by blank
                     lines. Test packages, ``idlelib``, ``lib2to3``, ``turtledemo`` and ``site-packages``
                     are left out. About 1.6 million characters (3.5 × ``python-topics``) on Python 3.11;
                     the text changes between Python releases (a study records the version it ran on).
                     Licence: PSF-2.0, the licence of the standard library's sources.
  ``docstrings:NAMES``  the same for installed packages: ``NAMES`` joined by ``+``, each ``stdlib`` or the
                     name of an importable top-level package (found, not imported), e.g.
                     ``docstrings:stdlib+torch`` (about 7 million characters with torch 2.13.0). Its
                     text is that of the installed versions; ``testing`` and ``_vendor`` folders are also
                     left out. Licence: each package's own (torch: BSD-3-Clause).
  ``file:PATH``      your own UTF-8 text: a ``.txt`` file (one document) or a folder of ``*.txt``
                     files (one document each, sorted by name).

The split is by whole documents, so no passage is in both: documents are ordered by the SHA-256 of
their title and taken into validation until it holds ``val_fraction`` of the characters.
"""

from __future__ import annotations

import ast
import hashlib
import sysconfig
from dataclasses import dataclass
from pathlib import Path

CORPORA = ("python-topics", "python-docstrings", "docstrings:NAMES", "file:PATH")

# folders of the standard library whose docstrings are not its prose: tests, the IDLE app, deprecated tools
_SKIP_DOCSTRING_DIRS = frozenset({"test", "tests", "testing", "_vendor", "idlelib", "lib2to3", "turtledemo",
                                  "site-packages"})


@dataclass(frozen=True)
class Document:
    title: str
    text: str


def load_corpus(name: str = "python-topics") -> tuple[Document, ...]:
    """The documents of corpus ``name`` (see the module docstring), in a fixed order."""
    if name == "python-topics":
        from pydoc_data.topics import topics

        return tuple(Document(k, topics[k]) for k in sorted(topics))
    if name == "python-docstrings":
        return docstrings_under()
    if isinstance(name, str) and name.startswith("docstrings:"):
        names = name[len("docstrings:"):].split("+")
        if not all(names) or len(set(names)) != len(names):
            raise ValueError(f"corpus {name!r}: name each package once, joined by '+', e.g. docstrings:stdlib+torch")
        return tuple(d for n in names for d in package_docstrings(n))
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


def package_docstrings(name: str) -> tuple[Document, ...]:
    """The docstrings of ``name`` (``stdlib`` or an installed top-level package) as :func:`docstrings_under`
    reads them; a package's documents are titled by their full dotted module name."""
    if name == "stdlib":
        return docstrings_under()
    import importlib.util

    spec = importlib.util.find_spec(name) if name.isidentifier() else None
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(f"docstrings:{name}: no installed package named {name!r} (stdlib or a top-level package)")
    return docstrings_under(Path(list(spec.submodule_search_locations)[0]), prefix=name)


def docstrings_under(root: Path | None = None, prefix: str = "") -> tuple[Document, ...]:
    """One document per module of the Python sources at ``root`` (default: this Python's standard library, the
    ``python-docstrings`` corpus), its module, class and function docstrings (``ast.get_docstring``, indentation cleaned) in the
    order they appear in the source, joined by blank lines; modules without a docstring, and files that do not
    parse, are left out. Ordered by module name (``prefix`` and a dot before each, for a package)."""
    root = Path(sysconfig.get_paths()["stdlib"] if root is None else root)
    docs = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if _SKIP_DOCSTRING_DIRS.intersection(rel.parts[:-1]) or rel.name.startswith("test_"):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        nodes = [n for n in ast.walk(tree) if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                                               ast.AsyncFunctionDef))]
        nodes.sort(key=lambda n: getattr(n, "lineno", 0))
        texts = [d for d in (ast.get_docstring(n) for n in nodes) if d and d.strip()]
        if texts:
            module = ".".join(([prefix] if prefix else []) + list(rel.with_suffix("").parts))
            docs.append(Document(module.removesuffix(".__init__"), "\n\n".join(texts)))
    if not docs:
        raise ValueError(f"no docstrings found under {root}; is it a Python standard library?")
    return tuple(sorted(docs, key=lambda d: d.title))


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
