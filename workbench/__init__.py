"""Fast-weight interpretability workbench: hooked fast-weight language models and their analysis.

Names are imported lazily, so ``import workbench.kernels`` needs only torch (and jaxtyping).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

_EXPORTS = {
    "ModelConfig": ".config",
    "HookedFastWeightLM": ".model",
    "lm_loss": ".model",
    "save": ".checkpoint",
    "load": ".checkpoint",
    "CheckpointError": ".checkpoint",
    "train": ".training",
    "TrainConfig": ".training",
    "from_pretrained": ".pretrained",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module 'workbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


class _LazyModule(types.ModuleType):
    """Resolve the exported names before ordinary attribute lookup: nnsight mounts a ``save`` method on
    every object, which would otherwise shadow ``workbench.save`` (a module ``__getattr__`` is only
    consulted when ordinary lookup fails)."""

    def __getattribute__(self, name: str) -> Any:
        if name in _EXPORTS:
            return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        return super().__getattribute__(name)


sys.modules[__name__].__class__ = _LazyModule
