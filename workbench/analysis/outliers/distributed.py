"""Outlier statistics over a data stream split across processes, combined by all-reduce.

:func:`all_reduce_stats` sums the sufficient statistics of :class:`~.stats.OutlierStats` over a
``torch.distributed`` group (SUM for sums and counts, MAX for per-neuron maxima, all-gather and merge
for the top-k entries), so every rank ends with the statistics of the whole stream. Run as a module
under torchrun it demonstrates this on a seeded stream (batch i goes to rank i mod world_size):

    torchrun --standalone --nproc_per_node 2 -m workbench.analysis.outliers.distributed --out dist.json
    python -m workbench.analysis.outliers.distributed --out single.json      # the same numbers

``--checkpoint DIR`` traces a saved model on random tokens (:func:`.trace.trace_outliers`) instead of
the synthetic activation stream. Rank 0 writes the metrics of every site as JSON.
"""

from __future__ import annotations

import argparse
import json
from typing import Mapping, Union

import torch
import torch.distributed as dist

from ... import atomic
from ..torchrun import process_group
from .stats import OutlierStats

StatsLike = Union[OutlierStats, Mapping[str, OutlierStats]]


def _all_reduce_one(stats: OutlierStats, group) -> None:
    scalars = torch.tensor([stats.n_tokens, stats.n_sequences, stats.n_massive_tokens, stats.sum_mmr,
                            stats.cos_sum, stats.n_pairs], dtype=torch.float64)
    packed = torch.cat([stats.sum, stats.sum_sq, stats.n_massive, scalars])
    dist.all_reduce(packed, op=dist.ReduceOp.SUM, group=group)
    d = stats.width
    stats.sum, stats.sum_sq, stats.n_massive = packed[:d].clone(), packed[d:2 * d].clone(), packed[2 * d:3 * d].clone()
    n_tokens, n_sequences, n_massive_tokens, stats.sum_mmr, stats.cos_sum, n_pairs = packed[3 * d:].tolist()
    stats.n_tokens, stats.n_sequences = round(n_tokens), round(n_sequences)  # exact below 2⁵³
    stats.n_massive_tokens, stats.n_pairs = round(n_massive_tokens), round(n_pairs)
    max_abs = stats.max_abs.clone()
    dist.all_reduce(max_abs, op=dist.ReduceOp.MAX, group=group)
    stats.max_abs = max_abs
    top = torch.stack([stats.top_ratio, stats.top_value, stats.top_pos.double(), stats.top_neuron.double()])
    gathered = [torch.empty_like(top) for _ in range(dist.get_world_size(group))]
    dist.all_gather(gathered, top, group=group)
    stats.top_ratio = torch.full_like(stats.top_ratio, -float("inf"))
    for t in gathered:  # rank order, identical on every rank
        stats._keep_top(t[0], t[1], t[2].long(), t[3].long())


def all_reduce_stats(stats: StatsLike, group=None) -> StatsLike:
    """Replace each rank's statistics by those of all ranks together (in place; returns ``stats``).

    Takes one :class:`OutlierStats` or a mapping of them (every rank must hold the same keys and
    settings). Needs an initialised process group (``torch.distributed.init_process_group``).
    """
    if not dist.is_available() or not dist.is_initialized():
        raise ValueError("torch.distributed is not initialised; call init_process_group first "
                         "(or run under torchrun), or skip the all-reduce in a single process")
    items = {"": stats} if isinstance(stats, OutlierStats) else dict(stats)
    for name, s in items.items():
        if not isinstance(s, OutlierStats):
            raise ValueError(f"stats[{name!r}] is a {type(s).__name__}, not an OutlierStats")
    keys = sorted(items)
    layout = [(k, items[k].width, items[k].top_k, items[k].abs_threshold, items[k].rel_threshold) for k in keys]
    layouts = [None] * dist.get_world_size(group)
    dist.all_gather_object(layouts, layout, group=group)
    if any(other != layout for other in layouts):
        raise ValueError("ranks hold different statistics (keys or settings); build them identically on every rank")
    for k in keys:
        _all_reduce_one(items[k], group)
    return stats


# ---------------------------------------------------------------------- the torchrun demonstration
def synthetic_batch(index: int, seed: int = 0, batch: int = 4, pos: int = 32, width: int = 64) -> torch.Tensor:
    """Batch ``index`` of a seeded activation stream ``[batch, pos, width]``: Gaussian noise, channel 3
    scaled ×20 (an outlier feature) and a massive activation (2000) on channel 7 of the first token."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + index)
    X = torch.randn(batch, pos, width, generator=g)
    X[..., 3] *= 20.0
    X[:, 0, 7] = 2000.0
    return X


def collect(n_batches: int, seed: int = 0, rank: int = 0, world_size: int = 1, checkpoint: str | None = None,
            batch: int = 4, pos: int = 32) -> dict[str, OutlierStats]:
    """This rank's share of the stream (batches rank, rank + world_size, …), not yet all-reduced."""
    mine = range(rank, n_batches, world_size)
    if checkpoint is None:
        stats = {"synthetic": OutlierStats(64)}
        for i in mine:
            stats["synthetic"].update(synthetic_batch(i, seed, batch, pos))
        return stats
    from ...checkpoint import load
    from .trace import trace_outliers

    model = load(checkpoint)
    tokens = (torch.randint(0, model.cfg.d_vocab, (batch, pos),
                            generator=torch.Generator().manual_seed(seed * 1_000_003 + i)) for i in mine)
    return trace_outliers(model, tokens, progress=False)


def summaries(stats: Mapping[str, OutlierStats]) -> dict[str, dict]:
    return {name: s.result().to_dict() for name, s in sorted(stats.items())}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="JSON file written by rank 0")
    parser.add_argument("--batches", type=int, default=8, help="batches in the whole stream")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint", default=None, help="trace this checkpoint on random tokens")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with process_group() as (rank, world):
        stats = collect(args.batches, args.seed, rank, world, args.checkpoint, args.batch_size, args.seq_len)
        if world > 1:
            all_reduce_stats(stats)
        if rank == 0:
            atomic.write_json(args.out, {"world_size": world, "sites": summaries(stats)}, indent=1)

if __name__ == "__main__":
    main()
