"""Streaming, mergeable K-FAC factors: A = E[a aᵀ] and G = E[g gᵀ] over tokens, uncentred.

:class:`KFACFactors` keeps Σ_t a_t a_tᵀ, Σ_t g_t g_tᵀ (float64) and the token count, so one pass
over a stream equals any split of it merged back (up to float64 rounding); ``result()`` divides.
:func:`collect_kfac` streams batches through a model (batch ``i`` draws its sampled labels from a
generator seeded by ``(seed, i)``, so a batch's contribution does not depend on which process or
in which order it is seen).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Literal, Optional

import torch
from tqdm.auto import tqdm

from ...dataclass_io import JsonConfig, check_int_fields
from .capture import LABELS, capture_linear
from .sites import resolve_sites


@dataclass
class KFACFactors:
    """Sufficient statistics of one linear layer ``[d_in] → [d_out]``."""

    d_in: int
    d_out: int
    n_tokens: int = 0
    A_sum: torch.Tensor = field(default=None)  # [d_in, d_in]   Σ_t a_t a_tᵀ  (float64)
    G_sum: torch.Tensor = field(default=None)  # [d_out, d_out] Σ_t g_t g_tᵀ  (float64)

    def __post_init__(self) -> None:
        check_int_fields(self, ("d_in", "d_out"))
        if self.A_sum is None:
            self.A_sum = torch.zeros(self.d_in, self.d_in, dtype=torch.float64)
        if self.G_sum is None:
            self.G_sum = torch.zeros(self.d_out, self.d_out, dtype=torch.float64)

    @torch.no_grad()
    def update(self, a: torch.Tensor, g: torch.Tensor) -> "KFACFactors":
        """Add tokens: inputs ``a [tokens, d_in]`` and output gradients ``g [tokens, d_out]``; returns self."""
        if a.dim() != 2 or g.dim() != 2 or a.shape[0] != g.shape[0]:
            raise ValueError(f"update takes a [tokens, d_in] and g [tokens, d_out] with the same number of tokens, "
                             f"got {tuple(a.shape)} and {tuple(g.shape)}")
        if a.shape[1] != self.d_in or g.shape[1] != self.d_out:
            raise ValueError(f"got widths ({a.shape[1]}, {g.shape[1]}); these factors are for "
                             f"(d_in, d_out) = ({self.d_in}, {self.d_out})")
        a, g = a.double(), g.double()
        return self._add(a.T @ a, g.T @ g, a.shape[0])

    def _add(self, A_sum: torch.Tensor, G_sum: torch.Tensor, n: int) -> "KFACFactors":
        self.A_sum = self.A_sum + A_sum.to(self.A_sum.device)
        self.G_sum = self.G_sum + G_sum.to(self.G_sum.device)
        self.n_tokens += int(n)
        return self

    def merge(self, other: "KFACFactors") -> "KFACFactors":
        """Add another accumulator of the same layer shape into this one; returns self."""
        if not isinstance(other, KFACFactors):
            raise ValueError(f"merge takes a KFACFactors, got {type(other).__name__}")
        if (other.d_in, other.d_out) != (self.d_in, self.d_out):
            raise ValueError(f"cannot merge factors of shape {(other.d_in, other.d_out)} into {(self.d_in, self.d_out)}")
        return self._add(other.A_sum, other.G_sum, other.n_tokens)

    def copy(self) -> "KFACFactors":
        return dataclasses.replace(self, A_sum=self.A_sum.clone(), G_sum=self.G_sum.clone())

    def result(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(A [d_in, d_in], G [d_out, d_out])``, the means over tokens (float64)."""
        if self.n_tokens == 0:
            raise ValueError("no tokens yet; call update(a, g) (or collect_kfac) first")
        return self.A_sum / self.n_tokens, self.G_sum / self.n_tokens

    def to_dict(self) -> dict:
        """Plain lists (JSON-serialisable); :meth:`from_dict` inverts it exactly."""
        return {"d_in": self.d_in, "d_out": self.d_out, "n_tokens": self.n_tokens,
                "A_sum": self.A_sum.tolist(), "G_sum": self.G_sum.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> "KFACFactors":
        return cls(data["d_in"], data["d_out"], data["n_tokens"], torch.tensor(data["A_sum"], dtype=torch.float64),
                   torch.tensor(data["G_sum"], dtype=torch.float64))


@dataclass(frozen=True)
class KFACConfig(JsonConfig):
    """What to collect: ``sites`` (parameter names; empty = every linear layer), ``labels`` ("sampled":
    true Fisher, labels drawn from the model; "gold": the next token) and the sampling ``seed``."""

    sites: tuple[str, ...] = ()
    labels: Literal["sampled", "gold"] = "sampled"
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.sites, str) or not all(isinstance(s, str) for s in self.sites):
            raise ValueError(f"KFACConfig.sites must be a list of parameter names, got {self.sites!r}")
        object.__setattr__(self, "sites", tuple(self.sites))
        if self.labels not in LABELS:
            raise ValueError(f"KFACConfig.labels must be one of {LABELS}, got {self.labels!r}")
        check_int_fields(self, ("seed",), minimum=0)



def batch_generator(seed: int, index: int, device="cpu") -> torch.Generator:
    """The generator batch ``index`` of a stream draws its sampled labels from."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + index)


def collect_kfac(model, batches: Iterable, config: KFACConfig = KFACConfig(), *, rank: int = 0,
                 world_size: int = 1, progress: bool = True, total: Optional[int] = None) -> dict[str, KFACFactors]:
    """K-FAC factors of ``config.sites`` over a stream of token batches ``[batch, pos]``.

    This process takes batches ``rank, rank + world_size, …`` of the stream (all of them by default);
    all-reduce the result across processes with :func:`.distributed.all_reduce_kfac`. Returns
    parameter name → :class:`KFACFactors`. The model is not changed.
    """
    if not isinstance(config, KFACConfig):
        raise ValueError(f"config must be a KFACConfig, got {type(config).__name__}")
    if not (isinstance(world_size, int) and world_size >= 1 and isinstance(rank, int) and 0 <= rank < world_size):
        raise ValueError(f"need 0 ≤ rank < world_size, got rank={rank!r}, world_size={world_size!r}")
    sites = resolve_sites(model, config.sites or None)
    stats = {s.param: KFACFactors(s.d_in, s.d_out) for s in sites}
    device = model.unembed.W_U.device
    for i, tokens in enumerate(tqdm(batches, desc="K-FAC", total=total, disable=not progress, leave=False)):
        if i % world_size != rank:
            continue
        gen = batch_generator(config.seed, i, device) if config.labels == "sampled" else None
        captured = capture_linear(model, tokens, sites, config.labels, gen)
        outer: dict[str, torch.Tensor] = {}  # an input shared by several sites (q, k, v, β): once
        for s in sites:
            a, g = captured[s.param]
            if s.input_hook not in outer:
                outer[s.input_hook] = a.double().T @ a.double()
            g64 = g.double()
            stats[s.param]._add(outer[s.input_hook], g64.T @ g64, a.shape[0])
    return stats
