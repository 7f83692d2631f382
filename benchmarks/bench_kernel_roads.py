"""The roads tried toward a faster delta-rule chunk kernel (issue 19), each measured in one process, interleaved,
1 thread: the numbers behind kernels/README.md's "Speed: what was tried".

    python benchmarks/bench_kernel_roads.py            # B=1, H=4, T=2048, D=64, fp32, gated
    python benchmarks/bench_kernel_roads.py --quick    # a tiny smoke run

0. the forward's phases at blocks of 32 (each step of kernels/delta_rule/wy.py timed on its own);
1. the triangular systems: block-doubling inverse + product, ``torch.linalg.solve_triangular``, forward
   substitution (a loop over rows), and the native trsm (kernels/delta_rule/wy_native.c), per block size;
2. the chunk hand-off: the PyTorch loop (three dispatches per chunk), the native loop, and a parallel
   (Hillis–Steele) scan of the affine maps S ↦ A_c S + B_c, A_c = γ_C I − (ρK)ᵀW, B_c = (ρK)ᵀU₀, with the
   batched products that form A_c and B_c;
3. the block size of the WY form (16, 32, 64), native helpers on and off, forward (native: the fused pass) and
   forward+backward;
4. the kernel before this work (``git show 7bb60b5:kernels/delta_rule/chunk.py``, autograd through every
   op) against the current one, forward and forward+backward;
5. the forward without autograd as one fused C pass per block and head (``wy.fused_forward``) against the staged
   native path (batched products, then the native hand-off) and transformers' ``torch_chunk_gated_delta_rule``,
   gated and ungated; the fused pass with and without the delta errors and chunk states written out.
Times are the best thread-CPU ms (benchmarks/timing.py; wall in parentheses).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    from timing import interleaved_wall_cpu  # run as a script: benchmarks/ is on sys.path
except ImportError:
    from benchmarks.timing import interleaved_wall_cpu

from workbench.kernels import _native, delta_rule
from workbench.kernels._chunking import to_chunks
from workbench.kernels._decay import cumulative_log_decay, decay_from_log, decay_matrix
from workbench.kernels._triangular import unit_lower_inverse

chunk_module = importlib.import_module("workbench.kernels.delta_rule.chunk")
wy = importlib.import_module("workbench.kernels.delta_rule.wy")
ROOT = Path(__file__).resolve().parents[1]
BEFORE = "7bb60b5"  # main before issue 19's work


def show(title: str, times: dict) -> None:
    print(f"\n{title}")
    for name, (wall, cpu) in times.items():
        print(f"  {name:<46} {cpu:>8.2f} ms ({wall:.2f})")


def forward_substitution(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """(I + tril(m, −1))⁻¹ x by a loop over rows: y_t = x_t − Σ_{i<t} m_ti y_i."""
    y = x.clone()
    for t in range(1, m.shape[-1]):
        y[:, t] -= (m[:, t:t + 1, :t] @ y[:, :t])[:, 0]
    return y


def scan_handoff(a: torch.Tensor, b: torch.Tensor, s0: torch.Tensor) -> torch.Tensor:
    """All chunk-start states of S_{c+1} = A_c S_c + B_c by a Hillis–Steele scan over chunks (log₂ n levels of
    batched d×d products): compose (A, B) pairs, then apply the prefix maps to S_0."""
    a, b = a.clone(), b.clone()
    n, step = a.shape[0], 1
    while step < n:  # (A_j, B_j) ← (A_j A_{j−step}, A_j B_{j−step} + B_j)
        a_prev, b_prev = a[:-step].clone(), b[:-step].clone()
        b[step:] = torch.baddbmm(b[step:].flatten(0, 1), a[step:].flatten(0, 1), b_prev.flatten(0, 1)).view_as(b_prev)
        a[step:] = (a[step:].flatten(0, 1) @ a_prev.flatten(0, 1)).view_as(a_prev)
        step *= 2
    ends = torch.baddbmm(b.flatten(0, 1), a.flatten(0, 1), s0.repeat(n, 1, 1)).view_as(b)  # S_1 … S_n
    return torch.cat([s0[None], ends[:-1]])


def before_kernel():
    """The chunk kernel of commit BEFORE, loaded as a module of this package (its relative imports resolve to
    today's _chunking/_decay/_triangular, unchanged in what it uses); None without git or that commit."""
    try:
        src = subprocess.run(["git", "show", f"{BEFORE}:kernels/delta_rule/chunk.py"], capture_output=True,
                             text=True, cwd=ROOT, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    name = "workbench.kernels.delta_rule._chunk_before"
    with tempfile.TemporaryDirectory() as tmp:  # imported from a file like any module (its package: today's)
        path = Path(tmp) / "_chunk_before.py"
        path.write_text(src)
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module.delta_rule_chunk


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    b, t, h, d = (1, 128, 2, 16) if args.quick else (1, 2048, 4, 64)
    reps = 1 if args.quick else args.repeats
    print("command: python benchmarks/bench_kernel_roads.py " + " ".join(sys.argv[1:] if argv is None else argv))
    print(f"torch {torch.__version__}, 1 thread; B={b} H={h} T={t} D={d} fp32, gated; best of {reps} interleaved runs")
    print("load average at the start: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, t, h, d, generator=gen) * d**-0.5
    k = F.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1)
    v, beta = torch.randn(b, t, h, d, generator=gen), torch.rand(b, t, h, generator=gen)
    g = -torch.rand(b, t, h, generator=gen) * 0.1
    lib = wy.native_library(q)

    # 0. the forward's phases, blocks of 32: the steps of wy.wy_forward, each timed on its own
    C = 32
    qc, kc, vc, bc = to_chunks(q, C), to_chunks(k, C), to_chunks(v, C), to_chunks(beta[..., None], C)
    gc = to_chunks(g[..., None], C)[..., 0]
    n, bh = qc.shape[:2]
    nb = n * bh
    kqw = qc.new_empty(n, bh, 3 * C, d)

    def layout():
        kqw[:, :, :C] = kc
        kqw[:, :, C:2 * C] = qc
        return torch.mul(vc, bc)

    def products():
        return torch.bmm(kqw[:, :, :2 * C].reshape(nb, 2 * C, d), kqw[:, :, :C].reshape(nb, C, d).transpose(-1, -2))

    scores = products().view(nb, 2, C, C)
    decayed = torch.empty_like(scores)

    def decays():
        cum = cumulative_log_decay(gc)
        torch.mul(scores, decay_matrix(cum, inplace=True).view(nb, 1, C, C), out=decayed)
        gamma, rho = decay_from_log(cum)[..., None], decay_from_log(cum[..., -1:] - cum)[..., None]
        return torch.mul(kqw[:, :, :C], rho), torch.mul(kqw[:, :, :C], bc * gamma)

    def solves():
        lm = scores[:, 0] * bc.reshape(nb, C, 1)
        wy._solve_into(lib, lm, torch.mul(vc, bc), C)
        wy._solve_into(lib, lm, torch.mul(kqw[:, :, :C], bc), C)

    with torch.no_grad():
        fns = {"layout copies ([K; Q] buffer, diag(β)V)": layout, "[K; Q] Kᵀ": products,
               "decay matrix and γ, ρ passes": decays, "triangular solves": solves,
               "whole wy_forward (hand-off and read-out: the rest)": lambda: wy.wy_forward(qc, kc, vc, bc, gc, None, b)}
        show(f"0. forward phases, blocks of {C} ({'native' if lib is not None else 'PyTorch'} helpers)",
             interleaved_wall_cpu(fns, reps))

    # 1. the triangular systems [U₀ | W] = L⁻¹ X, X [nb, C, 2d]
    for C in (16, 32, 64):
        nb = b * h * (t // C)
        m = torch.randn(nb, C, C, generator=gen) * 0.1
        x = torch.randn(nb, C, 2 * d, generator=gen)
        lower = torch.eye(C) + m.tril(-1)
        fns = {"doubling inverse, then bmm": lambda: unit_lower_inverse(m) @ x,
               "torch.linalg.solve_triangular": lambda: torch.linalg.solve_triangular(lower, x, upper=False,
                                                                                       unitriangular=True),
               "forward substitution (loop over rows)": lambda: forward_substitution(m, x)}
        if lib is not None:
            xs = x.clone()
            fns["native trsm per block (in place)"] = lambda: wy._solve(lib, m, xs.copy_(x))
        show(f"1. triangular solves, blocks of {C} ({nb} systems, {2 * d} right-hand sides)",
             interleaved_wall_cpu(fns, reps))

    # 2. the hand-off, blocks of 32
    C = 32
    n, bh = t // C, b * h
    uw = torch.randn(n, bh, C, 2 * d, generator=gen) * 0.1
    u0, w = uw[..., :d], uw[..., d:]
    kw = torch.randn(n, bh, C, d, generator=gen) * 0.1
    gend = torch.rand(n, bh, 1, 1, generator=gen)
    s0 = torch.zeros(bh, d, d)

    def torch_loop():
        starts, u = torch.empty(n + 1, bh, d, d), torch.empty(n, bh, C, d)
        starts[0] = s0
        for i in range(n):
            torch.baddbmm(u0[i], w[i], starts[i], alpha=-1.0, out=u[i])
            torch.mul(starts[i], gend[i], out=starts[i + 1])
            starts[i + 1].baddbmm_(kw[i].transpose(-1, -2), u[i])
        return starts

    def scan():
        ab = kw.transpose(-1, -2).flatten(0, 1) @ uw.flatten(0, 1)  # (ρK)ᵀ[U₀ | W]  [n·bh, d, 2d]
        a = (torch.eye(d) * gend.flatten(0, 1) - ab[..., d:]).view(n, bh, d, d)
        starts = scan_handoff(a, ab[..., :d].reshape(n, bh, d, d), s0)
        return starts, torch.baddbmm(u0.flatten(0, 1), w.flatten(0, 1), starts.flatten(0, 1), alpha=-1.0)

    fns = {"PyTorch loop (3 dispatches per chunk)": torch_loop, "parallel scan of affine maps": scan}
    if lib is not None:
        kp = torch.cat([kw.transpose(-1, -2), torch.randn(n, bh, C, C, generator=gen).tril()], dim=2)
        qw = torch.cat([torch.randn(n, bh, C, d, generator=gen), w], dim=2).contiguous()
        u0c, gc, gam = u0.contiguous(), gend.reshape(n, bh).contiguous(), torch.rand(n, bh, C, generator=gen)
        st, uu, oo = torch.zeros(n + 1, bh, d, d), torch.empty(n, bh, C, d), torch.empty(n, bh, C, d)
        P = _native.ptr
        fns["native loop, with the read-out (2 BLAS calls per chunk, head)"] = lambda: lib.wy_loop_fwd(
            n, bh, C, d, d, P(qw), 2 * C * d, P(u0c), P(kp), P(gc), P(gam), P(uu), P(st), P(oo), bh)
    show(f"2. the hand-off of {n} chunks of {C}, {bh} heads", interleaved_wall_cpu(fns, reps))
    ref = torch_loop()
    sc = scan()[0]
    print(f"  scan vs loop, max relative difference of the states: {float((sc - ref[:n]).abs().max() / ref.abs().max()):.1e}")

    # 3. block size × native helpers, forward and forward+backward
    leaves = [x.detach().clone().requires_grad_() for x in (q, k, v, beta, g)]
    default_block, default_fused = chunk_module.WY_BLOCK, chunk_module.FUSED_BLOCK

    def variant(block, native, backward):
        def run():
            chunk_module.WY_BLOCK = chunk_module.FUSED_BLOCK = block
            if not native:
                os.environ[_native.ENV] = "0"
            try:
                if backward:
                    delta_rule(*leaves[:4], g=leaves[4]).output.sum().backward()
                else:
                    with torch.no_grad():
                        delta_rule(q, k, v, beta, g=g)
            finally:
                os.environ.pop(_native.ENV, None)
        return run

    blocks = (16, 32, 64)
    try:
        for backward, r in ((False, reps), (True, max(1, reps // 3))):
            fns = {f"block {bl}, {'native' if nat else 'PyTorch only'}": variant(bl, nat, backward)
                   for bl in blocks for nat in (True, False)}
            show(f"3. whole kernel, {'forward+backward' if backward else 'forward'}", interleaved_wall_cpu(fns, r))
    finally:
        chunk_module.WY_BLOCK, chunk_module.FUSED_BLOCK = default_block, default_fused

    # 4. before this work vs now
    before = before_kernel()
    if before is None:
        print(f"\n4. skipped: git or commit {BEFORE} not available")
    else:
        def old(backward):
            def run():
                if backward:
                    before(*leaves[:4], g=leaves[4]).output.sum().backward()
                else:
                    with torch.no_grad():
                        before(q, k, v, beta, g=g)
            return run
        for backward, r in ((False, reps), (True, max(1, reps // 3))):
            fns = {f"before ({BEFORE}, C=64, autograd backward)": old(backward),
                   f"now (blocks of {default_fused if not backward else default_block}, native)":
                   variant(default_fused if not backward else default_block, True, backward)}
            show(f"4. before / now, {'forward+backward' if backward else 'forward'}", interleaved_wall_cpu(fns, r))
    # 5. the fused inference pass
    try:
        from transformers.models.qwen3_next import modeling_qwen3_next as m
        peer = getattr(m.torch_chunk_gated_delta_rule, "__wrapped__", m.torch_chunk_gated_delta_rule)
    except ImportError:
        peer = None
    if lib is None:
        print("\n5. skipped: no native library")
    else:
        def ours(fused, gated, extras=False):
            def run():
                wy.FUSED = fused
                try:
                    with torch.no_grad():
                        delta_rule(q, k, v, beta, g=g if gated else None, output_delta=extras,
                                   output_chunk_states=extras)
                finally:
                    wy.FUSED = True
            return run
        fns, q_peer = {}, q * d**0.5  # transformers scales q by d^-1/2 itself
        for gated in (True, False):
            kind = "gated" if gated else "ungated"
            fns[f"{kind}: fused pass"] = ours(True, gated)
            fns[f"{kind}: fused pass + delta errors, chunk states"] = ours(True, gated, True)
            fns[f"{kind}: staged (batched products, native loop)"] = ours(False, gated)
            if peer is not None:
                gg = g if gated else torch.zeros_like(g)
                fns[f"{kind}: transformers torch_chunk"] = lambda gg=gg: peer(q_peer, k, v, gg, beta)
        with torch.no_grad():
            times = interleaved_wall_cpu(fns, reps)
        show("5. forward without autograd: fused pass / staged / transformers", times)
        if peer is not None:
            for kind in ("gated", "ungated"):
                tw, tc = times[f"{kind}: transformers torch_chunk"]
                fw, fc = times[f"{kind}: fused pass"]
                sw, sc_ = times[f"{kind}: staged (batched products, native loop)"]
                print(f"  {kind}: transformers / fused {tc / fc:.2f}× ({tw / fw:.2f}× wall), transformers / staged "
                      f"{tc / sc_:.2f}× ({tw / sw:.2f}× wall)")
    print("\nload average at the end: " + ", ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
