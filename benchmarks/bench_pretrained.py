"""Real sizes on this machine: fla-hub's DeltaNet 1.3B and the smallest Qwen3.5 (0.8B) with random weights.

    python benchmarks/bench_pretrained.py                  # the real configs, T = 512, batch 1, fp32 and bf16
    python benchmarks/bench_pretrained.py --quick          # tiny configs with the same layouts (a smoke run)

Each model is written once, with random weights, as its source library saves it (a directory with config.json
and a bf16 model.safetensors, as the released checkpoints are) in a temporary folder, and opened with
``workbench.from_pretrained`` — the path a user takes. Per model and dtype one fresh process loads it and times,
round-robin (benchmarks/timing.py's rule, without its warm-up rounds, which at these sizes would cost
minutes each: the best of ``--rounds`` rounds):

- ``forward``       our plain forward (logits);
- ``cache all``     ``run_with_cache`` with every hook;
- ``cache 1 layer`` ``run_with_cache`` with a ``names_filter`` keeping the hooks of one layer (the middle
                    fast-weight layer);
- ``fast_weights``  ``model.fast_weights`` of that layer at one position (the middle one);
- ``source``        the source library's own CPU forward on the same weights, in the same process and rounds:
                    transformers' ``Qwen3_5ForCausalLM`` on its torch fallbacks (with flash-linear-attention and
                    Triton importable transformers binds its kernels at import time; the torch functions are
                    restored from ``__wrapped__`` as tests/hf_reference.py does). fla's ``DeltaNetForCausalLM``
                    does not run on a CPU (its layers call Triton kernels), so DeltaNet has no source row.

Everything runs under ``torch.no_grad()``. Peak memory is the resident set: before each call the process's peak
(VmHWM) is reset through ``/proc/self/clear_refs`` and freed heap memory is returned to the system
(``malloc_trim``; glibc's mmap threshold is pinned at 64 KiB so that tensors are never kept by the allocator);
the number printed is VmHWM after the call minus VmRSS before it (what the call needs on top of the loaded model),
the largest over the rounds, in MiB. ``load`` is the process's peak RSS while ``from_pretrained`` opens the model.

``--threads`` (torch threads per measuring process) defaults to 1: on this shared 2-core machine, loaded by other
jobs, two threads made a forward 4× slower (OpenMP's threads wait for a core), so 1 measures the machine better.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

# fla-hub/delta_net-1.3B-100B (model card: 24 layers, 1.3B parameters, vocab 32000; model.safetensors 2.73 GB in
# bf16). Its config.json is fla's DeltaNetConfig with the defaults of fla 0.6.0
# (fla/models/delta_net/configuration_delta_net.py: hidden_size 2048, num_heads 16, num_hidden_layers 24,
# expand_k = expand_v = 1, use_gate false, use_short_conv true, conv_size 4, use_beta true, qk_norm l2,
# qk_activation silu, hidden_ratio 4 → intermediate 5632, norm_eps 1e-6, untied head), the same keys as
# fla-org/flame configs/delta_net_340M.json. Checked against a public audit of the checkpoint (revision b4dcbbaf):
# 339 tensors, 1,365,677,056 parameters, untied — exactly what these values give (PARAMS below).
DELTA_NET_1_3B = dict(
    model_type="delta_net", architectures=["DeltaNetForCausalLM"], attn_mode="chunk", hidden_size=2048,
    num_heads=16, num_hidden_layers=24, expand_k=1, expand_v=1, use_gate=False, use_short_conv=True, conv_size=4,
    use_beta=True, use_output_norm=True, qk_norm="l2", qk_activation="silu", hidden_ratio=4, intermediate_size=None,
    hidden_act="swish", norm_eps=1e-6, vocab_size=32000, tie_word_embeddings=False, max_position_embeddings=2048,
    bos_token_id=1, eos_token_id=2)
PARAMS = {"delta_net": 1_365_677_056}

# Qwen/Qwen3.5-0.8B, the smallest Qwen3.5 (its language model). Its config.json was not in the stored sources;
# the values come from its model card (hidden 1024, 24 layers, layout 6 × (3 × Gated DeltaNet + 1 × gated
# attention), Gated DeltaNet 16 q/k and 16 v heads of width 128, attention 8 q and 2 kv heads of width 256,
# rotary on 64 of them (partial_rotary_factor 0.25), vocabulary 248320) and from the THUDM/slime launch script
# scripts/models/qwen3.5-0.8B.sh (ffn 3584, rope base 10,000,000, rms eps 1e-6, embeddings tied: no
# --untie-embeddings-and-output-weights, which its 27B script has). The conv width 4 is transformers'
# Qwen3_5TextConfig default. Built as transformers' text-only Qwen3_5ForCausalLM (the released checkpoint is the
# multimodal Qwen3_5ForConditionalGeneration; its vision tower is not part of a text forward).
QWEN3_5_0_8B = dict(
    vocab_size=248320, hidden_size=1024, intermediate_size=3584, num_hidden_layers=24, num_attention_heads=8,
    num_key_value_heads=2, head_dim=256, linear_num_key_heads=16, linear_num_value_heads=16, linear_key_head_dim=128,
    linear_value_head_dim=128, linear_conv_kernel_dim=4, rms_norm_eps=1e-6, tie_word_embeddings=True,
    layer_types=["linear_attention"] * 3 + ["full_attention"],  # repeated 6 times below
    rope_parameters=dict(rope_type="default", rope_theta=10_000_000.0, partial_rotary_factor=0.25))
QWEN3_5_0_8B["layer_types"] = QWEN3_5_0_8B["layer_types"] * 6

# --quick: the same layouts, tiny
DELTA_NET_QUICK = {**DELTA_NET_1_3B, "hidden_size": 64, "num_heads": 2, "num_hidden_layers": 2, "vocab_size": 97}
QWEN3_5_QUICK = {**QWEN3_5_0_8B, "vocab_size": 97, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 4,
                 "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 16, "linear_num_key_heads": 2,
                 "linear_num_value_heads": 2, "linear_key_head_dim": 16, "linear_value_head_dim": 16,
                 "layer_types": QWEN3_5_0_8B["layer_types"][:4]}

CASES = ("forward", "cache all", "cache 1 layer", "fast_weights", "source")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


# ---------------------------------------------------------------------------------------------- checkpoints
def write_delta_net(directory: Path, config: dict, seed: int = 0) -> int:
    """fla's DeltaNetForCausalLM checkpoint under fla's tensor names (fla/models/delta_net/modeling_delta_net.py,
    fla/layers/delta_net.py), random: matrices N(0, 0.02²), convs U(±½), norm gains 1; bf16. Returns the
    parameter count."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    d, h, v = config["hidden_size"], config["num_heads"], config["vocab_size"]
    dk, dv = int(d * config["expand_k"]), int(d * config["expand_v"])
    d_mlp = config["intermediate_size"] or 256 * ((int(d * config["hidden_ratio"] * 2 / 3) + 255) // 256)

    def normal(*shape):
        return (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)

    tensors = {"model.embeddings.weight": normal(v, d), "model.norm.weight": torch.ones(d, dtype=torch.bfloat16),
               "lm_head.weight": normal(v, d)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({p + "attn_norm.weight": torch.ones(d, dtype=torch.bfloat16),
                        p + "mlp_norm.weight": torch.ones(d, dtype=torch.bfloat16),
                        p + "attn.q_proj.weight": normal(dk, d), p + "attn.k_proj.weight": normal(dk, d),
                        p + "attn.v_proj.weight": normal(dv, d), p + "attn.b_proj.weight": normal(h, d),
                        p + "attn.o_proj.weight": normal(d, dv),
                        p + "attn.o_norm.weight": torch.ones(dv // h, dtype=torch.bfloat16),
                        p + "mlp.gate_proj.weight": normal(d_mlp, d), p + "mlp.up_proj.weight": normal(d_mlp, d),
                        p + "mlp.down_proj.weight": normal(d, d_mlp)})
        for name, width in (("q", dk), ("k", dk), ("v", dv)):
            conv = torch.rand((width, 1, config["conv_size"]), generator=gen) - 0.5
            tensors[p + f"attn.{name}_conv1d.weight"] = conv.to(torch.bfloat16)
    n = sum(t.numel() for t in tensors.values())
    save_file(tensors, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({**config, "torch_dtype": "bfloat16"}, indent=1))
    return n


def write_qwen3_5(directory: Path, config: dict, seed: int = 0) -> int:
    """transformers' Qwen3_5ForCausalLM with its own random initialisation, saved by ``save_pretrained`` in bf16."""
    import transformers

    torch.manual_seed(seed)
    model = transformers.Qwen3_5ForCausalLM(transformers.Qwen3_5TextConfig(**config))
    n = sum(p.numel() for p in model.parameters())
    model.to(torch.bfloat16).save_pretrained(directory)
    return n


# ---------------------------------------------------------------------------------------------- measuring
_LIBC = ctypes.CDLL("libc.so.6")


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"/proc/self/status has no {field}")


def reset_peak() -> int:
    """Free what can be freed, reset the peak RSS (VmHWM); returns the current RSS in kB."""
    gc.collect()
    _LIBC.malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def measure(fn, keep: bool = False):
    """(seconds, peak RSS over the RSS before in MB, the result if ``keep`` else None) of one call of ``fn``."""
    before = reset_peak()
    t = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t
    peak = _status_kb("VmHWM") - before
    return seconds, peak / 1024, (out if keep else None)


def torch_fallbacks() -> None:
    """transformers' Qwen3.5 on its own torch functions (as tests/hf_reference.py: with fla and Triton importable,
    transformers binds these names to fla's kernels; the torch function stays as ``__wrapped__``)."""
    from transformers.models.qwen3_5 import modeling_qwen3_5 as m

    for name in ("torch_chunk_gated_delta_rule", "torch_recurrent_gated_delta_rule", "causal_conv1d_fn",
                 "causal_conv1d_update"):
        fn = getattr(m, name, None)
        if fn is not None and hasattr(fn, "__wrapped__"):
            setattr(m, name, fn.__wrapped__)


def run_cases(directory: str, arch: str, dtype_name: str, pos: int, rounds: int) -> dict:
    """In this (fresh) process: load, then time and measure every case round-robin. Returns a JSON-able dict."""
    import workbench

    dtype = DTYPES[dtype_name]
    reset_peak()
    t = time.perf_counter()
    model = workbench.from_pretrained(directory, dtype=dtype)
    load_s, load_peak = time.perf_counter() - t, _status_kb("VmHWM") / 1024
    gen = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, model.cfg.d_vocab, (1, pos), generator=gen)
    layers = model.fast_weight_layers
    layer = layers[len(layers) // 2]
    prefix = f"blocks.{layer}."
    fns = {
        "forward": lambda: model(tokens),
        "cache all": lambda: model.run_with_cache(tokens),
        "cache 1 layer": lambda: model.run_with_cache(tokens, names_filter=lambda name: name.startswith(prefix)),
        "fast_weights": lambda: model.fast_weights(tokens, layer, [pos // 2]),
    }
    if arch == "qwen3_5":
        import transformers

        torch_fallbacks()
        source = transformers.Qwen3_5ForCausalLM.from_pretrained(directory, dtype=dtype).eval()
        fns["source"] = lambda: source(input_ids=tokens, use_cache=False).logits
    best = {name: float("inf") for name in fns}
    peak = {name: 0.0 for name in fns}
    first: dict = {}  # round 0's outputs of forward, cache all and source (checked below, then dropped)
    with torch.no_grad():
        for r in range(rounds):
            for name, fn in fns.items():
                keep = r == 0 and name in ("forward", "cache all", "source")
                seconds, mb, out = measure(fn, keep)
                if keep:
                    first[name] = out
                best[name], peak[name] = min(best[name], seconds), max(peak[name], mb)
    cache = first["cache all"][1]
    n_hooks, cache_mb = len(cache), sum(v.numel() * v.element_size() for v in cache.values()) / 2**20
    agreement = None
    if "source" in fns:  # same weights, same function: the logits agree
        ours, theirs = first["forward"].float(), first["source"].float()
        agreement = ((ours - theirs).norm() / theirs.norm()).item()
    return dict(arch=arch, dtype=dtype_name, layer=layer, load_s=load_s, load_peak_mb=load_peak, best_s=best,
                peak_mb=peak, n_hooks=n_hooks, cache_mb=cache_mb, rel_err_vs_source=agreement,
                threads=torch.get_num_threads(), params=sum(p.numel() for p in model.parameters()))


def child(argv: list[str], threads: int) -> dict:
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, __file__, "--child", *argv, "--threads", str(threads)], env=env,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"the measuring process failed ({' '.join(argv)}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------- report
def fmt_row(res: dict) -> list[str]:
    rows = []
    src = res["best_s"].get("source")
    for name in CASES:
        if name not in res["best_s"]:
            if name == "source":
                rows.append(f"| {res['arch']} | {res['dtype']} | source (fla) | — | — | — | fla's layers call Triton "
                            "kernels: no CPU forward |")
            continue
        s, mb = res["best_s"][name], res["peak_mb"][name]
        vs_fwd = s / res["best_s"]["forward"]
        vs_src = f"{src / s:.2f}" if src is not None and name == "forward" else "—"
        label = "source (transformers)" if name == "source" else name
        rows.append(f"| {res['arch']} | {res['dtype']} | {label} | {s:.2f} | {mb:,.0f} | {vs_fwd:.2f} | {vs_src} |")
    return rows


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--pos", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads in the measuring processes")
    ap.add_argument("--models", default="delta_net,qwen3_5")
    ap.add_argument("--dtypes", default="fp32,bf16")
    ap.add_argument("--child", nargs=3, metavar=("DIR", "ARCH", "DTYPE"), help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        torch.set_num_threads(args.threads)
        print(json.dumps(run_cases(*args.child, pos=args.pos, rounds=args.rounds)))
        return
    pos, rounds = (64, 2) if args.quick else (args.pos, args.rounds)
    models = [m for m in args.models.split(",") if m]
    dtypes = [d for d in args.dtypes.split(",") if d]
    for m in models:
        if m not in ("delta_net", "qwen3_5"):
            raise SystemExit(f"--models: unknown {m!r}; choose from delta_net, qwen3_5")
    for d in dtypes:
        if d not in DTYPES:
            raise SystemExit(f"--dtypes: unknown {d!r}; choose from {', '.join(DTYPES)}")
    print("command: python benchmarks/bench_pretrained.py " + " ".join(sys.argv[1:]))
    print(f"torch {torch.__version__}, {args.threads} threads per measuring process, batch 1, pos {pos}, no grad; "
          f"best of {rounds} round-robin rounds (the first included); load average at start "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    configs = {"delta_net": (DELTA_NET_QUICK if args.quick else DELTA_NET_1_3B, write_delta_net),
               "qwen3_5": (QWEN3_5_QUICK if args.quick else QWEN3_5_0_8B, write_qwen3_5)}
    results = []
    with tempfile.TemporaryDirectory(prefix="bench_pretrained_") as tmp:
        for arch in models:
            config, write = configs[arch]
            directory = Path(tmp) / arch
            directory.mkdir()
            t = time.perf_counter()
            n = write(directory, config)
            if not args.quick and arch in PARAMS and n != PARAMS[arch]:
                raise SystemExit(f"{arch}: {n:,} parameters, the released checkpoint has {PARAMS[arch]:,}")
            print(f"{arch}: {n:,} parameters, random checkpoint written in {time.perf_counter() - t:.0f} s", flush=True)
            for dtype in dtypes:
                res = child([str(directory), arch, dtype, "--pos", str(pos), "--rounds", str(rounds)], args.threads)
                results.append(res)
                err = res["rel_err_vs_source"]
                print(f"  {dtype}: load {res['load_s']:.1f} s (peak RSS {res['load_peak_mb']:,.0f} MB); run_with_cache "
                      f"holds {res['n_hooks']} hooks, {res['cache_mb']:,.0f} MB; layer {res['layer']}"
                      + (f"; logits vs transformers rel. err. {err:.1e}" if err is not None else ""), flush=True)
            shutil.rmtree(directory, ignore_errors=True)  # at most one checkpoint on disk at a time
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print()
    print("| model | dtype | case | seconds | peak MB over the loaded model | ÷ forward | source ÷ ours |")
    print("|---|---|---|---|---|---|---|")
    for res in results:
        print("\n".join(fmt_row(res)))


if __name__ == "__main__":
    main()
