"""Run and clean the notebooks in ``notebooks/``: headless execution (what the tests do) and output stripping.

    python -m workbench.cli.notebooks run              # execute every notebook with WORKBENCH_QUICK=1
    python -m workbench.cli.notebooks run tour --full  # one notebook, full settings
    python -m workbench.cli.notebooks run --save DIR   # also write the executed copies (with outputs) to DIR
    python -m workbench.cli.notebooks strip            # remove outputs in place (notebooks are committed clean)

A notebook reads ``os.environ.get("WORKBENCH_QUICK") == "1"`` to shrink its work. Needs the dev extra
(``pip install -e ".[dev]"``: nbclient, nbformat, ipykernel).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Optional, Sequence

from ..paths import PACKAGE_DIR

NOTEBOOKS_DIR = PACKAGE_DIR.parent / "notebooks"
QUICK_ENV = "WORKBENCH_QUICK"


def _nb_modules():
    try:
        import nbclient
        import nbformat
    except ImportError as e:
        raise ImportError(f"running notebooks needs nbclient, nbformat and ipykernel ({e}); "
                          "install them with: pip install -e \".[dev]\"") from None
    return nbclient, nbformat


def notebook_paths(directory: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Every ``*.ipynb`` in ``directory`` (checkpoint copies excluded), sorted by name."""
    return sorted(p for p in Path(directory).glob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)


def execute_notebook(path: Path, quick: bool = True, timeout: int = 600, kernel_name: str = "python3"):
    """Execute ``path`` top to bottom in a fresh kernel whose working directory is the notebook's folder.

    Returns the executed notebook (the file is not changed). A failing cell raises
    ``nbclient.exceptions.CellExecutionError`` with the cell's traceback; ``timeout`` is per cell (s).
    """
    nbclient, nbformat = _nb_modules()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no notebook at {path}")
    nb = nbformat.read(path, as_version=4)
    previous = os.environ.get(QUICK_ENV)
    os.environ[QUICK_ENV] = "1" if quick else "0"  # the kernel inherits this process's environment
    try:
        client = nbclient.NotebookClient(nb, timeout=timeout, kernel_name=kernel_name,
                                         resources={"metadata": {"path": str(path.parent)}})
        client.execute()
    finally:
        if previous is None:
            os.environ.pop(QUICK_ENV, None)
        else:
            os.environ[QUICK_ENV] = previous
    return nb


def has_outputs(path: Path) -> bool:
    """Whether any code cell of the notebook holds outputs or an execution count."""
    _, nbformat = _nb_modules()
    nb = nbformat.read(path, as_version=4)
    return any(c.get("outputs") or c.get("execution_count") is not None for c in nb.cells if c.cell_type == "code")


def strip_outputs(path: Path) -> bool:
    """Remove outputs and execution counts in place; returns whether the file changed."""
    _, nbformat = _nb_modules()
    if not has_outputs(path):
        return False
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)
    return True


def _select(names: Sequence[str]) -> list[Path]:
    available = {p.stem: p for p in notebook_paths()}
    if not names:
        return list(available.values())
    unknown = [n for n in names if Path(n).stem not in available]
    if unknown:
        raise SystemExit(f"unknown notebook(s) {unknown}; available: {sorted(available)}")
    return [available[Path(n).stem] for n in names]


def main(argv: Optional[Sequence[str]] = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks (quick settings unless --full)")
    run.add_argument("names", nargs="*", help="notebook names (default: all)")
    run.add_argument("--full", action="store_true", help="full settings instead of WORKBENCH_QUICK=1")
    run.add_argument("--save", type=Path, help="write the executed notebooks (with outputs) to this folder")
    strip = sub.add_parser("strip", help="remove outputs in place")
    strip.add_argument("names", nargs="*", help="notebook names (default: all)")
    args = ap.parse_args(argv)
    if args.command == "strip":
        for path in _select(args.names):
            print(f"{path.name}: {'stripped' if strip_outputs(path) else 'already clean'}")
        return
    _, nbformat = _nb_modules()
    for path in _select(args.names):
        nb = execute_notebook(path, quick=not args.full)
        print(f"{path.name}: ran {sum(c.cell_type == 'code' for c in nb.cells)} code cells")
        if args.save:
            args.save.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, args.save / path.name)


if __name__ == "__main__":
    main()
