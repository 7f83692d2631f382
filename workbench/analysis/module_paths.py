"""Modules of any torch model (or an nnsight wrapper of one) by their dotted path, e.g. ``"model.layers.3.mlp"``."""

from __future__ import annotations


def module_at(root, path: str):
    """The module at dotted ``path`` under ``root`` (digits index into lists); ``ValueError`` naming the part
    that failed."""
    mod = root
    for part in path.split("."):
        try:
            mod = mod[int(part)] if part.isdigit() else getattr(mod, part)
        except (AttributeError, IndexError, TypeError):
            raise ValueError(f"the model has no module {path!r} (failed at {part!r}); print the model to see "
                             "its module names") from None
    return mod
