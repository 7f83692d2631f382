"""Part "control": {pre-norm, OP} × {AdamW, SOAP} at the configuration the search chose, with a learning-rate
sweep per arm (seed 0) and fresh seeds at each arm's chosen learning rate.

:func:`execute` trains and measures one :class:`~.config.ControlRun`; :func:`chosen_lrs` applies the
declared rule (per arm, the lr of lowest seed-0 validation perplexity; a diverged run counts as infinite);
:func:`arm_stats` (mean over seeds with a 95 % t interval), :func:`contrasts` (paired t over shared seeds;
both from :mod:`.seed_stats`, shared with the part "seeds") and :func:`tables` are pure functions of the
results' ``runs``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import _report
from . import seed_stats
from .config import ControlRun, Protocol
from .run import execute_control_run
from .tables import BLOCK_NAME, OPT_NAME, PAPER

QUANTS = ("per_tensor", "per_token", "per_tensor_a4")
METRICS = {  # column → (label, how it is read from an entry)
    "val_ppl": ("val ppl (float)", lambda e: e["val_ppl"]),
    "kurt_resid": ("Kurt resid_post", lambda e: e["final_kurtosis"]["resid_post"]),
    "kurt_matmul": ("Kurt, largest matmul input", lambda e: max(e["final_matmul_kurtosis"].values())),
    "kurt_attn_in": ("Kurt attn_in", lambda e: e["final_matmul_kurtosis"]["attn_in"]),
    "kurt_mlp_in": ("Kurt mlp_in", lambda e: e["final_matmul_kurtosis"]["mlp_in"]),
    "kurt_mlp_hidden": ("Kurt mlp_hidden", lambda e: e["final_matmul_kurtosis"]["mlp_hidden"]),
    "signal_prop": ("signal prop. resid_post", lambda e: e["final_signal_propagation"]["resid_post"]),
    "w8a8_tensor": ("W8A8 per-tensor ratio", lambda e: e["w8a8"]["per_tensor"]["ppl_ratio"]),
    "w8a8_token": ("W8A8 per-token ratio", lambda e: e["w8a8"]["per_token"]["ppl_ratio"]),
    "w8a4_tensor": ("W8A4 per-tensor ratio", lambda e: e["w8a8"]["per_tensor_a4"]["ppl_ratio"]),
}
ARM_ORDER = ("softmax-prenorm-adamw", "softmax-op-adamw", "softmax-prenorm-soap", "softmax-op-soap")


def execute(run: ControlRun, protocol: Protocol, checkpoints: Path, progress: bool = True) -> dict[str, Any]:
    return execute_control_run(run, protocol, checkpoints, progress, quantisations=QUANTS, matmul_inputs=True)


def frame(runs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per run: arm, mixer, block, optimiser, lr, seed and every metric of :data:`METRICS` (NaN if absent)."""
    return seed_stats.frame(runs, METRICS)


def chosen_lrs(runs: list[dict[str, Any]]) -> dict[str, float]:
    """Per arm with seed-0 runs, the lr of lowest seed-0 validation perplexity among them (NaN or inf — a
    diverged run — loses); stage 2 starts only once every arm's sweep has run."""
    df = frame(runs)
    df = df[df.seed == 0]
    out = {}
    for arm, g in df.groupby("arm"):
        ppl = g["val_ppl"].where(np.isfinite(g["val_ppl"]), math.inf)
        out[arm] = float(g.loc[ppl.idxmin(), "lr"])
    return out


def _at_chosen_lrs(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> pd.DataFrame:
    """The rows of runs at their arm's chosen lr with a seed in ``seeds``."""
    df, lrs = frame(runs), chosen_lrs(runs)
    return df[(df.lr == df.arm.map(lrs)) & df.seed.isin(seeds)]


def arm_stats(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> pd.DataFrame:
    """Per arm, over its runs at its chosen lr with a seed in ``seeds``: n and, per metric, mean, lo, hi
    (95 % t interval; NaN with one seed)."""
    return seed_stats.arm_stats(_at_chosen_lrs(runs, seeds), METRICS, ARM_ORDER)


CONTRASTS = (  # (label, arm a, arm b): a − b per seed
    ("OP − pre-norm, AdamW", "softmax-op-adamw", "softmax-prenorm-adamw"),
    ("OP − pre-norm, SOAP", "softmax-op-soap", "softmax-prenorm-soap"),
    ("SOAP − AdamW, pre-norm", "softmax-prenorm-soap", "softmax-prenorm-adamw"),
    ("SOAP − AdamW, OP", "softmax-op-soap", "softmax-op-adamw"),
)
CONTRAST_METRICS = ("kurt_matmul", "kurt_resid", "w8a8_tensor", "val_ppl")


def contrasts(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> pd.DataFrame:
    """Paired t (over the seeds in ``seeds`` both arms ran, each at its chosen lr) of a − b for
    :data:`CONTRASTS` × :data:`CONTRAST_METRICS`: n, mean, lo, hi, p; rows only where n ≥ 2."""
    return seed_stats.contrasts(_at_chosen_lrs(runs, seeds), CONTRASTS, CONTRAST_METRICS)


_cell = seed_stats.cell


def sweep_table(runs: list[dict[str, Any]], planned: dict[str, int]) -> str:
    """``planned``: arm → the number of seed-0 lrs its sweep has; an arm with fewer finished shows its best
    so far, not its choice."""
    df = frame(runs)
    df = df[df.seed == 0].sort_values(["arm", "lr"])
    lrs = chosen_lrs(runs)
    rows = ["| arm | lr | val ppl | Kurt resid_post | Kurt largest matmul input | signal prop. | W8A8 per-tensor "
            "ratio | W8A8 per-token ratio | W8A4 ratio | run time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for arm in [a for a in ARM_ORDER if a in set(df.arm)]:
        for r in df[df.arm == arm].itertuples():
            done = (df.arm == arm).sum() >= planned.get(arm, 0)
            mark = (" (chosen)" if done else " (best so far)") if lrs.get(arm) == r.lr else ""
            rows.append(f"| {arm} | {r.lr:.3g}{mark} | {r.val_ppl:.2f} | {r.kurt_resid:.2f} | {r.kurt_matmul:.2f} "
                        f"| {r.signal_prop:.3f} | {r.w8a8_tensor:.3f} | {r.w8a8_token:.3f} | {r.w8a4_tensor:.3f} "
                        f"| {r.run_seconds / 60:.1f} min |")
    return "\n".join(rows)


def arm_table(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> str:
    st = arm_stats(runs, seeds)
    if st.empty:
        return "(no run of the fresh seeds has finished)"
    keys = [("val_ppl", ".2f"), ("kurt_resid", ".2f"), ("kurt_matmul", ".2f"), ("kurt_mlp_in", ".2f"),
            ("kurt_mlp_hidden", ".2f"), ("signal_prop", ".3f"), ("w8a8_tensor", ".3f"), ("w8a8_token", ".3f"),
            ("w8a4_tensor", ".3f")]
    rows = ["| block | optimiser | lr | seeds | " + " | ".join(METRICS[k][0] for k, _ in keys) + " |",
            "|---|---|---|---|" + "---|" * len(keys)]
    for r in st.to_dict("records"):
        rows.append(f"| {BLOCK_NAME[r['block']]} | {OPT_NAME[r['optimizer']]} | {r['lr']:.3g} | {r['seeds']} | "
                    + " | ".join(_cell(r, k, f) for k, f in keys) + " |")
    return "\n".join(rows)


def contrast_table(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> str:
    c = contrasts(runs, seeds)
    if c.empty:
        return "(no two arms share two finished seeds yet)"
    rows = ["| contrast (a − b, per seed) | metric | seeds | mean | 95 % t interval | paired t p |", "|---|---|---|---|---|---|"]
    for r in c.itertuples():
        rows.append(f"| {r.contrast} | {METRICS[r.metric][0]} | {r.n} | {r.mean:+.3f} | [{r.lo:+.3f}, {r.hi:+.3f}] "
                    f"| {r.p:.3f} |")
    return "\n".join(rows)


def paper_table(runs: list[dict[str, Any]], seeds: tuple[int, ...]) -> str:
    st = {r["arm"]: r for r in arm_stats(runs, seeds).to_dict("records")}
    rows = ["| source | block + optimiser | ppl (float) | W8A8 ratio |", "|---|---|---|---|"]
    for block, opt, before, after in PAPER:
        rows.append(f"| He et al. 2024, OPT-125m | {block} + {opt} | {before:.2f} | {after / before:.3f} |")
    for arm, label in (("softmax-op-soap", "Outlier Protected + SOAP"), ("softmax-prenorm-adamw", "pre-norm + AdamW")):
        if arm in st:
            r = st[arm]
            rows.append(f"| ours, control (seeds {r['seeds']}) | {label} | {_cell(r, 'val_ppl', '.2f')} "
                        f"| {_cell(r, 'w8a8_tensor', '.3f')} |")
    return "\n".join(rows)


def tables(results: dict[str, Any]) -> str:
    runs, seeds = results["runs"], tuple(results["study"].get("seeds", ()))
    planned: dict[str, int] = {}
    for r in results["study"].get("runs", []):
        arm = ControlRun.from_dict(r).arm.name
        planned[arm] = planned.get(arm, 0) + 1
    left = results.get("left", [])
    status = _report.progress_status(len(runs), "runs finished", left)
    return (f"## Control: {{pre-norm, OP}} × {{AdamW, SOAP}} at the chosen configuration\n\n{status}\n\n"
            f"### Stage 1: learning-rate sweep, seed 0\n\n{sweep_table(runs, planned)}\n\n"
            f"### Stage 2: each arm at its chosen lr, fresh seeds {list(seeds)} (mean [95 % t interval])\n\n"
            f"{arm_table(runs, seeds)}\n\n### Paired contrasts over shared seeds\n\n{contrast_table(runs, seeds)}\n\n"
            f"### Beside He et al.\n\n{paper_table(runs, seeds)}\n")


def figure(runs: list[dict[str, Any]]):
    """W8A8 per-tensor ratio against the largest matmul-input kurtosis, one marker per run (seed 0 sweep open)."""
    import plotly.graph_objects as go

    df = frame(runs)
    colours = dict(zip(ARM_ORDER, ("#d62728", "#1f77b4", "#ff9896", "#2ca02c")))
    fig = go.Figure()
    for arm, g in df.groupby("arm"):
        fig.add_scatter(x=g["kurt_matmul"], y=g["w8a8_tensor"], mode="markers", name=arm,
                        text=[f"lr {r.lr:.3g}, seed {r.seed}" for r in g.itertuples()],
                        marker=dict(size=11, color=colours.get(arm),
                                    symbol=["circle-open" if s == 0 else "circle" for s in g["seed"]]))
    fig.update_layout(title="Control: W8A8 cost against the largest matmul-input kurtosis (open: seed-0 sweep)",
                      xaxis_title="kurtosis, largest matmul input (final model)", xaxis_type="log",
                      yaxis_title="validation ppl W8A8 per-tensor / float", width=900, height=500)
    return fig
