"""What every case study writes: ``results.json`` (with the command and the wall time) and figures.

    out = prepare_output(Path("case_studies/capacity/results"))
    write_figure(fig, out, "loss_vs_S")        # loss_vs_S.html (self-contained) and loss_vs_S.png
    write_results(out, results, command, seconds)
"""

from __future__ import annotations

import contextlib
import json
import math
import platform
import re
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Optional

import pandas as pd
import plotly.graph_objects as go
import torch

from workbench import atomic


def prepare_output(directory: Path) -> Path:
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"output {directory} is a file; pass a directory")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def command_line(module: str, argv: Optional[list[str]]) -> str:
    """The command that reproduces this run, as printed next to its numbers."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join(["python", "-m", module, *map(shlex.quote, args)])


def write_figure(fig: go.Figure, directory: Path, name: str, png: bool = True) -> list[Path]:
    """Write ``name.html`` (plotly.js inlined, opens offline) and, if ``png``, ``name.png`` via kaleido."""
    html = Path(directory) / f"{name}.html"
    with atomic.replacing(html) as tmp:
        fig.write_html(tmp, include_plotlyjs=True, full_html=True)
    written = [html]
    if png:
        path = Path(directory) / f"{name}.png"
        try:
            with atomic.replacing(path) as tmp:
                fig.write_image(tmp, width=900, height=550, scale=1)
        except Exception as e:  # kaleido missing or no Chrome/Chromium for it to drive
            raise RuntimeError(
                f"could not write {path} ({type(e).__name__}: {e}); PNG export needs the 'kaleido' package and a "
                "Chromium (Debian: apt-get install chromium); pass --no-png to write HTML only"
            ) from e
        written.append(path)
    return written


def write_figures(figs: dict[str, go.Figure], directory: Path, png: bool = True) -> list[Path]:
    """:func:`write_figure` for several figures (``name → figure``), exporting all PNGs in one kaleido
    session (one browser start rather than one per figure). A figure's own layout width/height, if set,
    replace the default 900×550."""
    import plotly.io as pio

    written = []
    for name, fig in figs.items():
        written += write_figure(fig, directory, name, png=False)
    if png and figs:
        paths = [Path(directory) / f"{name}.png" for name in figs]
        sizes = [dict(width=f.layout.width or 900, height=f.layout.height or 550, scale=1) for f in figs.values()]
        try:
            with contextlib.ExitStack() as stack:  # each PNG written beside its name, renamed into place
                tmps = [stack.enter_context(atomic.replacing(p)) for p in paths]
                pio.write_images(list(figs.values()), tmps, width=[s["width"] for s in sizes],
                                 height=[s["height"] for s in sizes], scale=1)
        except Exception as e:  # kaleido missing or no Chrome/Chromium for it to drive
            raise RuntimeError(
                f"could not write {paths[0].parent}/*.png ({type(e).__name__}: {e}); PNG export needs the 'kaleido' "
                "package and a Chromium (Debian: apt-get install chromium); pass --no-png to write HTML only"
            ) from e
        written += paths
    return written


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """A DataFrame as JSON-ready rows (NaN → None, numpy scalars → Python)."""
    out = []
    for row in df.to_dict(orient="records"):
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else
                        v.item() if hasattr(v, "item") else v) for k, v in row.items()})
    return out


def progress_status(done: int, what: str, left: list[str]) -> str:
    """The status line under a resumable part's title: ``done`` ``what`` (e.g. "runs finished") and the names
    ``left``, or that all are done."""
    if left:
        return (f"**Incomplete: {done} {what}, {len(left)} left** ({', '.join(left)}); the same command "
                "continues.")
    return f"All {done} {what}."


def results_json(payload: dict[str, Any], compact_arrays: bool = False) -> str:
    """``payload`` as indented JSON; with ``compact_arrays`` every array of plain values (numbers,
    strings, null) sits on one line, which keeps long columns of numbers small and readable."""
    text = json.dumps(payload, indent=2)
    if compact_arrays:
        flat = re.compile(r"\[\n\s*([^\[\]{}]*?)\n\s*\]")
        text = flat.sub(lambda m: "[" + " ".join(line.strip() for line in m.group(1).split("\n")) + "]", text)
        if json.loads(text) != json.loads(json.dumps(payload)):  # NaN-free payloads round-trip exactly
            raise AssertionError("compacting the arrays changed the JSON; write without compact_arrays")
    return text + "\n"


def write_results(directory: Path, results: dict[str, Any], command: str, seconds: float,
                  compact_arrays: bool = False) -> Path:
    """``results.json``: the results plus how they were made (command, wall time, machine, torch);
    ``compact_arrays``: see :func:`results_json`."""
    payload = {
        "command": command,
        "wall_seconds": round(seconds, 1),
        "machine": {"python": platform.python_version(), "torch": torch.__version__,
                    "threads": torch.get_num_threads(), "processor": platform.machine()},
        "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        **results,
    }
    path = Path(directory) / "results.json"
    atomic.write_text(path, results_json(payload, compact_arrays))
    return path
