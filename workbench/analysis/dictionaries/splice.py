"""An ordinary SAE on any hook of the model: cache the hook's activations, measure the reconstruction, and
splice the SAE into the run (the hook's output replaced by its reconstruction) to read the model's loss."""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from .sae import SparseAutoencoder


def check_hook(model, hook_name: str) -> None:
    if hook_name not in model.hook_dict:
        near = sorted(n for n in model.hook_dict if n.split(".")[-1] == hook_name.split(".")[-1])[:6]
        raise ValueError(f"the model has no hook {hook_name!r}" + (f"; hooks of that name: {near}" if near else
                                                                   "; model.hook_dict lists every hook"))


@torch.no_grad()
def cache_activations(model, batches, hook_name: str) -> torch.Tensor:
    """The activations of ``hook_name`` over a token stream (``batches``: token tensors ``[batch, pos]``), one row
    per (sequence, position): ``[n, d_in]`` with every axis after ``pos`` flattened (e.g. a per-head hook
    ``[batch, pos, head, d_head]`` gives d_in = head · d_head)."""
    check_hook(model, hook_name)
    if isinstance(batches, torch.Tensor):
        batches = [batches]
    rows = []
    for tokens in batches:
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n == hook_name)
        a = cache[hook_name]
        rows.append(a.reshape(a.shape[0] * a.shape[1], -1))
    if not rows:
        raise ValueError("batches is empty; pass at least one [batch, pos] token tensor")
    return torch.cat(rows)


@torch.no_grad()
def reconstruction_metrics(sae: SparseAutoencoder, activations: torch.Tensor) -> dict:
    """mse (mean squared error per vector, summed over d_in), explained_variance (1 − Σ‖x − x̂‖² / Σ‖x − x̄‖²),
    l0 (mean number of non-zero codes) and dead (latents never active) on ``activations [n, d_in]``."""
    recon, codes = sae(activations.to(sae.b_dec))
    x = activations.to(recon.dtype)
    err = (recon - x).pow(2).sum(-1)
    var = (x - x.mean(0)).pow(2).sum(-1)
    return {"mse": err.mean().item(), "explained_variance": 1 - (err.sum() / var.sum()).item(),
            "l0": (codes > 0).float().sum(-1).mean().item(), "dead": int(((codes > 0).sum(0) == 0).sum())}


def _loss(logits: torch.Tensor, tokens: torch.Tensor, loss_mask: Optional[torch.Tensor]) -> float:
    nll = F.cross_entropy(logits[:, :-1].flatten(0, 1).double(), tokens[:, 1:].flatten(), reduction="none")
    w = torch.ones_like(nll) if loss_mask is None else loss_mask.flatten().to(nll)
    return ((nll * w).sum() / w.sum()).item()


@torch.no_grad()
def spliced_loss(model, sae: SparseAutoencoder, tokens: torch.Tensor, hook_name: str,
                 loss_mask: Optional[torch.Tensor] = None) -> dict:
    """The model's next-token loss (over ``loss_mask``'s predictions, or all) clean, with the SAE's
    reconstruction in place of ``hook_name``'s activation, and with that activation zeroed:
    loss_clean, loss_spliced, loss_zero and the fraction of the zero-ablation's loss increase the SAE recovers
    (1 − (spliced − clean)/(zero − clean))."""
    check_hook(model, hook_name)
    tokens = model.check_tokens(tokens)

    def splice(act, hook):
        recon = sae.decode(sae.encode(act.reshape(*act.shape[:2], -1).to(sae.b_dec)))
        return recon.reshape(act.shape).to(act)

    def zero(act, hook):
        return torch.zeros_like(act)

    clean = _loss(model(tokens), tokens, loss_mask)
    spliced = _loss(model.run_with_hooks(tokens, fwd_hooks=[(hook_name, splice)]), tokens, loss_mask)
    zeroed = _loss(model.run_with_hooks(tokens, fwd_hooks=[(hook_name, zero)]), tokens, loss_mask)
    gap = zeroed - clean
    return {"loss_clean": clean, "loss_spliced": spliced, "loss_zero": zeroed,
            "loss_recovered": 1 - (spliced - clean) / gap if gap != 0 else float("nan")}
