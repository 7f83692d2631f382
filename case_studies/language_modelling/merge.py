"""python -m case_studies.language_modelling.merge OUT SRC [SRC ...]

Joins the runs of the ``results.json`` in each SRC folder (parts made with ``--part I/N --out SRC`` or
``--only NAME ... --out SRC``; a part still running has its runs so far in ``SRC/partial/results.json``,
which is read when ``SRC/results.json`` is absent) into ``OUT/results.json``, in the order of
``config.FULL``, replacing runs of the same name. Refuses runs of another protocol (``--quick``).
``OUT/results.json`` records each part's command, wall time and when it was written under ``parts``; its own
``wall_seconds`` is the span from the first part's start to the last part's end (the parts ran side by
side), ``train_cpu_seconds`` the sum over the runs; ``command`` is the merge command.
Then ``python -m case_studies.language_modelling --replot --out OUT`` redraws the figures and tables.md.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from .. import _report
from .config import FULL, Study


def read_part(folder: Path) -> dict:
    """A part's results: ``results.json``, or the runs so far in ``partial/results.json``."""
    for path in (folder / "results.json", folder / "partial" / "results.json"):
        if path.is_file():
            return dict(json.loads(path.read_text()), source=str(path))
    raise ValueError(f"{folder} has neither results.json nor partial/results.json")


def span_seconds(parts: list[dict]) -> float:
    """From the earliest start (``written`` − ``wall_seconds``) to the latest ``written`` of ``parts``."""
    ends = [time.mktime(time.strptime(p["written"], "%Y-%m-%d %H:%M:%S")) for p in parts]
    return max(ends) - min(e - p["wall_seconds"] for e, p in zip(ends, parts))


def merge(parts: list[dict]) -> dict:
    """The results of the full study from its ``parts`` (results dicts), runs ordered as ``FULL``."""
    order = {r.name: i for i, r in enumerate(FULL.runs)}
    runs: dict[str, dict] = {}
    for part in parts:
        names = [r["name"] for r in part["runs"]]
        unknown = [n for n in names if n not in order]
        if unknown:
            raise ValueError(f"runs {unknown} are not in config.FULL; merge only runs of the full study")
        if part.get("quick") or Study.from_dict(part["study"]).protocol != FULL.protocol:
            raise ValueError(f"runs {names} were not made with the full study's protocol (--quick?)")
        runs.update({r["name"]: r for r in part["runs"]})
    return {"quick": False, "study": FULL.to_dict(),
            "parts": [{"command": p["command"], "wall_seconds": p["wall_seconds"], "cpu_seconds": p.get("cpu_seconds"),
                       "written": p["written"], "source": p["source"], "runs": [r["name"] for r in p["runs"]]}
                      for p in parts],
            "train_cpu_seconds": round(sum(r["train_cpu_seconds"] for r in runs.values()), 1),
            "runs": sorted(runs.values(), key=lambda r: order[r["name"]])}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit(__doc__)
    out, sources = Path(args[0]), [Path(a) for a in args[1:]]
    parts = [read_part(s) for s in sources]
    merged = merge(parts)
    command = "python -m case_studies.language_modelling.merge " + " ".join(args)
    _report.write_results(_report.prepare_output(out), merged, command, span_seconds(parts), compact_arrays=True)
    print(f"{out}/results.json: {len(merged['runs'])} of {len(FULL.runs)} runs; now run "
          f"python -m case_studies.language_modelling --replot --out {out}")


if __name__ == "__main__":
    main()
