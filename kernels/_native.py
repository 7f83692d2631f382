"""Small native helpers for the kernels: plain C files compiled on first use and loaded through ctypes.

``load(path)`` compiles ``path`` (a C file next to the kernel that uses it) into a shared library in a cache
directory keyed by the source and PyTorch's version, links it against the BLAS that PyTorch already carries
(``libtorch_cpu``'s ``sgemm_``/``strsm_``), and returns the ``ctypes.CDLL``, or None when there is no C
compiler, the build fails, or ``WORKBENCH_NATIVE=0`` is set; callers then take their PyTorch path. Never a
different result: the native and PyTorch paths are tested to agree (tests/test_kernel_native.py).

Why not ``torch.utils.cpp_extension.load_inline``: it compiles against the PyTorch C++ headers, measured at
106 s for a one-function extension on this machine (shared, loaded); a plain C file that needs no headers
builds in about a second, and a call through ctypes costs microseconds, once per kernel call.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Optional

import torch

ENV = "WORKBENCH_NATIVE"  # "0" turns the native helpers off


def cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "workbench" / "native"


def enabled() -> bool:
    return os.environ.get(ENV, "1") != "0"


@lru_cache(maxsize=None)
def _load(path: str) -> Optional[ctypes.CDLL]:
    src = Path(path).read_bytes()
    torch_lib = Path(torch.__file__).parent / "lib"
    key = hashlib.sha256(src + torch.__version__.encode() + str(torch_lib).encode()).hexdigest()[:16]
    target = cache_dir() / f"{Path(path).stem}-{key}.so"
    if not target.exists():
        cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            return None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
                out = Path(tmp) / target.name
                cmd = [cc, "-O3", "-shared", "-fPIC", "-o", str(out), str(path),
                       f"-L{torch_lib}", "-ltorch_cpu", f"-Wl,-rpath,{torch_lib}"]
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise OSError(res.stderr[-2000:])
                os.replace(out, target)  # atomic: concurrent builders each write their own file
        except OSError as e:  # no writable cache, a failed compile or link
            warnings.warn(f"building {Path(path).name} failed; using the PyTorch path\n{e}", RuntimeWarning,
                          stacklevel=3)
            return None
    try:
        return ctypes.CDLL(str(target))
    except OSError as e:  # e.g. a PyTorch built without an exported sgemm_/strsm_
        warnings.warn(f"loading {target.name} failed ({e}); using the PyTorch path", RuntimeWarning, stacklevel=3)
        return None


def load(path: Path) -> Optional[ctypes.CDLL]:
    """The compiled library of the C file ``path``, or None (no compiler, failed build, or ``WORKBENCH_NATIVE=0``)."""
    if not enabled():
        return None
    return _load(str(path))


def ptr(x: torch.Tensor) -> ctypes.c_void_p:
    return ctypes.c_void_p(x.data_ptr())
