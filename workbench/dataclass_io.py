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


def check_int_fields(obj: Any, names: tuple[str, ...], minimum: int = 1) -> None:
    """Each field ``names`` of the dataclass ``obj`` must be an ``int`` (not a bool) ≥ ``minimum`` (1 or 0);
    else ``ValueError`` naming the class, the field and the value."""
    kind = "positive" if minimum == 1 else "non-negative" if minimum == 0 else f"≥ {minimum}"
    for name in names:
        v = getattr(obj, name)
        if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
            raise ValueError(f"{type(obj).__name__}.{name} must be a {kind} int, got {v!r}")


class JsonConfig:
    """``to_dict`` / ``from_dict`` for a config dataclass whose fields are plain JSON values: ``from_dict``
    refuses unknown keys (:func:`check_keys`); the dataclass's ``__post_init__`` checks the values."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any):
        return cls(**check_keys(cls, data))
