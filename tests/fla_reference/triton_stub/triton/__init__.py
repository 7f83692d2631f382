"""A stand-in for ``triton`` that only satisfies imports, for running flash-linear-attention on a CPU.

``import fla.models`` / ``fla.layers`` imports triton (≈1 GB installed) and decorates its kernels at import
time. This module makes those imports and decorators succeed; any kernel launched raises RuntimeError, so a
test that forgets to swap one of fla's Triton functions for a plain-torch version fails loudly instead of
running something else. ``triton.runtime.driver.active`` raises, which is how fla notices that there is
no GPU (fla/utils/hardware.py ``get_available_device``) and falls back to the CPU.

It is put on ``sys.path`` only in the subprocess that builds the fla model (tests/fla_reference/run_fla.py),
never in the test process: with fla and triton importable, transformers dispatches Qwen3-Next's delta rule
to fla. Written for this repository (not copied from triton).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import inspect
import sys
import types

__version__ = "3.4.0"

# attribute names that fla imports as submodules (``from triton.runtime import driver`` and the like)
_SUBMODULES = {"runtime", "language", "experimental", "backends", "driver", "extra", "math", "libdevice",
               "autotuner", "gluon", "nvidia", "ampere", "cann", "extension", "compiler", "ascend"}


class _Base:
    """Base for the stand-in classes (``triton.Config``, ``Autotuner``, ``JITFunction``...): takes anything."""

    def __init__(self, *args, **kwargs):
        pass

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any(f"{type(self).__name__}.{name}")


class _Any:
    """Any other attribute: callable (a decorator passes the function through as a :class:`_Kernel`),
    subscriptable, usable as a base class."""

    def __init__(self, name: str = "triton"):
        self._name = name

    def __call__(self, *args, **kwargs):
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return _Kernel(args[0])
        return _Any(self._name + "()")

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Any(f"{self._name}.{name}")

    def __getitem__(self, key):
        return _Any(self._name + "[]")

    def __mro_entries__(self, bases):
        return (_Base,)

    def __repr__(self):
        return f"<triton stub {self._name}>"


class _Kernel(_Any):
    """A decorated kernel: knows its argument names (fla's autotuner reads them); launching it raises."""

    def __init__(self, fn):
        super().__init__(getattr(fn, "__name__", "kernel"))
        self.fn = fn
        self.__name__ = self._name
        try:
            self.arg_names = list(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            self.arg_names = []

    def __call__(self, *args, **kwargs):
        raise RuntimeError(f"triton stub: the Triton kernel {self._name} cannot run here; swap the fla function "
                           "that launches it for a plain-torch version (tests/fla_reference/run_fla.py)")

    def __getitem__(self, grid):
        return self


class _NoDriver:
    def __getattr__(self, name):
        raise RuntimeError("triton stub: no GPU driver")


class _StubModule(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        if name in _SUBMODULES:
            return importlib.import_module(f"{self.__name__}.{name}")
        if name == "active" and self.__name__ == "triton.runtime.driver":
            return _NoDriver()
        if name.lstrip("_")[:1].isupper():  # a class: usable in isinstance() and as a base class
            value = type(name, (_Base,), {"__module__": self.__name__})
        else:
            value = _Any(f"{self.__name__}.{name}")
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Every ``triton.<anything>`` is a stub package."""

    def find_spec(self, fullname, path, target=None):
        if fullname.startswith("triton."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        parent, _, child = module.__name__.rpartition(".")
        setattr(sys.modules[parent], child, module)


sys.meta_path.insert(0, _Finder())
sys.modules[__name__].__class__ = _StubModule
