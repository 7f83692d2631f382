"""What reading a model costs next to running it: ``fast_weights`` at 64 positions of T = 8192 and the exact
effective attention at T = 4096, each against a plain forward at the same length (issue 19's targets).

One layer of 4 gated-delta heads of width 64 (d_model 256, d_mlp 1024, vocabulary 256), fp32, batch 1. Times are
best-of round-robin against the plain forward in this process (benchmarks/timing.py); peak memory is the growth of
the peak RSS of a fresh child process over its RSS once the model and tokens exist (each operation in its own
process, so one peak cannot hide another's).
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import torch

from workbench.config import ModelConfig
from workbench.model import HookedFastWeightLM

try:
    from timing import interleaved_wall_cpu  # run as a script: benchmarks/ is on sys.path
except ImportError:
    from benchmarks.timing import interleaved_wall_cpu

N_POSITIONS = 64


def build(t: int) -> tuple[HookedFastWeightLM, torch.Tensor]:
    cfg = ModelConfig(d_vocab=256, d_model=256, n_layers=1, n_heads=4, d_head=64, d_mlp=1024, n_ctx=t,
                      mixer="gated_delta")
    torch.manual_seed(0)
    model = HookedFastWeightLM(cfg).eval()
    tokens = torch.randint(0, cfg.d_vocab, (1, t), generator=torch.Generator().manual_seed(0))
    return model, tokens


def positions(t: int) -> list[int]:
    """N_POSITIONS positions spread evenly over the sequence, first and last included."""
    return sorted({round(i * (t - 1) / (N_POSITIONS - 1)) for i in range(N_POSITIONS)})


def operation(model: HookedFastWeightLM, tokens: torch.Tensor, what: str):
    t = tokens.shape[1]
    return {"forward": lambda: model(tokens),
            "fast_weights": lambda: model.fast_weights(tokens, 0, positions(t)),
            "effective_attention": lambda: model.effective_attention(tokens, 0)}[what]


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def child(what: str, t: int) -> None:
    torch.set_num_threads(1)
    model, tokens = build(t)
    try:  # reset the high-water mark to the current RSS (Linux), so that importing torch's peak does not count
        Path("/proc/self/clear_refs").write_text("5")
        base, peak = _status_kib("VmRSS"), lambda: _status_kib("VmHWM")
    except OSError:  # elsewhere: the process's peak so far (a lower bound on the growth)
        base, peak = [resource.getrusage(resource.RUSAGE_SELF).ru_maxrss] * 2
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # noqa: E731
    with torch.no_grad():
        operation(model, tokens, what)()
    print(json.dumps({"peak_mib": (peak() - base) / 1024}))


def peak_mib(what: str, t: int) -> float:
    """Peak RSS growth (MiB) of a fresh process running ``what`` once at length ``t``."""
    res = subprocess.run([sys.executable, str(Path(__file__).resolve()), what, str(t)], capture_output=True,
                         text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_mib"]


def analysis_costs(t_fast: int, t_attn: int, repeats: int) -> list[tuple[str, int, float, float, float]]:
    """Rows ``(operation, T, best wall ms, best thread-CPU ms, peak MiB)``: a plain forward and fast_weights at
    ``t_fast`` (best of ``repeats``), a plain forward and the effective attention at ``t_attn`` (one run each: it
    takes seconds)."""
    rows = []
    for t, what, reps, warm in ((t_fast, "fast_weights", repeats, 1), (t_attn, "effective_attention", 1, 0)):
        model, tokens = build(t)
        fns = {name: operation(model, tokens, name) for name in ("forward", what)}
        with torch.no_grad():
            best = interleaved_wall_cpu(fns, reps, warmup=warm)
        rows += [(name, t, *best[name], peak_mib(name, t)) for name in fns]
    return rows


if __name__ == "__main__":
    child(sys.argv[1], int(sys.argv[2]))
