"""Run the same script alone or under ``torchrun``: one context for the process group.

    with process_group() as (rank, world_size):
        stats = collect(..., rank, world_size)     # this rank's share of the stream
        if world_size > 1:
            all_reduce(stats)                      # every rank now holds the whole stream's statistics
        if rank == 0:
            write(stats)

Under torchrun (``WORLD_SIZE`` set) it initialises a gloo group (CPU) and always destroys it; alone it
yields ``(0, 1)`` and touches nothing.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

import torch.distributed as dist


@contextmanager
def process_group(backend: str = "gloo") -> Iterator[tuple[int, int]]:
    if "WORLD_SIZE" not in os.environ:
        yield 0, 1
        return
    dist.init_process_group(backend)
    try:
        yield dist.get_rank(), dist.get_world_size()
    finally:
        dist.destroy_process_group()
