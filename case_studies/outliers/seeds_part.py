"""Part "seeds" (issue 18): the main grid at fresh seeds, with seed 0 read from the main study's results.

:func:`execute` trains and measures one :class:`~.config.ControlRun` exactly as the main study measures its runs
(``run.execute`` with its default quantisations, no matmul-input trace); :func:`seed0_entries` reads the
main study's committed runs after checking that they are the study's grid at the same protocol;
:func:`arm_stats`, :func:`contrasts` and :func:`tables` are pure functions of the entries (seed 0 + fresh).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .. import _report
from . import seed_stats
from .config import BLOCKS, ControlRun, Protocol, SeedsStudy, Study
from .run import execute_control_run
from .tables import BLOCK_NAME, OPT_NAME

METRICS = {  # column → (label, how it is read from an entry): what the main table reports, per run
    "val_ppl": ("val ppl (float)", lambda e: e["val_ppl"]),
    "kurt_resid": ("Kurt resid_post", lambda e: e["final_kurtosis"]["resid_post"]),
    "kurt_mlp_hidden": ("Kurt mlp hidden", lambda e: e["final_kurtosis"]["mlp_hidden"]),
    "w8a8_tensor_ppl": ("W8A8 per-tensor ppl", lambda e: e["w8a8"]["per_tensor"]["ppl_w8a8"]),
    "w8a8_tensor": ("W8A8 per-tensor ratio", lambda e: e["w8a8"]["per_tensor"]["ppl_ratio"]),
    "w8a8_token": ("W8A8 per-token ratio", lambda e: e["w8a8"]["per_token"]["ppl_ratio"]),
    "w8a4_tensor": ("W8A4 per-tensor ratio", lambda e: e["w8a8"]["per_tensor_a4"]["ppl_ratio"]),
}
CONTRAST_METRICS = ("val_ppl", "kurt_resid", "kurt_mlp_hidden", "w8a8_tensor")


def execute(run: ControlRun, protocol: Protocol, checkpoints: Path, progress: bool = True) -> dict[str, Any]:
    return execute_control_run(run, protocol, checkpoints, progress)  # the main study's default measurements


def seed0_entries(study: SeedsStudy, results: dict[str, Any], source: str = "") -> list[dict[str, Any]]:
    """The main study's ``results`` as seed-0 entries of ``study`` (each gains ``control``, ``arm``, ``source`` and
    ``run_seconds`` = its ``train_seconds``, the only time it recorded); ValueError unless ``results`` is a full
    (not quick, unless ``study`` is) run of ``study.main`` — the same protocol at seed 0 and the same runs."""
    want = study.main
    where = f" ({source})" if source else ""
    try:
        got = Study.from_dict(results["study"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"the seed-0 results{where} hold no readable outliers study: {err}") from err
    if got.protocol != want.protocol:
        diff = {k: (v, want.protocol.to_dict()[k]) for k, v in got.protocol.to_dict().items()
                if want.protocol.to_dict().get(k) != v}
        raise ValueError(f"the seed-0 results{where} were run at another protocol (theirs, ours): {diff}; "
                         "rerun the main study with this protocol first")
    if got.protocol.seed != 0:
        raise ValueError(f"the seed-0 results{where} are at seed {got.protocol.seed}, not 0")
    if set(got.runs) != set(want.runs):
        raise ValueError(f"the seed-0 results{where} ran {[r.name for r in got.runs]}, the seeds part needs "
                         f"{[r.name for r in want.runs]}")
    done = {e["name"]: e for e in results.get("runs", [])}
    missing = [r.name for r in want.runs if r.name not in done]
    if missing:
        raise ValueError(f"the seed-0 results{where} lack the finished runs {missing}")
    lr = want.protocol.train.lr
    return [{**done[r.name], "control": ControlRun(r.mixer, r.block, r.optimizer, lr, 0).to_dict(), "arm": r.name,
             "source": source, "run_seconds": done[r.name]["train_seconds"]} for r in want.runs]


def load_seed0(study: SeedsStudy) -> list[dict[str, Any]]:
    path = Path(study.seed0)
    if not path.is_file():
        raise ValueError(f"no seed-0 results at {path}: run the main study first "
                         f"(python -m case_studies.outliers{' --quick' if 'quick' in str(path) else ''})")
    return seed0_entries(study, json.loads(path.read_text()), str(path))


def _arms(runs: list[dict[str, Any]]):
    return tuple(dict.fromkeys(ControlRun.from_dict(e["control"]).arm for e in runs))


def pairs(runs: list[dict[str, Any]]) -> tuple[tuple[str, str, str], ...]:
    """OP − pre-norm (per mixer × optimiser), SOAP − AdamW (per mixer × block), delta − softmax (per block ×
    optimiser), among the arms that ran."""
    arms = _arms(runs)
    return (seed_stats.factor_contrasts(arms, "block", BLOCKS[1], BLOCKS[0], "OP − pre-norm")
            + seed_stats.factor_contrasts(arms, "optimizer", "soap", "adamw", "SOAP − AdamW")
            + seed_stats.factor_contrasts(arms, "mixer", "delta", "softmax", "delta − softmax"))


def arm_stats(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """Per arm (main grid order), over every seed it has: n, seeds, and mean, lo, hi of :data:`METRICS`."""
    return seed_stats.arm_stats(seed_stats.frame(runs, METRICS), METRICS, [a.name for a in _arms(runs)])


def contrasts(runs: list[dict[str, Any]]) -> pd.DataFrame:
    return seed_stats.contrasts(seed_stats.frame(runs, METRICS), pairs(runs), CONTRAST_METRICS)


def per_seed_table(runs: list[dict[str, Any]]) -> str:
    df = seed_stats.frame(runs, METRICS)
    keys = [("val_ppl", ".2f"), ("kurt_resid", ".2f"), ("kurt_mlp_hidden", ".2f"), ("w8a8_tensor", ".3f"),
            ("w8a8_token", ".3f"), ("w8a4_tensor", ".3f")]
    rows = ["| arm | seed | " + " | ".join(METRICS[k][0] for k, _ in keys) + " | time |",
            "|---|---|" + "---|" * (len(keys) + 1)]
    for r in df.sort_values(["seed"], kind="stable").itertuples():
        rows.append(f"| {r.arm} | {r.seed} | " + " | ".join(format(getattr(r, k), f) for k, f in keys)
                    + f" | {r.run_seconds / 60:.1f} min{' (training)' if r.seed == 0 else ''} |")
    return "\n".join(rows)


def arm_table(runs: list[dict[str, Any]]) -> str:
    st = arm_stats(runs)
    keys = [("val_ppl", ".2f"), ("kurt_resid", ".2f"), ("kurt_mlp_hidden", ".2f"), ("w8a8_tensor_ppl", ".2f"),
            ("w8a8_tensor", ".3f"), ("w8a8_token", ".3f"), ("w8a4_tensor", ".3f")]
    rows = ["| mixer | block | optimiser | n | seeds | " + " | ".join(METRICS[k][0] for k, _ in keys) + " |",
            "|---|---|---|---|---|" + "---|" * len(keys)]
    for r in st.to_dict("records"):
        rows.append(f"| {r['mixer']} | {BLOCK_NAME[r['block']]} | {OPT_NAME[r['optimizer']]} | {r['n']} | {r['seeds']} | "
                    + " | ".join(seed_stats.cell(r, k, f) for k, f in keys) + " |")
    return "\n".join(rows)


def contrast_table(runs: list[dict[str, Any]]) -> str:
    c = contrasts(runs)
    if c.empty:
        return "(no two arms share two seeds yet)"
    rows = ["| contrast (a − b, per seed) | metric | n | mean | 95 % t interval | paired t p |",
            "|---|---|---|---|---|---|"]
    for r in c.itertuples():
        fmt = "+.3f" if r.metric == "w8a8_tensor" else "+.2f"
        rows.append(f"| {r.contrast} | {METRICS[r.metric][0]} | {r.n} | {format(r.mean, fmt)} "
                    f"| [{format(r.lo, fmt)}, {format(r.hi, fmt)}] | {r.p:.3f} |")
    return "\n".join(rows)


def tables(results: dict[str, Any]) -> str:
    runs, left = results["runs"], results.get("left", [])
    fresh = sum(1 for e in runs if e["control"]["seed"] != 0)
    status = _report.progress_status(fresh, "fresh runs finished", left)
    return (f"## Seeds: the main grid at seeds 0 (from {results['study']['seed0']}), 1 and 2\n\n{status}\n\n"
            f"### Per arm over seeds (mean [95 % t interval])\n\n{arm_table(runs)}\n\n"
            f"### Paired contrasts over seeds (a − b per seed; paired t)\n\n{contrast_table(runs)}\n\n"
            f"### Every run\n\n{per_seed_table(runs)}\n")


def figure(runs: list[dict[str, Any]]):
    """Validation perplexity per arm, one marker per seed, with the mean's 95 % t interval."""
    import plotly.graph_objects as go

    df, st = seed_stats.frame(runs, METRICS), arm_stats(runs)
    fig = go.Figure()
    fig.add_scatter(x=df["arm"], y=df["val_ppl"], mode="markers", name="one seed",
                    text=[f"seed {s}" for s in df["seed"]], marker=dict(size=9, symbol="circle-open"))
    fig.add_scatter(x=st["arm"], y=st["val_ppl"], mode="markers", name="mean, 95 % t interval",
                    error_y=dict(type="data", symmetric=False, array=st["val_ppl_hi"] - st["val_ppl"],
                                 arrayminus=st["val_ppl"] - st["val_ppl_lo"]), marker=dict(size=12, symbol="line-ew-open"))
    fig.update_layout(title="Main grid over seeds: validation perplexity (float)", xaxis_title="arm",
                      yaxis_title="validation perplexity", width=900, height=500)
    return fig
