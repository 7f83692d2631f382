"""K-FAC factors over a stream split across processes, combined by all-reduce.

:func:`all_reduce_kfac` sums Σ a aᵀ, Σ g gᵀ and the token counts of every rank (one SUM all-reduce
per layer), so every rank ends with the factors of the whole stream. As a module under torchrun it
demonstrates this on a seeded model and seeded token batches (batch i goes to rank i mod world_size;
its sampled labels are seeded by (seed, i) whichever rank draws them):

    torchrun --standalone --nproc_per_node 2 -m workbench.analysis.kfac.distributed --out dist.pt
    python -m workbench.analysis.kfac.distributed --out single.pt       # the same factors

``--checkpoint DIR`` uses a saved model instead of the default tiny one. Rank 0 saves
``{"world_size": …, "factors": {param: KFACFactors.to_dict()}}`` with ``torch.save``.
"""

from __future__ import annotations

import argparse
from typing import Mapping, Optional

import torch
import torch.distributed as dist

from ... import atomic
from ..torchrun import process_group
from .stats import KFACConfig, KFACFactors, collect_kfac


def all_reduce_kfac(stats: Mapping[str, KFACFactors], group=None) -> Mapping[str, KFACFactors]:
    """Replace each rank's factors by the sum over all ranks (in place; returns ``stats``).

    Every rank must hold the same layers with the same shapes. Needs an initialised process group.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("torch.distributed is not initialised; call init_process_group first "
                         "(or run under torchrun), or skip the all-reduce in a single process")
    for name, s in stats.items():
        if not isinstance(s, KFACFactors):
            raise ValueError(f"stats[{name!r}] is a {type(s).__name__}, not a KFACFactors")
    layout = [(k, stats[k].d_in, stats[k].d_out) for k in sorted(stats)]
    layouts = [None] * dist.get_world_size(group)
    dist.all_gather_object(layouts, layout, group=group)
    if any(other != layout for other in layouts):
        raise ValueError("ranks hold different K-FAC layers or shapes; collect the same sites on every rank")
    for k in sorted(stats):
        s = stats[k]
        packed = torch.cat([s.A_sum.flatten(), s.G_sum.flatten(),
                            torch.tensor([s.n_tokens], dtype=torch.float64, device=s.A_sum.device)])
        dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
        na, ng = s.d_in ** 2, s.d_out ** 2
        s.A_sum = packed[:na].view(s.d_in, s.d_in).clone()
        s.G_sum = packed[na:na + ng].view(s.d_out, s.d_out).clone()
        s.n_tokens = round(float(packed[-1]))  # exact below 2⁵³
    return stats


# ---------------------------------------------------------------------- the torchrun demonstration
def demo_model():
    """A tiny seeded DeltaNet with a SwiGLU MLP (every kind of site)."""
    from ...config import ModelConfig
    from ...model import HookedFastWeightLM

    return HookedFastWeightLM(ModelConfig(d_vocab=29, d_model=16, n_layers=2, n_heads=2, d_head=8, d_mlp=24,
                                          mlp="swiglu", chunk_size=8, seed=3))


def demo_batches(n_batches: int, d_vocab: int, batch: int = 2, pos: int = 12, seed: int = 0):
    """Batch i of a seeded token stream ``[batch, pos]``."""
    for i in range(n_batches):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        yield torch.randint(0, d_vocab, (batch, pos), generator=g)


def collect_demo(n_batches: int = 6, labels: str = "sampled", seed: int = 0, rank: int = 0, world_size: int = 1,
                 checkpoint: Optional[str] = None, batch: int = 2, pos: int = 12) -> dict[str, KFACFactors]:
    """This rank's share of the demonstration stream (not yet all-reduced)."""
    if checkpoint is None:
        model = demo_model()
    else:
        from ...checkpoint import load

        model = load(checkpoint)
    batches = demo_batches(n_batches, model.cfg.d_vocab, batch, pos, seed)
    return collect_kfac(model, batches, KFACConfig(labels=labels, seed=seed), rank=rank, world_size=world_size,
                        progress=False, total=n_batches)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="file written by rank 0 (torch.save)")
    parser.add_argument("--batches", type=int, default=6, help="batches in the whole stream")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--seq-len", type=int, default=12)
    parser.add_argument("--labels", choices=["sampled", "gold"], default="sampled")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="a saved model instead of the tiny default one")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with process_group() as (rank, world):
        stats = collect_demo(args.batches, args.labels, args.seed, rank, world, args.checkpoint, args.batch_size,
                             args.seq_len)
        if world > 1:
            all_reduce_kfac(stats)
        if rank == 0:
            with atomic.replacing(args.out) as tmp:
                torch.save({"world_size": world, "factors": {k: v.to_dict() for k, v in stats.items()}}, tmp)

if __name__ == "__main__":
    main()
