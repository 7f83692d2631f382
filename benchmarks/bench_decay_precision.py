"""What the float64 cumulative decays (kernels/_decay.py) cost the gated chunk forward and backward, against
the float32 cumulative sums used before (which lost 1e-5–2e-4 on large decays and gave NaN on g = −inf).

    python benchmarks/bench_decay_precision.py            # B=1, H=4, T=2048, D=64, C=64, fp32
    python benchmarks/bench_decay_precision.py --quick    # tiny smoke run

The float32 variant is the same kernel with ``cumulative_log_decay`` swapped for a float32 cumsum, so the
two differ only in that; the runs are interleaved and each keeps its best.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import torch

from workbench.kernels import delta_rule

try:
    from timing import interleaved_ms  # run as a script: benchmarks/ is on sys.path
except ImportError:
    from benchmarks.timing import interleaved_ms

chunk_module = importlib.import_module("workbench.kernels.delta_rule.wy")  # the per-head-gate chunk form


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args(argv)
    b, t, h, d, repeats = (1, 128, 2, 16, 3) if args.quick else (1, 2048, 4, 64, args.repeats)
    print("command: python benchmarks/bench_decay_precision.py " + " ".join(sys.argv[1:]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, B={b} H={h} T={t} D={d} C=64, fp32, "
          f"gated; best of {repeats} interleaved runs")
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, t, h, d, generator=gen) * d ** -0.5
    k = torch.nn.functional.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1)
    v, beta = torch.randn(b, t, h, d, generator=gen), torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.1
    leaves = [x.clone().requires_grad_() for x in (q, k, v, beta, g)]
    float64_cum = chunk_module.cumulative_log_decay
    variants = {"float64 cum": float64_cum, "float32 cum": lambda x: x.cumsum(-1)}

    def forward(cum):
        def run():
            chunk_module.cumulative_log_decay = cum
            with torch.no_grad():
                delta_rule(q, k, v, beta, g=g)
        return run

    def forward_backward(cum):
        def run():
            chunk_module.cumulative_log_decay = cum
            delta_rule(*leaves[:4], g=leaves[4]).output.sum().backward()
        return run

    try:
        fwd = interleaved_ms({n: forward(c) for n, c in variants.items()}, repeats)
        fb = interleaved_ms({n: forward_backward(c) for n, c in variants.items()}, max(3, repeats // 4))
    finally:
        chunk_module.cumulative_log_decay = float64_cum
    print(f"{'':<14} {'float64 cum ms':>15} {'float32 cum ms':>15} {'ratio':>6}")
    for name, times in (("forward", fwd), ("fwd+bwd", fb)):
        print(f"{name:<14} {times['float64 cum']:>15.2f} {times['float32 cum']:>15.2f} "
              f"{times['float64 cum'] / times['float32 cum']:>6.2f}")


if __name__ == "__main__":
    main()
