"""The study as data: which bundled checkpoint, layer and heads, how many writes to train on, the dictionaries'
options, the firings to test and the sparsity sweep."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from workbench.analysis.dictionaries import SAEConfig, WriteSAEConfig


@dataclass(frozen=True)
class Study:
    """``checkpoint``: a folder of ``workbench/checkpoints``; its recipe's task draws the token stream
    (``train_batches`` × ``batch_size`` sequences seeded by ``data_seed`` to train on, ``eval_batches`` more
    seeded by ``data_seed + 1`` to test on). For each head of ``layer``: a WriteSAE (``write_sae``) on that
    head's writes, and the substitution test on at most ``n_firings`` firings per eval batch. The sweep retrains
    both dictionaries at each top-k in ``sweep_k`` (head ``heads[0]``). The ordinary SAE (``sae``) is trained on
    ``sae_hook``."""

    checkpoint: str = "mqar-gated-delta-d64"
    layer: int = 1
    heads: tuple[int, ...] = (0, 1)
    train_batches: int = 8
    eval_batches: int = 4
    batch_size: int = 16
    data_seed: int = 0
    write_sae: WriteSAEConfig = WriteSAEConfig(n_atoms=256, k=4, steps=1000, resample_every=200)
    n_firings: int = 250
    sweep_k: tuple[int, ...] = (1, 2, 4, 8, 16)
    sae_hook: str = "blocks.1.hook_resid_pre"
    sae: SAEConfig = SAEConfig(n_latents=256, k=8, steps=1000, resample_every=200)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["write_sae"], out["sae"] = self.write_sae.to_dict(), self.sae.to_dict()
        return out


FULL = Study()
QUICK = Study(checkpoint="toy-delta", heads=(0,), train_batches=2, eval_batches=1, batch_size=8,
              write_sae=WriteSAEConfig(n_atoms=32, k=2, steps=40, resample_every=20), n_firings=12,
              sweep_k=(1, 2), sae=SAEConfig(n_latents=32, k=4, steps=40, resample_every=20))
