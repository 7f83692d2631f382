"""An ordinary sparse autoencoder on activation vectors (any hook of the model), top-k (Gao et al. 2024) or
ReLU + L1 (Bricken et al. 2023):

    c = TopK((x − b_dec) W_enc + b_enc)   (or ReLU(·) with an L1 penalty),   x̂ = c W_dec + b_dec

with unit-norm decoder rows after every step and b_dec started at the mean activation. SAELens does not fit
as a dependency (``sae-lens`` requires ``transformer-lens<4``; the workbench uses ≥ 4.3), so it is written here
from the papers; :mod:`.splice` trains it on a named hook and splices it into the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import nn

from ...dataclass_io import JsonConfig, check_int_fields
from .codes import check_sparsity, sparse_codes


@dataclass(frozen=True)
class SAEConfig(JsonConfig):
    """``n_latents`` dictionary directions; ``sparsity`` "topk" (``k`` per vector) or "relu_l1" (penalty ``l1``);
    training: ``steps`` of Adam at ``lr`` on minibatches of ``batch_size`` vectors, seeded by ``seed``; latents
    silent for ``resample_every`` steps are restarted on badly reconstructed vectors (0: never)."""

    n_latents: int = 256
    sparsity: str = "topk"
    k: int = 8
    l1: float = 1e-3
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    seed: int = 0
    resample_every: int = 250

    def __post_init__(self) -> None:
        check_int_fields(self, ("n_latents", "steps", "batch_size"))
        check_int_fields(self, ("resample_every",), minimum=0)
        check_sparsity(self.sparsity, self.k, self.l1, self.n_latents, type(self).__name__)
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ValueError(f"SAEConfig.lr must be a number > 0, got {self.lr!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"SAEConfig.seed must be an int, got {self.seed!r}")


class SparseAutoencoder(nn.Module):
    """``encode(x [..., d_in]) -> [..., n_latents]``, ``decode(c) -> [..., d_in]``."""

    def __init__(self, cfg: SAEConfig, d_in: int):
        super().__init__()
        self.cfg, self.d_in = cfg, d_in
        gen = torch.Generator().manual_seed(cfg.seed)
        w_dec = nn.functional.normalize(torch.randn(cfg.n_latents, d_in, generator=gen), dim=-1)
        self.W_dec = nn.Parameter(w_dec)  # [n_latents, d_in]
        self.W_enc = nn.Parameter(w_dec.T.clone())  # [d_in, n_latents]  (started as the decoder's transpose)
        self.b_enc = nn.Parameter(torch.zeros(cfg.n_latents))
        self.b_dec = nn.Parameter(torch.zeros(d_in))

    @property
    def n_latents(self) -> int:
        return self.cfg.n_latents

    def encode(self, x: Float[torch.Tensor, "*n d_in"]) -> Float[torch.Tensor, "*n n_latents"]:
        if x.shape[-1] != self.d_in:
            raise ValueError(f"activations must be [..., d_in={self.d_in}], got {tuple(x.shape)}")
        return sparse_codes((x - self.b_dec) @ self.W_enc + self.b_enc, self.cfg.sparsity, self.cfg.k)

    def decode(self, codes: Float[torch.Tensor, "*n n_latents"]) -> Float[torch.Tensor, "*n d_in"]:
        return codes @ self.W_dec + self.b_dec

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction ``[..., d_in]``, codes ``[..., n_latents]``)."""
        codes = self.encode(x)
        return self.decode(codes), codes

    @torch.no_grad()
    def restart_(self, latents: torch.Tensor, x: torch.Tensor) -> None:
        """Latents ``latents`` restarted on the directions of the vectors ``x`` (centred on b_dec), no bias."""
        d = nn.functional.normalize(x - self.b_dec, dim=-1).to(self.W_dec)
        self.W_dec[latents] = d
        self.W_enc[:, latents] = d.T
        self.b_enc[latents] = 0

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.W_dec.copy_(nn.functional.normalize(self.W_dec, dim=-1))
