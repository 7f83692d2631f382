"""Atomic file writes: the one place every results file, recipe, history, config and checkpoint is written.

A file is written to a temporary file in the same directory, flushed and fsync'd, then put in place with
``os.replace`` (atomic on POSIX and Windows within one file system), so a reader — or a run restarted
after a crash — sees either the old file or the new one, never half of one.

    write_text(path, text)                    # results.json, tables.md, recipe.json, …
    write_json(path, data, indent=2)          # json.dumps(data) + "\\n"
    with replacing(path) as tmp: f(tmp)       # any writer that takes a path (safetensors, plotly, torch.save)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional, Union

PathLike = Union[str, Path]


def _fsync_dir(directory: Path) -> None:
    """Make a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: PathLike, fsync: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block ends without error the temporary file is
    fsync'd and renamed over ``path``; on error it is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)  # keeps the extension
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync:
        _fsync_dir(path.parent)


def write_bytes(path: PathLike, data: bytes, fsync: bool = True) -> Path:
    with replacing(path, fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text(path: PathLike, text: str, encoding: str = "utf-8", fsync: bool = True) -> Path:
    """Write ``text`` to ``path`` atomically (see the module docstring)."""
    return write_bytes(path, text.encode(encoding), fsync)


def write_json(path: PathLike, data: Any, indent: Optional[int] = None, fsync: bool = True) -> Path:
    """``json.dumps(data, indent=indent) + "\\n"`` written atomically."""
    return write_text(path, json.dumps(data, indent=indent) + "\n", fsync=fsync)
