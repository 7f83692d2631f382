"""Find and run the case studies of a source checkout: ``python -m case_studies.<name> [--quick] [--out DIR]``.

A case study is a subpackage of ``case_studies/`` with a ``__main__.py`` (names starting with ``_`` are
private). ``workbench case-study NAME`` runs it from the checkout root, so its default output folder
lands inside the checkout; ``--out`` is made absolute first, so it means the folder you typed.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Optional, Sequence

from ..paths import PACKAGE_DIR

CASE_STUDIES_DIR = PACKAGE_DIR.parent / "case_studies"


def available_case_studies(directory: Optional[Path] = None) -> list[str]:
    """Names of the runnable case studies in ``directory`` (default: the checkout's ``case_studies/``)."""
    directory = Path(directory or CASE_STUDIES_DIR)
    if not (directory / "__init__.py").is_file():
        return []
    return sorted(p.name for p in directory.iterdir()
                  if p.is_dir() and not p.name.startswith("_") and (p / "__main__.py").is_file())


def case_study_command(name: str, quick: bool = False, out: Optional[Path] = None, extra: Sequence[str] = (),
                       directory: Optional[Path] = None) -> list[str]:
    """The command line that runs case study ``name``; ValueError naming the available ones if unknown."""
    directory = Path(directory or CASE_STUDIES_DIR)
    names = available_case_studies(directory)
    if not names:
        raise ValueError(f"no case studies found in {directory}: they live in the case_studies/ folder of a source "
                         "checkout of the workbench (pip install -e . from a git clone)")
    if name not in names:
        raise ValueError(f"unknown case study {name!r}; available: {', '.join(names)}")
    cmd = [sys.executable, "-m", f"{directory.name}.{name}"]
    if quick:
        cmd.append("--quick")
    if out is not None:
        cmd += ["--out", str(Path(out).resolve())]
    return cmd + list(extra)


def run_case_study(name: str, quick: bool = False, out: Optional[Path] = None, extra: Sequence[str] = (),
                   directory: Optional[Path] = None) -> int:
    """Run case study ``name`` in a child process from the checkout root; returns its exit code."""
    directory = Path(directory or CASE_STUDIES_DIR)
    cmd = case_study_command(name, quick, out, extra, directory)
    return subprocess.call(cmd, cwd=directory.parent)
