"""The source checkpoint's tensors, each taken once by the converter; what is left over is an error."""

from __future__ import annotations

from typing import Iterable

import torch


class Tensors:
    def __init__(self, tensors: dict[str, torch.Tensor], where: str):
        self._left = dict(tensors)
        self.where = where

    def __contains__(self, name: str) -> bool:
        return name in self._left

    def has_prefix(self, prefix: str) -> bool:
        """Whether any untaken tensor's name starts with ``prefix``."""
        return any(n.startswith(prefix) for n in self._left)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of ``name`` (still untaken), for a tensor whose shape the config does not fix."""
        return tuple(self._left[name].shape)

    def take(self, name: str, shape: Iterable[int]) -> torch.Tensor:
        """Remove and return ``name``, checking its shape; a missing or mis-shaped tensor raises ValueError."""
        if name not in self._left:
            raise ValueError(f"{self.where} has no tensor {name!r}, which its config.json implies")
        t = self._left.pop(name)
        if tuple(t.shape) != tuple(shape):
            raise ValueError(f"{self.where}: tensor {name!r} has shape {tuple(t.shape)}, its config.json implies "
                             f"{tuple(shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{self.where}: tensor {name!r} has dtype {t.dtype}, expected floating point")
        return t

    def drop(self, name: str) -> None:
        """Forget ``name`` if present (a duplicate, e.g. a tied lm_head saved anyway)."""
        self._left.pop(name, None)

    def drop_prefix(self, prefix: str) -> int:
        """Forget every tensor whose name starts with ``prefix`` (a part of the checkpoint workbench does not
        open, e.g. a vision tower; the converter says why); how many were dropped."""
        names = [n for n in self._left if n.startswith(prefix)]
        for n in names:
            del self._left[n]
        return len(names)

    def check_all_taken(self) -> None:
        if self._left:
            names = sorted(self._left)
            raise ValueError(f"{self.where} has tensors workbench does not know how to place: {names[:8]}"
                             + (f" and {len(names) - 8} more" if len(names) > 8 else "")
                             + "; their config.json options are not supported (see docs/pretrained.md)")
