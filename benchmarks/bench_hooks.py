"""Cost of reading every hook: run_with_cache (all hooks) vs a plain forward, same model, same run.

    python benchmarks/bench_hooks.py            # 2-layer models, T=1024, every mixer
    python benchmarks/bench_hooks.py --quick    # tiny smoke run
"""

from __future__ import annotations

import argparse
import sys

import torch

from workbench import HookedFastWeightLM, ModelConfig

try:
    from timing import interleaved_ms  # run as a script: benchmarks/ is on sys.path
except ImportError:
    from benchmarks.timing import interleaved_ms


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pos", type=int, default=1024)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args(argv)
    pos, repeats = (64, 3) if args.quick else (args.pos, args.repeats)
    print("command: python benchmarks/bench_hooks.py " + " ".join(sys.argv[1:]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 1, pos {pos}, fp32, no grad; best of {repeats} interleaved runs")
    print(f"{'mixer':<12} {'forward ms':>11} {'cache ms':>9} {'ratio':>6} {'hooks':>6}")
    for mixer in ("delta", "gated_delta", "linear", "softmax"):
        cfg = ModelConfig(d_vocab=512, d_model=256, n_layers=2, n_heads=4, d_head=64, d_mlp=1024,
                          n_ctx=max(pos, 64), mixer=mixer)
        model = HookedFastWeightLM(cfg).eval()
        tokens = torch.randint(0, 512, (1, pos), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            times = interleaved_ms({"plain": lambda: model(tokens), "cache": lambda: model.run_with_cache(tokens)},
                                   repeats)
            plain, cached = times["plain"] / 1e3, times["cache"] / 1e3
            n_hooks = len(model.run_with_cache(tokens)[1])
        print(f"{mixer:<12} {plain * 1e3:>11.2f} {cached * 1e3:>9.2f} {cached / plain:>6.2f} {n_hooks:>6}")


if __name__ == "__main__":
    main()
