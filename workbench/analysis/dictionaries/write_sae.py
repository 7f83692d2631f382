"""WriteSAE (Young 2026, arXiv 2605.12770): a sparse dictionary of rank-one atoms for one head's state writes.

A delta-rule memory writes one rank-one matrix per position, X_t = k_t u_tᵀ ``[d_k, d_v]``
(:meth:`workbench.mixers.Mixer.state_write`). WriteSAE factors each decoder atom the same way, a_i = d_i g_iᵀ,
so an atom has the shape of a native write and can be installed in its place at one position
(:mod:`.substitution`). As in the paper's primary variant the encoder is bilinear,

    pre_i = e_iᵀ (X − B) f_i + b_i        (= (e_i·k)(f_i·u) − e_iᵀ B f_i + b_i for a rank-one X)
    c     = TopK(pre)   or   ReLU(pre) with an L1 penalty
    X̂     = s · (Σ_i c_i d_i g_iᵀ) + B      (s: ``input_scale``, B: the decoder bias ``[d_k, d_v]``)

trained on X / s (s = the mean Frobenius norm of the training writes, so codes are in units of a typical write)
with ‖d_i‖ = ‖g_i‖ = 1 after every step, so c_i is the Frobenius norm the atom contributes. Followed from
the paper's description and its released ``core/sae.py`` (``BilinearMatrixSAE``: bilinear encoder, rank-1
decoder, decoder bias, top-k), written here for our factor inputs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import nn

from ...dataclass_io import JsonConfig, check_int_fields
from .codes import check_sparsity, sparse_codes


@dataclass(frozen=True)
class WriteSAEConfig(JsonConfig):
    """``n_atoms`` rank-one atoms; ``sparsity`` "topk" (``k`` atoms per write) or "relu_l1" (penalty ``l1``);
    training: ``steps`` of Adam at ``lr`` on minibatches of ``batch_size`` writes, seeded by ``seed``; atoms
    silent for ``resample_every`` steps are restarted on badly reconstructed writes (0: never)."""

    n_atoms: int = 256
    sparsity: str = "topk"
    k: int = 4
    l1: float = 1e-3
    steps: int = 2000
    batch_size: int = 256
    lr: float = 3e-3
    seed: int = 0
    resample_every: int = 250

    def __post_init__(self) -> None:
        check_int_fields(self, ("n_atoms", "steps", "batch_size"))
        check_int_fields(self, ("resample_every",), minimum=0)
        check_sparsity(self.sparsity, self.k, self.l1, self.n_atoms, type(self).__name__)
        if not isinstance(self.lr, (int, float)) or isinstance(self.lr, bool) or self.lr <= 0:
            raise ValueError(f"WriteSAEConfig.lr must be a number > 0, got {self.lr!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ValueError(f"WriteSAEConfig.seed must be an int, got {self.seed!r}")


class WriteSAE(nn.Module):
    """A dictionary of ``n_atoms`` rank-one atoms ``dec_keys[i] ⊗ dec_values[i]`` for writes ``[d_k, d_v]``."""

    def __init__(self, cfg: WriteSAEConfig, d_k: int, d_v: int):
        super().__init__()
        self.cfg, self.d_k, self.d_v = cfg, d_k, d_v
        n = cfg.n_atoms
        gen = torch.Generator().manual_seed(cfg.seed)
        unit = lambda *shape: nn.functional.normalize(torch.randn(*shape, generator=gen), dim=-1)  # noqa: E731
        self.dec_keys = nn.Parameter(unit(n, d_k))  # [n_atoms, d_k]  d_i
        self.dec_values = nn.Parameter(unit(n, d_v))  # [n_atoms, d_v]  g_i
        self.enc_keys = nn.Parameter(self.dec_keys.detach().clone())  # [n_atoms, d_k]  e_i
        self.enc_values = nn.Parameter(self.dec_values.detach().clone())  # [n_atoms, d_v]  f_i
        self.b_enc = nn.Parameter(torch.zeros(n))
        self.b_dec = nn.Parameter(torch.zeros(d_k, d_v))  # B
        self.register_buffer("input_scale", torch.ones(()))  # s

    @property
    def n_atoms(self) -> int:
        return self.cfg.n_atoms

    def check_writes(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        if keys.shape[-1] != self.d_k or values.shape[-1] != self.d_v or keys.shape[:-1] != values.shape[:-1]:
            raise ValueError(f"writes must be keys [..., d_k={self.d_k}] and values [..., d_v={self.d_v}] with the same "
                             f"leading axes, got {tuple(keys.shape)} and {tuple(values.shape)}")

    def encode(self, keys: Float[torch.Tensor, "*n d_k"], values: Float[torch.Tensor, "*n d_v"]
               ) -> Float[torch.Tensor, "*n n_atoms"]:
        """Codes of the writes k uᵀ (in units of ``input_scale``)."""
        self.check_writes(keys, values)
        s = self.input_scale
        bias = torch.einsum("ik,kv,iv->i", self.enc_keys, self.b_dec, self.enc_values)
        pre = (keys @ self.enc_keys.T) * (values @ self.enc_values.T) / s - bias / s + self.b_enc
        return sparse_codes(pre, self.cfg.sparsity, self.cfg.k)

    def atoms(self) -> Float[torch.Tensor, "n_atoms d_k d_v"]:
        return torch.einsum("ik,iv->ikv", self.dec_keys, self.dec_values)

    def decode(self, codes: Float[torch.Tensor, "*n n_atoms"]) -> Float[torch.Tensor, "*n d_k d_v"]:
        """s · Σ_i c_i d_i g_iᵀ + B."""
        return self.input_scale * torch.einsum("...i,ik,iv->...kv", codes, self.dec_keys, self.dec_values) + self.b_dec

    def forward(self, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstructed writes ``[..., d_k, d_v]``, codes ``[..., n_atoms]``)."""
        codes = self.encode(keys, values)
        return self.decode(codes), codes

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        self.dec_keys.copy_(nn.functional.normalize(self.dec_keys, dim=-1))
        self.dec_values.copy_(nn.functional.normalize(self.dec_values, dim=-1))

    @torch.no_grad()
    def restart_(self, atoms: torch.Tensor, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Atoms ``atoms`` restarted as the (normalised) writes keys[i] ⊗ values[i], encoder = decoder, no bias."""
        k, u = nn.functional.normalize(keys, dim=-1), nn.functional.normalize(values, dim=-1)
        for dec, enc, x in ((self.dec_keys, self.enc_keys, k), (self.dec_values, self.enc_values, u)):
            dec[atoms] = x.to(dec)
            enc[atoms] = x.to(enc)
        self.b_enc[atoms] = 0

    @classmethod
    def from_writes(cls, keys: Float[torch.Tensor, "n d_k"], values: Float[torch.Tensor, "n d_v"]) -> "WriteSAE":
        """The dictionary whose atom i *is* write i (decoder factors k_i, u_i unnormalised, no bias, s = 1):
        code e_i decodes to k_i u_iᵀ exactly. Its encoder is the decoder (tied) with top-1 codes; a check of the
        machinery, not a trained dictionary."""
        n, d_k = keys.shape
        sae = cls(WriteSAEConfig(n_atoms=n, k=1), d_k, values.shape[-1]).to(keys.dtype)
        with torch.no_grad():
            for p, x in ((sae.dec_keys, keys), (sae.enc_keys, keys), (sae.dec_values, values), (sae.enc_values, values)):
                p.copy_(x)
        return sae


def frobenius(keys: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """‖k uᵀ‖_F = ‖k‖ ‖u‖ ``[...]``."""
    return keys.norm(dim=-1) * values.norm(dim=-1)
