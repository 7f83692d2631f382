"""Kernel speed against the peer implementations, in one process, as ratios.

    python benchmarks/bench_kernels.py            # B=1, H=4, T=2048, D=64, fp32, CPU, 1 thread
    python benchmarks/bench_kernels.py --quick    # a tiny smoke run

With a CUDA device it also prints ours, fla's Triton kernels (``backend="fla"``) and transformers' torch chunk on
the GPU (benchmarks/gpu_kernels.py; ``--device-sizes`` sets B,T,H,D there).

Peers (each used as published, imported from the installed package): transformers' Qwen3-Next
``torch_chunk_gated_delta_rule`` / ``torch_recurrent_gated_delta_rule`` and flash-linear-attention's
``fla/ops/*/naive.py`` references. Ratios are peer / ours.
The fast implementations are timed round-robin and each keeps its best run (benchmarks/timing.py), so
load from other processes falls on all of them alike; both the best wall time and the best CPU time of the
thread are kept (on a shared machine the CPU time is the steadier), and the load average is printed.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench.kernels import delta_rule

try:  # run as a script: benchmarks/ is on sys.path
    from analysis_cost import N_POSITIONS, analysis_costs
    from gpu_kernels import device_rows, print_device_table
    from timing import interleaved_ms, interleaved_wall_cpu
except ImportError:
    from benchmarks.analysis_cost import N_POSITIONS, analysis_costs
    from benchmarks.gpu_kernels import device_rows, print_device_table
    from benchmarks.timing import interleaved_ms, interleaved_wall_cpu

chunk_module = importlib.import_module("workbench.kernels.delta_rule.chunk")


def fla_naive(op: str):
    spec = importlib.util.find_spec("fla")
    if spec is None:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "ops" / op / "naive.py"
    mod_spec = importlib.util.spec_from_file_location(f"fla_naive_{op}", path)
    module = importlib.util.module_from_spec(mod_spec)
    mod_spec.loader.exec_module(module)
    return module


def transformers_peers():
    try:
        from transformers.models.qwen3_next import modeling_qwen3_next as m
    except ImportError:
        return {}
    unwrap = lambda f: getattr(f, "__wrapped__", f)  # noqa: E731
    return {"chunk": unwrap(m.torch_chunk_gated_delta_rule), "recurrent": unwrap(m.torch_recurrent_gated_delta_rule)}


def matmul_rates() -> dict[str, float]:
    """GFLOP/s of a large square matmul and of the batched 64×64 matmuls, from the best CPU time of the thread."""
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    x, y = torch.randn(128, 64, 64), torch.randn(128, 64, 64)
    best = interleaved_wall_cpu({"large": lambda: a @ b, "batched64": lambda: torch.bmm(x, y)}, 20)
    return {"large": 2 * 1024**3 / best["large"][1] / 1e6, "batched64": 2 * 128 * 64**3 / best["batched64"][1] / 1e6}


def chunk_flops(b: int, t: int, h: int, d: int, c: int) -> float:
    """FLOPs (2 per multiply-add) of our chunk algorithm for a per-head gate or none, as it runs
    (kernels/delta_rule/wy.py) with blocks of ``c`` positions, per head and position: [K; Q]Kᵀ (4cd), the
    triangular solves for the 2d right-hand sides [V | γK] (2cd: half a dense product), and per block the
    hand-off and read-out [Q; W]·S (4d²) and [(ρK)ᵀ; P]·U (2d² + 2cd)."""
    return b * h * t * (8 * c * d + 6 * d * d)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one repeat (smoke test)")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else None,
                    help="also time the gated rule on this device (default: cuda when present); 'cpu' runs the "
                         "device table's code on the CPU, without fla")
    ap.add_argument("--device-sizes", default="4,4096,16,128", help="B,T,H,D of the device table")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    b, t, h, d = (1, 128, 2, 16) if args.quick else (1, 2048, 4, 64)
    reps = 1 if args.quick else args.repeats
    print("command: python benchmarks/bench_kernels.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; B={b} H={h} T={t} D={d} fp32; best of {reps} interleaved runs")
    print("load average (1, 5, 15 min) at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, t, h, d, generator=gen)
    k = F.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1)
    v = torch.randn(b, t, h, d, generator=gen)
    beta = torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.1
    scale = d**-0.5
    cases: list[tuple[str, str, object, bool]] = []  # (name, rule, fn(q, k, v, beta, g) -> output, slow)

    def add(name: str, fn, gated: bool, slow: bool = False) -> None:
        cases.append((name, "gated" if gated else "delta", fn, slow))

    # q is pre-scaled for ours; every peer applies d^-1/2 itself
    add("ours chunk", lambda q, k, v, b_, g_: delta_rule(q * scale, k, v, b_, g=g_).output, True)
    add("ours chunk", lambda q, k, v, b_, g_: delta_rule(q * scale, k, v, b_).output, False)
    add("ours reference", lambda q, k, v, b_, g_: delta_rule(q * scale, k, v, b_, g=g_, backend="reference").output,
        True, slow=True)
    peers = transformers_peers()
    if peers:
        add("transformers torch_chunk", lambda q, k, v, b_, g_: peers["chunk"](q, k, v, g_, b_)[0], True)
        add("transformers torch_chunk", lambda q, k, v, b_, g_: peers["chunk"](q, k, v, torch.zeros_like(g_), b_)[0],
            False)  # g = 0: the ungated delta rule
        add("transformers torch_recurrent", lambda q, k, v, b_, g_: peers["recurrent"](q, k, v, g_, b_)[0], True,
            slow=True)
    tr = lambda x: x.transpose(1, 2)  # noqa: E731  fla's delta naive files take [B, H, T, D]
    naive = fla_naive("delta_rule")
    if naive is not None:
        add("fla naive delta_rule_chunkwise",
            lambda q, k, v, b_, g_: naive.delta_rule_chunkwise(tr(q), tr(k), tr(v), tr(b_), chunk_size=64)[0], False)
        add("fla naive delta_rule_recurrence",
            lambda q, k, v, b_, g_: naive.delta_rule_recurrence(tr(q), tr(k), tr(v), tr(b_))[0], False, slow=True)
    gnaive = fla_naive("gated_delta_rule")
    if gnaive is not None:
        add("fla naive chunk_gated_delta_rule",
            lambda q, k, v, b_, g_: gnaive.naive_chunk_gated_delta_rule(q, k, v, b_, g_, chunk_size=64)[0], True)

    inputs = [x.detach().requires_grad_() for x in (q, k, v, beta, g)]

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(q, k, v, beta, g)
        return run

    def forward_backward(fn):
        return lambda: fn(*inputs).sum().backward()

    # the fast implementations run round-robin (best of `reps` each); loops over positions get few runs
    fast = [(i, c) for i, c in enumerate(cases) if not c[3]]
    slow = [(i, c) for i, c in enumerate(cases) if c[3]]
    f_ms = interleaved_wall_cpu({i: forward(c[2]) for i, c in fast}, reps)
    fb_ms = interleaved_wall_cpu({i: forward_backward(c[2]) for i, c in fast}, max(1, reps // 3), warmup=1)
    for i, c in slow:
        f_ms.update(interleaved_wall_cpu({i: forward(c[2])}, max(1, reps // 5), warmup=1))
        fb_ms.update(interleaved_wall_cpu({i: forward_backward(c[2])}, 1, warmup=0))
    rows = [(name, kind, f_ms[i], fb_ms[i]) for i, (name, kind, _, _) in enumerate(cases)]
    ours_by_kind = {kind: (f, fb) for name, kind, f, fb in rows if name == "ours chunk"}
    print("\nbest wall ms (best thread-CPU ms); ratios peer / ours, wall (CPU)")
    print(f"{'implementation':<34} {'rule':<6} {'fwd ms':>15} {'fwd+bwd ms':>17} {'fwd: peer/ours':>15} "
          f"{'fwd+bwd: peer/ours':>19}")
    for name, kind, f, fb in rows:
        of, ofb = ours_by_kind[kind]
        print(f"{name:<34} {kind:<6} {f[0]:>7.2f} ({f[1]:>6.2f}) {fb[0]:>8.2f} ({fb[1]:>7.2f}) "
              f"{f[0] / of[0]:>6.2f} ({f[1] / of[1]:>5.2f}) {fb[0] / ofb[0]:>8.2f} ({fb[1] / ofb[1]:>6.2f})")
    rates = matmul_rates()
    wy = importlib.import_module("workbench.kernels.delta_rule.wy")
    fused = wy.fused_available(q)  # the forward without autograd runs the fused pass, in its own block size
    block = chunk_module.fused_block(64) if fused else chunk_module.wy_block(64)
    flops = chunk_flops(b, t, h, d, block)
    bound = flops / rates["large"] / 1e6
    print(f"\nmatmul throughput here (best CPU time): {rates['large']:.0f} GFLOP/s (1024³), {rates['batched64']:.0f} "
          "GFLOP/s (batched 64×64×64)")
    print(f"our chunk forward ({'fused pass, ' if fused else ''}blocks of {block}): {flops / 1e6:.0f} MFLOP -> matmul-bound time {bound:.2f} ms at the "
          f"large-matmul rate, {flops / rates['batched64'] / 1e6:.2f} ms at the batched 64×64 rate")
    for kind, (of, ofb) in ours_by_kind.items():
        print(f"ours chunk {kind}: forward {of[0] / bound:.1f}× ({of[1] / bound:.1f}× by CPU time) the large-matmul-rate "
              f"bound")
    t_fast, t_attn = (256, 128) if args.quick else (8192, 4096)
    rows = analysis_costs(t_fast, t_attn, 1 if args.quick else max(1, reps // 3))
    print(f"\nreading the model (1 layer, 4 gated-delta heads of 64, d_model 256): fast_weights at {N_POSITIONS} positions "
          f"of T={t_fast} (best of {1 if args.quick else max(1, reps // 3)} interleaved runs), the exact effective "
          f"attention at T={t_attn} (one run); peak = growth of a fresh process's peak RSS over its RSS before the call")
    print(f"{'operation':<22} {'T':>5} {'wall ms':>9} {'CPU ms':>9} {'peak MiB':>9} {'/ forward (wall, CPU)':>22}")
    base = {t: (w, c) for name, t, w, c, _ in rows if name == "forward"}
    for name, t, w, c, mib in rows:
        print(f"{name:<22} {t:>5} {w:>9.1f} {c:>9.1f} {mib:>9.1f} {w / base[t][0]:>11.2f} ({c / base[t][1]:>5.2f})")
    if args.device:
        db, dt, dh, dd = (1, 128, 2, 16) if args.quick else (int(x) for x in args.device_sizes.split(","))
        name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
        rows = device_rows(args.device, db, dt, dh, dd, 3 if args.quick else 20, peers, interleaved_ms)
        print_device_table(rows, f"gated delta rule on {args.device} ({name}), B={db} T={dt} H={dh} D={dd} fp32, "
                                 "best ms of interleaved runs, device synchronised in each")
    print("load average (1, 5, 15 min) at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
