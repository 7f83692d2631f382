"""One training loop for both dictionaries: Adam on random minibatches (seeded), the reconstruction MSE plus
the sparsity penalty, unit-norm decoders after every step, a progress bar."""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm

from .codes import sparsity_penalty
from .sae import SAEConfig, SparseAutoencoder
from .write_sae import WriteSAE, WriteSAEConfig, frobenius


def _fit(module, data: Sequence[torch.Tensor], loss: Callable, cfg, desc: str, progress: bool,
         on_step: Optional[Callable[[int, int], None]] = None) -> pd.DataFrame:
    """``loss(*batch) -> (mse, codes, per-row error)``. Dictionary elements silent for ``cfg.resample_every``
    steps are restarted (``module.restart_``) on the batch's worst-reconstructed rows, up to 80 % of training.
    ``on_step(done, total)`` is called after each step (the app's progress bar)."""
    n = data[0].shape[0]
    if n == 0:
        raise ValueError("no training data: collect at least one vector/write")
    gen = torch.Generator().manual_seed(cfg.seed)
    with torch.no_grad():  # start every element on a data row (as the WriteSAE release and Gao et al. start near data)
        start = torch.randint(0, n, (codes_width(module),), generator=gen)
        module.restart_(torch.arange(len(start)), *(x[start] for x in data))
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    last_fired = torch.zeros(codes_width(module), dtype=torch.long)
    history = []
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        idx = torch.randint(0, n, (min(cfg.batch_size, n),), generator=gen)
        batch = [x[idx] for x in data]
        mse, codes, err = loss(*batch)
        total = mse + sparsity_penalty(codes, cfg.sparsity, cfg.l1)
        opt.zero_grad()
        total.backward()
        opt.step()
        module.normalize_decoder_()
        last_fired[(codes > 0).any(0).cpu()] = step
        every = cfg.resample_every
        if every and step and step % every == 0 and step <= 0.8 * cfg.steps:
            dead = torch.nonzero(last_fired <= step - every).flatten()
            if len(dead):
                worst = err.detach().argsort(descending=True)[: len(dead)].cpu()
                module.restart_(dead[: len(worst)], *(x[worst] for x in batch))
                last_fired[dead] = step
        if step % 50 == 0 or step == cfg.steps - 1:
            l0 = (codes > 0).float().sum(-1).mean().item()
            history.append({"step": step, "mse": mse.item(), "l0": l0})
            bar.set_postfix(mse=f"{mse.item():.3g}", l0=f"{l0:.1f}")
        if on_step is not None:
            on_step(step + 1, cfg.steps)
    return pd.DataFrame(history)


def codes_width(module) -> int:
    return module.n_atoms if isinstance(module, WriteSAE) else module.n_latents


def train_sae(activations: torch.Tensor, cfg: SAEConfig = SAEConfig(), progress: bool = True,
              on_step: Optional[Callable[[int, int], None]] = None) -> tuple[SparseAutoencoder, pd.DataFrame]:
    """A sparse autoencoder fitted to ``activations [n, d_in]``; returns it (eval mode) and the training history
    (step, mse, l0). ``on_step(done, total)`` follows the steps."""
    if activations.ndim != 2:
        raise ValueError(f"activations must be [n, d_in], got {tuple(activations.shape)}")
    x = activations.detach()
    sae = SparseAutoencoder(cfg, x.shape[1]).to(device=x.device, dtype=x.dtype)
    with torch.no_grad():
        sae.b_dec.copy_(x.mean(0))

    def loss(batch):
        recon, codes = sae(batch)
        err = (recon - batch).pow(2).sum(-1)
        return err.mean(), codes, err

    history = _fit(sae, (x,), loss, cfg, "SAE", progress, on_step)
    return sae.eval(), history


def train_write_sae(keys: torch.Tensor, values: torch.Tensor, cfg: WriteSAEConfig = WriteSAEConfig(),
                    progress: bool = True, on_step: Optional[Callable[[int, int], None]] = None
                    ) -> tuple[WriteSAE, pd.DataFrame]:
    """A WriteSAE fitted to the writes k_n u_nᵀ given as ``keys [n, d_k]`` and ``values [n, d_v]``
    (:func:`.writes.collect_writes`); the loss is the squared Frobenius error per write, in units of the
    mean write norm (``input_scale``). Returns it (eval mode) and the history (step, mse, l0); ``on_step(done,
    total)`` follows the steps."""
    if keys.ndim != 2 or values.ndim != 2 or keys.shape[0] != values.shape[0]:
        raise ValueError(f"writes must be keys [n, d_k] and values [n, d_v], got {tuple(keys.shape)} and "
                         f"{tuple(values.shape)}")
    k, u = keys.detach(), values.detach()
    sae = WriteSAE(cfg, k.shape[1], u.shape[1]).to(device=k.device, dtype=k.dtype)
    scale = frobenius(k, u).mean()
    if not scale > 0:
        raise ValueError("every write is zero; there is nothing to decompose")
    sae.input_scale.fill_(scale.item())

    def loss(bk, bu):
        recon, codes = sae(bk, bu)
        err = ((recon - torch.einsum("nk,nv->nkv", bk, bu)) / sae.input_scale).pow(2).sum((-1, -2))
        return err.mean(), codes, err

    history = _fit(sae, (k, u), loss, cfg, "WriteSAE", progress, on_step)
    return sae.eval(), history
