"""The chunked delta rule on a device: ours (``backend="chunk"``), flash-linear-attention's Triton kernels
(``backend="fla"``, CUDA only) and transformers' ``torch_chunk_gated_delta_rule``, forward and forward+backward,
timed round-robin with the device synchronised inside each timed call. ``bench_kernels.py`` prints this table
when a CUDA device is present; ``--device cpu`` runs the same code without fla (how the smoke test covers it)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from workbench.kernels import delta_rule


def synchronised(fn: Callable[[], object], device: torch.device) -> Callable[[], None]:
    def run() -> None:
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def device_rows(device: str, b: int, t: int, h: int, d: int, reps: int, peers: dict,
                timer: Callable) -> list[tuple[str, float, float]]:
    """(implementation, forward ms, forward+backward ms) for the gated delta rule on ``device``; ratios are
    for the caller. ``peers``: transformers' functions (``bench_kernels.transformers_peers``)."""
    dev = torch.device(device)
    gen = torch.Generator().manual_seed(0)
    q = torch.randn(b, t, h, d, generator=gen).to(dev) * d**-0.5
    k = F.normalize(torch.randn(b, t, h, d, generator=gen), dim=-1).to(dev)
    v = torch.randn(b, t, h, d, generator=gen).to(dev)
    beta = torch.rand(b, t, h, generator=gen).to(dev)
    g = (-torch.rand(b, t, h, generator=gen) * 0.1).to(dev)
    impls = {"ours chunk": lambda q, k, v, b_, g_: delta_rule(q, k, v, b_, g=g_).output}
    if dev.type == "cuda":
        impls["fla Triton (backend='fla')"] = lambda q, k, v, b_, g_: delta_rule(q, k, v, b_, g=g_, backend="fla").output
    if "chunk" in peers:  # it scales q by d^-1/2 itself
        impls["transformers torch_chunk"] = lambda q, k, v, b_, g_: peers["chunk"](q * d**0.5, k, v, g_, b_)[0]
    grads = [x.detach().requires_grad_() for x in (q, k, v, beta, g)]

    def forward(fn):
        def run():
            with torch.no_grad():
                fn(q, k, v, beta, g)
        return synchronised(run, dev)

    def forward_backward(fn):
        return synchronised(lambda: fn(*grads).sum().backward(), dev)

    f_ms = timer({n: forward(fn) for n, fn in impls.items()}, reps)
    fb_ms = timer({n: forward_backward(fn) for n, fn in impls.items()}, max(1, reps // 3))
    return [(n, f_ms[n], fb_ms[n]) for n in impls]


def print_device_table(rows: list[tuple[str, float, float]], title: str) -> None:
    ours_f, ours_fb = rows[0][1], rows[0][2]
    print(f"\n{title}; ratios peer / ours")
    print(f"{'implementation':<30} {'fwd ms':>9} {'fwd+bwd ms':>11} {'fwd: peer/ours':>15} {'fwd+bwd: peer/ours':>19}")
    for name, f, fb in rows:
        print(f"{name:<30} {f:>9.3f} {fb:>11.3f} {f / ours_f:>15.2f} {fb / ours_fb:>19.2f}")
