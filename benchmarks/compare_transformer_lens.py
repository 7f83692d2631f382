"""workbench against TransformerLens 4.x's bridge on the same tiny random Qwen3.5 (Gated DeltaNet) model.

    python benchmarks/compare_transformer_lens.py              # T = 64 for the exactness rows, T = 8192 for memory
    python benchmarks/compare_transformer_lens.py --quick      # T = 1024 for memory (a smoke run)

One random-weight ``Qwen3_5ForCausalLM`` (transformers' own classes, 2 Gated DeltaNet layers — no softmax layer,
whose T × T scores would swamp the memory rows; seed 0) is saved with its tokenizer to a temporary folder (TransformerLens boots it offline only with
``config.architectures`` set and the tokenizer loadable from a folder), opened by ``workbench.from_pretrained`` and
by ``TransformerBridge.boot_transformers``, and layer 0 (Gated DeltaNet) is measured:

1. effective attention: ``‖A·v − z‖ / ‖z‖`` for ours (``model.effective_attention``; z = ``hook_z``) and theirs
   (``compute_effective_attention``; z = ``hook_recurrence_out``, v = their ``hook_v``);
2. a carry patch (the state after position p set to zero): which later read-outs change, and the error against a
   re-run of the layer's recurrence from the zero state after p (ours: ``expose_states(mode="carry")``; theirs:
   ``eager_scan=True`` and a ``hook_ssm_state`` patch of position p);
3. reading the state at one position of a long sequence: peak resident memory of a fresh process over its
   baseline (the same process running a plain forward), ours ``model.fast_weights(ids, 0, [T // 2])``, theirs
   ``compute_ssm_state(cache, 0, time_step=T // 2)`` after ``run_with_cache(use_cache=False)``.
Prints a markdown table; docs/transformer_lens.md holds the last run's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

VOCAB = 61
CONFIG = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=48, num_attention_heads=2, num_key_value_heads=1,
              head_dim=16, linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=32,
              linear_value_head_dim=32, linear_conv_kernel_dim=4, initializer_range=0.2, num_hidden_layers=2,
              layer_types=["linear_attention", "linear_attention"], pad_token_id=0, bos_token_id=0,
              eos_token_id=0, max_position_embeddings=16384)


def build(directory: Path) -> None:
    """The tiny Qwen3.5 (seed 0; weights std 0.2, norm gains off 1, a mild decay) and a word-level tokenizer."""
    import transformers
    from tokenizers import Tokenizer, models, pre_tokenizers

    torch.manual_seed(0)
    model = transformers.Qwen3_5ForCausalLM(transformers.Qwen3_5TextConfig(**CONFIG)).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.add_(torch.randn(p.shape, generator=gen) * 0.3)
            elif name.endswith("A_log"):
                p.copy_(torch.empty(p.shape).uniform_(0.02, 0.5, generator=gen).log())
    model.config.architectures = ["Qwen3_5ForCausalLM"]
    model.save_pretrained(directory, safe_serialization=True)
    tok = Tokenizer(models.WordLevel({f"t{i}": i for i in range(VOCAB)}, unk_token="t0"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="t0", pad_token="t0", bos_token="t0",
                                                eos_token="t0")
    fast.save_pretrained(directory)


def boot_theirs(directory: Path):
    import transformers
    from transformer_lens.model_bridge import TransformerBridge

    hf = transformers.Qwen3_5ForCausalLM.from_pretrained(directory).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory))
    return TransformerBridge.boot_transformers(str(directory), hf_model=hf, tokenizer=tokenizer, device="cpu")


def ids(t: int) -> torch.Tensor:
    return torch.randint(1, VOCAB, (1, t), generator=torch.Generator().manual_seed(0))


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def exactness(directory: Path, t: int, p: int) -> dict:
    """Rows 1 and 2 at sequence length t, patch position p."""
    import workbench

    ours, theirs = workbench.from_pretrained(directory), boot_theirs(directory)
    x = ids(t)
    out = {}
    _, cache = ours.run_with_cache(x)
    a = ours.effective_attention(x, 0)  # [batch, head, pos, pos]
    out["ours_ea"] = rel(torch.einsum("bhqk,bkhd->bqhd", a, cache["blocks.0.attn.hook_v"]), cache["blocks.0.attn.hook_z"])
    _, tcache = theirs.run_with_cache(x, use_cache=False)
    la = theirs.blocks[0].linear_attn
    m = la.compute_effective_attention(tcache, 0)  # [batch, v_head, pos, pos]
    v = tcache["blocks.0.linear_attn.hook_v"]  # [batch, pos, v_head, d_v]
    z = tcache["blocks.0.linear_attn.hook_recurrence_out"]
    out["theirs_ea"] = rel(torch.einsum("bhqk,bkhd->bqhd", m, v.float()), z)

    # the truth for a carry patch: the layer's recurrence re-run from a zero state after p, on its own inputs
    mixer = ours.mixer(0)
    inputs = mixer.recurrence_inputs(lambda n: cache[f"blocks.0.attn.{n}"])
    rest = mixer.recurrence.run(inputs.at(slice(p + 1, None)), initial_state=torch.zeros(1, mixer.n_heads, mixer.d_k,
                                                                                         mixer.d_v), backend="reference")
    truth = torch.cat([cache["blocks.0.attn.hook_z"][:, :p], torch.zeros_like(rest.output[:, :1]), rest.output], 1)
    name = "blocks.0.attn.hook_z"
    with ours.expose_states([p], mode="carry", layers=[0]), \
            ours.hooks(fwd_hooks=[("blocks.0.attn.hook_state", lambda s, hook: torch.zeros_like(s))]):
        _, patched = ours.run_with_cache(x, names_filter=lambda n: n == name)
    out["ours_changed"] = changed(patched[name], cache[name], p)
    out["ours_patch_err"] = rel(patched[name][:, p + 1:], truth[:, p + 1:])

    def zero_at_p(traj, hook):  # [batch, pos, v_head, d_k, d_v]
        traj = traj.clone()
        traj[:, p] = 0
        return traj

    la.eager_scan = True
    tname = "blocks.0.linear_attn.hook_recurrence_out"
    _, base = theirs.run_with_cache(x, use_cache=False, names_filter=lambda n: n == tname)
    with theirs.hooks(fwd_hooks=[("blocks.0.linear_attn.hook_ssm_state", zero_at_p)]):
        _, tpatched = theirs.run_with_cache(x, use_cache=False, names_filter=lambda n: n == tname)
    la.eager_scan = False
    out["theirs_changed"] = changed(tpatched[tname], base[tname], p)
    out["theirs_patch_err"] = rel(tpatched[tname][:, p + 1:], truth[:, p + 1:])
    return out


def changed(a: torch.Tensor, b: torch.Tensor, p: int) -> str:
    """Which read-outs moved by more than 1e-6 of their norm (float32 rounding is ~1e-7): p itself, and how many of
    the positions after it (a patch's effect fades with the decay, so far positions may move less than that)."""
    a, b = a[0], b[0]
    diff = (a - b).flatten(1).norm(dim=-1) > 1e-6 * b.flatten(1).norm(dim=-1)  # [pos] (batch 1)
    later = int(diff[p + 1:].sum())
    return f"{'p' if diff[p] else 'not p'} and {later} of the {len(diff) - p - 1} after it"


def peak_mb(directory: Path, who: str, t: int, read: bool) -> float:
    """Peak RSS (MB) of a fresh process that loads the model, then runs a plain forward (``read`` False) or reads
    the state of layer 0 at t // 2 (``read`` True)."""
    args = [sys.executable, __file__, "--child", who, "--dir", str(directory), "--T", str(t)] + (["--read"] if read else [])
    res = subprocess.run(args, capture_output=True, text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": "",
                                                                                "HF_HUB_OFFLINE": "1"})
    return json.loads(res.stdout.strip().splitlines()[-1])["peak_mb"]


def child(who: str, directory: Path, t: int, read: bool) -> None:
    torch.set_num_threads(1)
    x = ids(t)
    with torch.no_grad():
        if who == "ours":
            import workbench

            model = workbench.from_pretrained(directory)
            if read:
                model.fast_weights(x, 0, [t // 2])
            else:
                model(x)
        else:
            bridge = boot_theirs(directory)
            if read:
                _, cache = bridge.run_with_cache(x, use_cache=False,
                                                 names_filter=lambda n: n.startswith("blocks.0.linear_attn."))
                bridge.blocks[0].linear_attn.compute_ssm_state(cache, 0, time_step=t // 2)
            else:
                bridge(x, use_cache=False)
    print(json.dumps({"peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--child", choices=["ours", "theirs"])
    ap.add_argument("--dir")
    ap.add_argument("--T", type=int, default=8192)
    ap.add_argument("--read", action="store_true")
    a = ap.parse_args()
    if a.child:
        return child(a.child, Path(a.dir), a.T, a.read)
    torch.set_num_threads(1)
    start, cpu = time.time(), time.process_time()
    t_long = 1024 if a.quick else a.T
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp) / "qwen3_5_tiny"
        build(directory)
        e = exactness(directory, 64, 20)
        mem = {(who, read): peak_mb(directory, who, t_long, read) for who in ("ours", "theirs") for read in (False, True)}
    h, dk, dv = (CONFIG[f"linear_{k}"] for k in ("num_value_heads", "key_head_dim", "value_head_dim"))
    c = 64  # our chunk length (ModelConfig.chunk_size)
    print(f"`python benchmarks/compare_transformer_lens.py{' --quick' if a.quick else ''}` — tiny random Qwen3.5 "
          f"(2 Gated DeltaNet layers; layer 0: {h} value heads, d_k = {dk}, d_v = {dv}), fp32, CPU, 1 thread\n")
    print("| measure (layer 0, Gated DeltaNet) | workbench | TransformerLens 4.x bridge |")
    print("|---|---|---|")
    print(f"| effective attention: ‖A·v − z‖/‖z‖, T = 64 | {e['ours_ea']:.1e} | {e['theirs_ea']:.1e} |")
    print(f"| state after p = 20 set to 0, T = 64: read-outs that move (> 1e-6 relative) | {e['ours_changed']} | {e['theirs_changed']} |")
    print(f"| … error after p against a re-run from the patched state | {e['ours_patch_err']:.1e} | "
          f"{e['theirs_patch_err']:.1e} |")
    print(f"| peak RSS of a process reading the state at t = {t_long // 2} of T = {t_long} (of one running a plain "
          f"forward) | {mem[('ours', True)]:.0f} MB ({mem[('ours', False)]:.0f} MB) | {mem[('theirs', True)]:.0f} MB "
          f"({mem[('theirs', False)]:.0f} MB) |")
    print(f"| … states held (float32) | {t_long // c} chunk starts = {t_long // c * h * dk * dv * 4 / 2**20:.2f} MB | "
          f"{t_long} steps = {t_long * h * dk * dv * 4 / 2**20:.2f} MB (plus a Python list of as many) |")
    print(f"\nwall {time.time() - start:.1f} s, CPU {time.process_time() - cpu:.1f} s (this process; the memory rows "
          "run in 4 child processes)")


if __name__ == "__main__":
    main()
