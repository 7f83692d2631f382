"""Generation speed: carrying each layer's state (``use_past_kv_cache=True``) vs re-running the whole prefix for
every new token, same model, same process, timed round-robin.

    python benchmarks/bench_generate.py            # 2-layer models, prompts of 128 and 1024 tokens, 32 new tokens;
                                                   # then one step after prompts of 128, 1024 and 4096 tokens
    python benchmarks/bench_generate.py --quick    # tiny smoke run

tokens/s counts the new tokens of one greedy ``model.generate`` call, the prompt's forward included; ms/step is
the time of one token after the first ((time for N new − time for 1 new) / (N − 1)): constant in the prompt length
for a fast-weight model with its state carried, growing with it for softmax attention's key/value cache and for
re-running.
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

MIXERS = ("softmax", "linear", "delta", "gated_delta", "mamba2", "rec_delta")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--prompts", type=int, nargs="+", default=[128, 1024])
    ap.add_argument("--new", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--step-prompts", type=int, nargs="+", default=[128, 1024, 4096])
    ap.add_argument("--step-repeats", type=int, default=30)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    prompts, new, repeats = ([16], 4, 1) if args.quick else (args.prompts, args.new, args.repeats)
    step_prompts, step_repeats = ([16, 32], 2) if args.quick else (args.step_prompts, args.step_repeats)
    d_model, d_head, d_mlp = (32, 8, 64) if args.quick else (256, 64, 1024)
    print("command: python benchmarks/bench_generate.py " + " ".join(sys.argv[1:]))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch 1, {new} new tokens, greedy, fp32, "
          f"2 layers d_model {d_model}; best of {repeats} interleaved runs")
    print(f"{'mixer':<12} {'prompt':>6} {'state tok/s':>12} {'rerun tok/s':>12} {'ratio':>6} "
          f"{'state ms/step':>14} {'rerun ms/step':>14}")
    for mixer in MIXERS:
        cfg = ModelConfig(d_vocab=512, d_model=d_model, n_layers=2, n_heads=d_model // d_head, d_head=d_head,
                          d_mlp=d_mlp, n_ctx=max(prompts) + new, mixer=mixer, positional="none")
        model = HookedFastWeightLM(cfg).eval()
        for pos in prompts:
            tokens = torch.randint(0, 512, (1, pos), generator=torch.Generator().manual_seed(0))

            def run(cache: bool, n: int):
                return lambda: model.generate(tokens, max_new_tokens=n, do_sample=False, verbose=False,
                                              use_past_kv_cache=cache)

            ms = interleaved_ms({"state": run(True, new), "rerun": run(False, new), "state1": run(True, 1),
                                 "rerun1": run(False, 1)}, repeats, warmup=1)
            state, rerun = new / ms["state"] * 1e3, new / ms["rerun"] * 1e3
            # a step: the time of the tokens after the first (the first call also reads the prompt)
            step_state = (ms["state"] - ms["state1"]) / (new - 1)
            step_rerun = (ms["rerun"] - ms["rerun1"]) / (new - 1)
            print(f"{mixer:<12} {pos:>6} {state:>12.1f} {rerun:>12.1f} {state / rerun:>6.1f} "
                  f"{step_state:>14.2f} {step_rerun:>14.2f}")

    print(f"\none step with the state carried, after prompts of {step_prompts} tokens: ms, best of {step_repeats} "
          "interleaved steps")
    print(f"{'mixer':<12} " + " ".join(f"{p:>8}" for p in step_prompts))
    x = torch.tensor([[5]])
    for mixer in MIXERS:
        cfg = ModelConfig(d_vocab=512, d_model=d_model, n_layers=2, n_heads=d_model // d_head, d_head=d_head,
                          d_mlp=d_mlp, n_ctx=max(step_prompts) + step_repeats + 8, mixer=mixer, positional="none")
        model = HookedFastWeightLM(cfg).eval()
        caches = {}
        with torch.no_grad():
            for pos in step_prompts:
                caches[pos] = model.init_cache()
                model(torch.randint(0, 512, (1, pos), generator=torch.Generator().manual_seed(0)), past_kv_cache=caches[pos])
            ms = interleaved_ms({pos: (lambda c=c: model(x, past_kv_cache=c)) for pos, c in caches.items()},
                                step_repeats, warmup=2)
        print(f"{mixer:<12} " + " ".join(f"{ms[p]:>8.2f}" for p in step_prompts))

if __name__ == "__main__":
    main()
