"""One strict reading of config dataclasses from JSON-like dicts, shared by every config class."""

from __future__ import annotations

import dataclasses
from typing import Any


def check_keys(cls: type, data: Any) -> dict[str, Any]:
    """``data`` as a dict of ``cls``'s fields; a non-dict or any unknown key raises ``ValueError`` naming
    the class, the unknown keys and the known ones."""
    if not isinstance(data, dict):
        raise ValueError(f"a {cls.__name__} must be a JSON object, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} keys {unknown}; known keys are {sorted(known)}")
    return dict(data)
