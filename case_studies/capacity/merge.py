"""python -m case_studies.capacity.merge OUT SRC [SRC ...]

Adds the runs of the ``results.json`` in each SRC folder (made with ``--only NAME ... --out SRC``) to the
``results.json`` in OUT, replacing runs of the same name, in the order of ``config.FULL``. What OUT's file
says about how it was made (command, wall time, machine, date) stays; each SRC's command, wall time and
run names are appended to ``added_runs``. Then ``python -m case_studies.capacity --replot --out OUT``
redraws the figures and tables.md.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .. import _report
from .config import FULL


def merge(base: dict, extra: list[dict]) -> dict:
    """``base`` with the runs of each of ``extra`` (results dicts) added or replaced by name, ordered as FULL."""
    order = {r.name: i for i, r in enumerate(FULL.runs)}
    runs = {r["name"]: r for r in base["runs"]}
    added = list(base.get("added_runs", []))
    for results in extra:
        names = [r["name"] for r in results["runs"]]
        unknown = [n for n in names if n not in order]
        if unknown:
            raise ValueError(f"runs {unknown} are not in config.FULL; merge only runs of the full study")
        if results.get("quick") or results["study"]["train"] != FULL.to_dict()["train"]:
            raise ValueError(f"runs {names} were not made with the full study's protocol (--quick?)")
        runs.update({r["name"]: r for r in results["runs"]})
        added.append({"command": results["command"], "wall_seconds": results["wall_seconds"],
                      "train_cpu_seconds": results["train_cpu_seconds"], "written": results["written"],
                      "runs": names})
    merged = dict(base, study=FULL.to_dict(), added_runs=added)
    merged["runs"] = sorted(runs.values(), key=lambda r: order.get(r["name"], len(order)))
    return merged


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) < 2:
        raise SystemExit(__doc__)
    out, sources = Path(args[0]), [Path(a) for a in args[1:]]
    base = json.loads((out / "results.json").read_text())
    merged = merge(base, [json.loads((s / "results.json").read_text()) for s in sources])
    _report.write_results(out, merged, merged["command"], merged["wall_seconds"])  # merged's own fields win
    print(f"{out}/results.json: {len(merged['runs'])} runs; now run python -m case_studies.capacity --replot "
          f"--out {out}")


if __name__ == "__main__":
    main()
